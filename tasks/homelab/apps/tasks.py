"""The app catalog: list the apps, their state in the cluster, and their URLs."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task


@task
def list_(c: Any) -> None:
    """Every app in the catalog: image, hostname and who reaches it, replicas, storage, critical, off if opt-in."""
    from homelab.apps import exposure

    s = session(c)
    print(f"{'APP':<16} {'REPLICAS':>8} {'CRITICAL':<8} {'STORAGE':<8} {'HOST':<28} {'REACHED BY':<10} IMAGE")
    for name, app in sorted(s.cfg.apps.items()):
        routed = exposure.routed(app)
        host = f"{app.hostname}.{s.cfg.domain}" if routed else "(in-cluster only)"
        reach = (
            "-" if not routed else "internet" if exposure.tunneled(app) and s.cfg.cloudflare.tunnel_enabled else "LAN"
        )
        replicas = str(app.replicas) if app.enabled else "off"
        print(
            f"{name:<16} {replicas:>8} {'yes' if app.critical else 'no':<8} {app.storage or '-':<8} "
            f"{host:<28} {reach:<10} {app.image}"
        )


@task(help={"target": "Cluster target (default from config)."})
def status(c: Any, target: str | None = None) -> None:
    """Each app's Deployment in the cluster: ready replicas; exit 1 if any is not Available."""
    from invoke.exceptions import Exit

    from homelab.core import cluster

    s = session(c, target=target)
    kube = cluster.connect(s)
    healthy = True
    for name in sorted(s.cfg.deployed_apps):
        waiting = kube.deployment_waiting(name, name)
        healthy = healthy and waiting is None
        print(f"{name:<16} {'Available' if waiting is None else waiting}")
    if not healthy:
        raise Exit(code=1)


@task(help={"app": "App name from the catalog."})
def url(c: Any, app: str) -> None:
    """Print an app's URL."""
    from homelab.core.errors import UsageError

    s = session(c)
    deployed = s.cfg.deployed_apps
    if app not in deployed:
        raise UsageError(f"no deployed app named {app!r}; apps: {', '.join(sorted(deployed))}")
    if not deployed[app].routed:
        raise UsageError(f"{app} has no route (apps.{app}.routed is false): it has no URL outside the cluster")
    print(f"https://{deployed[app].hostname}.{s.cfg.domain}")


ns = Collection("apps", status, url)
ns.add_task(list_, "list")
