"""Networking: the MetalLB pool, LoadBalancer addresses handed out, and the Cloudflare tunnel."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task


@task(help={"target": "Cluster target (default from config)."})
def status(c: Any, target: str | None = None) -> None:
    """MetalLB pool (config vs cluster), LoadBalancer IPs, tunnel replicas; exit 1 on a mismatch."""
    from invoke.exceptions import Exit

    from homelab.core import cluster

    s = session(c, target=target)
    kube = cluster.connect(s)
    want = f"{s.cfg.metallb.pool.start}-{s.cfg.metallb.pool.end}"
    pool = kube.get("metallb.io/v1beta1", "IPAddressPool", "homelab-pool", "metallb-system")
    have = ",".join((pool or {}).get("spec", {}).get("addresses", [])) or "missing"
    ok = have == want
    print(f"metallb pool: {have} ({'matches config' if ok else 'config says ' + want})")
    for svc in kube.list_objects("v1", "Service"):
        if (svc.get("spec") or {}).get("type") == "LoadBalancer":
            ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            ips = ",".join(i.get("ip", "?") for i in ingress) or "pending"
            print(f"loadbalancer {svc['metadata']['namespace']}/{svc['metadata']['name']}: {ips}")
    if s.cfg.cloudflare.tunnel_enabled:
        waiting = kube.deployment_waiting("cloudflared", "cloudflared")
        print(
            f"tunnel {s.cfg.cloudflare.tunnel_name}: {'connected replicas Available' if waiting is None else waiting}"
        )
        ok = ok and waiting is None
    if not ok:
        raise Exit(code=1)


@task(name="tunnel-routes", help={"dry_run": "Print the cloudflared commands; run none."})
def tunnel_routes(c: Any, dry_run: bool = False) -> None:
    """A DNS route (CNAME to the tunnel) for every public hostname, Grafana included, through cloudflared.

    Each route is ``cloudflared tunnel route dns TUNNEL HOSTNAME``, which needs the
    cert.pem of ``cloudflared tunnel login``. It leaves a record that already points
    to the tunnel as it is, so a re-run changes nothing; a record pointing elsewhere
    is refused by Cloudflare and named, never overwritten.
    """
    from homelab.core.errors import UsageError
    from homelab.core.plan import Plan, Run
    from homelab.core.tools import find, require
    from homelab.gitops.platform import public_hostnames

    s = session(c, dry_run)
    tunnel = s.cfg.cloudflare.tunnel_name
    if not s.cfg.cloudflare.tunnel_enabled:
        raise UsageError("cloudflare.tunnel_enabled is false: there is no tunnel to route to")
    binary = (find("cloudflared") or "cloudflared") if dry_run else require("cloudflared")
    plan = Plan(f"route every public hostname to tunnel {tunnel}")
    for host in sorted(public_hostnames(s.cfg)):
        plan.add(Run((binary, "tunnel", "route", "dns", tunnel, host), why=f"CNAME {host} -> tunnel {tunnel}"))
    s.executor.execute(plan)
    if not dry_run:
        print(f"tunnel-routes: {len(plan.actions)} hostnames route to tunnel {tunnel}")


ns = Collection("net", status, tunnel_routes)
