"""k3d.*: a real K3S in Docker, for machines with a Docker engine."""
