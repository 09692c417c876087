"""Rendering the k8s/ tree from the config: platform components, apps, the ArgoCD root."""
