"""net.*: MetalLB, the ingress controller and the Cloudflare Tunnel."""
