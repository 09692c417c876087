"""homelab: build, operate and back up a personal Kubernetes homelab from one config."""

__version__ = "0.1.0"
