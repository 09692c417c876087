"""secrets.*: Sealed Secrets sealing, the controller key, and the repository scan."""
