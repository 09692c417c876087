"""gitops.*: the rendered k8s/ tree, applied directly or through Argo CD."""
