"""Who can reach what: the one place that decides each hostname's audience.

Private by default. Every deployed app with ``routed: true`` (the default) gets
a route on the gateway at ``<hostname>.<domain>``, which the home LAN reaches;
only an app marked ``public: true`` is also routed through the Cloudflare
tunnel, from the internet. Grafana is routed for the LAN while monitoring is
on, and through the tunnel only with ``monitoring.grafana_public``.

The gateway's routes, the tunnel's ingress rules, the DNS records for the LAN,
the plan and the doctor all ask these functions, so the audience of a hostname
is written down once and cannot drift between what is rendered and what is
reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from homelab.config.schema import App, HomelabConfig

Audience = Literal["public", "lan"]
GRAFANA_KEY = "monitoring.grafana_hostname"


def routed(app: App) -> bool:
    """Whether the app gets a route on the gateway (LAN), whether or not it is also public."""
    return app.routed


def tunneled(app: App) -> bool:
    """Whether the app is also routed through the Cloudflare tunnel (reachable from the internet)."""
    return app.routed and app.public


def routed_apps(cfg: HomelabConfig) -> dict[str, App]:
    """The deployed apps that get a route on the gateway, by name, sorted."""
    return {name: app for name, app in sorted(cfg.deployed_apps.items()) if routed(app)}


def grafana_host(cfg: HomelabConfig) -> str | None:
    """Grafana's hostname while monitoring is on, else None."""
    return f"{cfg.monitoring.grafana_hostname}.{cfg.domain}" if cfg.monitoring.enabled else None


def routed_hostnames(cfg: HomelabConfig) -> dict[str, str]:
    """Every hostname the gateway serves (LAN and public alike) -> the config key that names it."""
    found = {f"{app.hostname}.{cfg.domain}": f"apps.{name}.hostname" for name, app in routed_apps(cfg).items()}
    grafana = grafana_host(cfg)
    if grafana:
        found[grafana] = GRAFANA_KEY
    return found


def public_hostnames(cfg: HomelabConfig) -> dict[str, str]:
    """The hostnames routed through the tunnel (what the internet reaches) -> the config key that names it.

    Empty when the tunnel is off: nothing is public then, whatever the apps say.
    """
    if not cfg.cloudflare.tunnel_enabled:
        return {}
    found = {
        f"{app.hostname}.{cfg.domain}": f"apps.{name}.hostname"
        for name, app in routed_apps(cfg).items()
        if tunneled(app)
    }
    grafana = grafana_host(cfg)
    if grafana and cfg.monitoring.grafana_public:
        found[grafana] = GRAFANA_KEY
    return found


def lan_only_hostnames(cfg: HomelabConfig) -> dict[str, str]:
    """The routed hostnames the tunnel does not carry: reachable from the home LAN only."""
    public = public_hostnames(cfg)
    return {host: key for host, key in routed_hostnames(cfg).items() if host not in public}


def audience(cfg: HomelabConfig) -> dict[str, Audience]:
    """Every routed hostname -> ``public`` (tunnel and LAN) or ``lan`` (LAN only), sorted by hostname."""
    public = public_hostnames(cfg)
    return {host: ("public" if host in public else "lan") for host in sorted(routed_hostnames(cfg))}


def summary(cfg: HomelabConfig) -> list[str]:
    """Two lines for the plan and the doctor: what the internet reaches, and what only the LAN does."""
    public, lan = sorted(public_hostnames(cfg)), sorted(lan_only_hostnames(cfg))
    tunnel = f"through tunnel {cfg.cloudflare.tunnel_name}" if cfg.cloudflare.tunnel_enabled else "(tunnel off)"
    return [
        f"public {tunnel}: {', '.join(public) if public else 'nothing'}",
        f"LAN only: {', '.join(lan) if lan else 'nothing'}",
    ]
