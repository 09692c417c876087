"""net.*: MetalLB, the gateway (Traefik) and the Cloudflare Tunnel."""
