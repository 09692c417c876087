"""The homelab config: typed schema, layered loading, validation."""
