"""What every layer shares: plan and executor, SSH, the Kubernetes client, errors, paths, tools."""
