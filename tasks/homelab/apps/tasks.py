"""The app catalog: list the apps, their state in the cluster, and their URLs."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task


def catalog_rows(cfg: Any) -> list[dict[str, Any]]:
    """One row per app in the catalog, as ``apps.list --json`` prints it."""
    from homelab.apps import exposure

    rows = []
    for name, app in sorted(cfg.apps.items()):
        routed = exposure.routed(app)
        tunneled = exposure.tunneled(app) and cfg.cloudflare.tunnel_enabled
        rows.append(
            {
                "name": name,
                "enabled": bool(app.enabled),
                "replicas": app.replicas,
                "critical": bool(app.critical),
                "storage": app.storage or None,
                "host": f"{app.hostname}.{cfg.domain}" if routed else None,
                "reached_by": None if not routed else "internet" if tunneled else "lan",
                "image": app.image,
            }
        )
    return rows


@task(
    help={
        "json": 'Print JSON: [{"name", "enabled", "replicas", "critical", "storage", "host", "reached_by", "image"}].'
    }
)
def list_(c: Any, json: bool = False) -> None:
    """Every app in the catalog: image, hostname and who reaches it, replicas, storage, critical, off if opt-in."""
    import json as jsonlib

    rows = catalog_rows(session(c).cfg)
    if json:
        print(jsonlib.dumps(rows, indent=2))
        return
    print(f"{'APP':<16} {'REPLICAS':>8} {'CRITICAL':<8} {'STORAGE':<8} {'HOST':<28} {'REACHED BY':<10} IMAGE")
    for r in rows:
        replicas = str(r["replicas"]) if r["enabled"] else "off"
        reach = {"internet": "internet", "lan": "LAN", None: "-"}[r["reached_by"]]
        print(
            f"{r['name']:<16} {replicas:>8} {'yes' if r['critical'] else 'no':<8} {r['storage'] or '-':<8} "
            f"{r['host'] or '(in-cluster only)':<28} {reach:<10} {r['image']}"
        )


@task(
    help={
        "target": "Cluster target (default from config).",
        "json": 'Print JSON: [{"name", "available", "waiting"}] (waiting: what is not ready yet, or null).',
    }
)
def status(c: Any, target: str | None = None, json: bool = False) -> None:
    """Each app's Deployment in the cluster: ready replicas; exit 1 if any is not Available."""
    import json as jsonlib

    from invoke.exceptions import Exit

    from homelab.core import cluster

    s = session(c, target=target)
    kube = cluster.connect(s)
    rows = []
    for name in sorted(s.cfg.deployed_apps):
        waiting = kube.deployment_waiting(name, name)
        rows.append({"name": name, "available": waiting is None, "waiting": waiting})
        if not json:
            print(f"{name:<16} {'Available' if waiting is None else waiting}")
    if json:
        print(jsonlib.dumps(rows, indent=2))
    if not all(row["available"] for row in rows):
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
