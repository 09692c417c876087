"""k3s.*: K3S over SSH: preflight, install, join, upgrade, snapshots, kubeconfig."""
