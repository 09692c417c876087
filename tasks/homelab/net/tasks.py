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
    """A DNS route (CNAME to the tunnel) for every public hostname (apps with public: true), through cloudflared.

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


@task
def forward(c: Any) -> None:
    """Relay the Mac's LAN ports 53, 80 and 443 to the DNS and gateway pool addresses until stopped (shared mode).

    The launchd agent ``inv net.forwarder`` installs runs this; ``homelab.net.forwarder`` says why.
    """
    from homelab.core.errors import UsageError
    from homelab.net import forwarder

    s = session(c)
    if not forwarder.routes(s.cfg):
        raise UsageError("nothing to relay: lan_dns.enabled and ingress.enabled are both false")
    print("net.forward: " + "; ".join(str(r) for r in forwarder.routes(s.cfg)), flush=True)
    forwarder.run_forever(s.cfg)


@task(
    help={
        "remove": "Remove the agent instead of installing it.",
        "dry_run": "Print the change (the plist and launchctl calls); write nothing.",
    }
)
def forwarder(c: Any, remove: bool = False, dry_run: bool = False) -> None:
    """Install (or remove) the launchd agent that relays the Mac's LAN ports to the homelab (shared mode, macOS)."""
    import platform
    import sys
    from pathlib import Path

    from homelab.core.errors import UsageError
    from homelab.core.paths import project_root
    from homelab.core.tools import find, require
    from homelab.net import forwarder as relay

    s = session(c, dry_run)
    if not remove and not relay.needed(s.cfg):
        raise UsageError(
            "no forwarder needed: it serves a shared-mode Lima homelab with lan_dns.enabled and host.lan_ip set "
            "(bridged mode puts the pool on the LAN itself)"
        )
    if platform.system() != "Darwin" and not dry_run:
        raise UsageError("the forwarder is a launchd agent: run inv net.forwarder on the Mac")
    launchctl = (find("launchctl") or "launchctl") if dry_run else require("launchctl")
    wanted = relay.agent(
        program=Path(sys.executable).parent / "homelab",
        workdir=project_root(),
        config=Path(s.loaded.files[0]),
        log=s.state_dir / "lan-forwarder.log",
    )
    home = Path.home()
    plan = relay.plan(s.executor, launchctl, wanted, home, remove)
    s.executor.execute(plan)
    print(f"net.forwarder: {'dry run, nothing changed' if dry_run else 'done'} ({relay.plist_path(home)})")


ns = Collection("net", status, tunnel_routes, forward, forwarder)
