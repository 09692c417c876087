"""What the real homelab will get, in words, for ``inv up --dry-run`` on a cluster target.

The gitops layer's plan is a few applies (Argo CD, the root Application) whose
effect is everything Argo CD then deploys; a dry run that stopped there would
hide the homelab itself. This lists it from the same render the repository
gets: each Application in sync-wave order with where it comes from, each app
with its address and contract, the addresses, what is public and what only the
LAN reaches, alerting and backups.
"""

from __future__ import annotations

from typing import Any

from homelab.apps import contracts, exposure
from homelab.config.schema import App, HomelabConfig
from homelab.core.plan import Note, Plan
from homelab.gitops import tree


def _wave(app: dict[str, Any]) -> int:
    return int(app["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def _origin(app: dict[str, Any]) -> str:
    source = app["spec"].get("source") or {}
    if "chart" in source:
        return f"Helm chart {source['chart']} {source['targetRevision']} ({source['repoURL']})"
    return f"{source.get('path', '.')}/ of {source.get('repoURL')} at {source.get('targetRevision')}"


def _audience(app: App, cfg: HomelabConfig) -> str:
    """Who reaches the app (``exposure``): the internet through the tunnel, the home LAN only, or nothing outside."""
    if not exposure.routed(app):
        return "in-cluster only"
    if exposure.tunneled(app) and cfg.cloudflare.tunnel_enabled:
        return "public: the internet through the tunnel, and the LAN"
    return "LAN only"


def narration(cfg: HomelabConfig) -> Plan:
    rendered = tree.render(cfg)
    plan = Plan(f"what Argo CD will deploy from {cfg.gitops.repo_url} (branch {cfg.gitops.revision})")
    applications = sorted(tree.applications(rendered).values(), key=lambda a: (_wave(a), a["metadata"]["name"]))
    for application in applications:
        name, destination = application["metadata"]["name"], application["spec"]["destination"]["namespace"]
        plan.add(Note(f"wave {_wave(application):>2}  {name} -> {destination}: {_origin(application)}"))
    for name, app in sorted(cfg.deployed_apps.items()):
        where = f"https://{app.hostname}.{cfg.domain}" if exposure.routed(app) else "no route"
        storage = f"{app.storage} volume" if app.storage else "no volume"
        plan.add(Note(f"app {name}: {where}, {app.image}, {app.replicas} replica(s), {storage}; {_audience(app, cfg)}"))
        plan.add(Note(f"    contract: {contracts.one_line(app)}"))
    for name, app in sorted(cfg.apps.items()):
        if not app.enabled:
            plan.add(Note(f"app {name}: off (enabled: false)"))
    if cfg.metallb.enabled:
        pool = cfg.metallb.pool
        plan.add(
            Note(f"LoadBalancer addresses from {pool.start}-{pool.end}; gateway at {cfg.ingress.load_balancer_ip}")
        )
    for line in exposure.summary(cfg):
        plan.add(Note(line))
    plan.add(Note(f"certificates: *.{cfg.domain} from {cfg.tls.issuer} through Cloudflare DNS-01"))
    if cfg.monitoring.enabled:
        chat = cfg.monitoring.telegram.chat_id
        plan.add(Note(f"alerts to Telegram chat {chat}; backup older than {cfg.backup.max_age_hours} h is critical"))
    plan.add(Note(f"backups: {cfg.backup.schedule} into {cfg.backup.repository}"))
    for note in rendered.notes:
        plan.add(Note(note))
    return plan
