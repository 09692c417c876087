"""apps.*: the hardened app manifests and their status."""
