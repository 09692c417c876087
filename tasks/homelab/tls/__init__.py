"""tls.*: cert-manager and the wildcard certificate."""
