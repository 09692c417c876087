"""Every Secret the cluster needs, where it lives, its keys, and the config reference each key comes from.

The rendered tree names these Secrets (the ClusterIssuer's API token, the tunnel's
credentials, Alertmanager's bot token, each app's ``secrets:``) but never holds
them: they reach the cluster as SealedSecrets sealed from the references, so a
plaintext value is never written to the repository. Argo CD's own repository
Secret is not here: Argo CD needs it before it can read the repository, so the
bootstrap applies it (``gitops.bootstrap.repository_secret``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from homelab.apps.render import secret_name
from homelab.config.schema import HomelabConfig, SecretRef


@dataclass(frozen=True)
class NeededSecret:
    name: str
    namespace: str
    keys: dict[str, tuple[str, SecretRef]]  # key in the Secret -> (config path, reference)
    used_by: str
    literals: dict[str, str] = field(default_factory=dict)  # keys that are no secret (a user name), as is

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def needed(cfg: HomelabConfig) -> list[NeededSecret]:
    from homelab.backup import velero
    from homelab.gitops.platform import DNS_TOKEN_SECRET, TELEGRAM_SECRET, TUNNEL_SECRET
    from homelab.secrets import generated
    from homelab.storage import longhorn

    def one(secret: tuple[str, str], namespace: str, path: str, ref: SecretRef, used_by: str) -> NeededSecret:
        name, key = secret
        return NeededSecret(name, namespace, {key: (path, ref)}, used_by)

    found = [
        one(
            DNS_TOKEN_SECRET,
            "cert-manager",
            "cloudflare.api_token",
            cfg.cloudflare.api_token,
            "cert-manager's DNS-01 solver (the ClusterIssuers)",
        )
    ]
    if cfg.cloudflare.tunnel_enabled:
        tunnel = cfg.cloudflare.tunnel_credentials
        found.append(
            one(TUNNEL_SECRET, "cloudflared", "cloudflare.tunnel_credentials", tunnel, "the cloudflared Deployment")
        )
    if cfg.monitoring.enabled:
        token = cfg.monitoring.telegram.bot_token
        found.append(
            one(TELEGRAM_SECRET, "monitoring", "monitoring.telegram.bot_token", token, "Alertmanager's receivers")
        )
    if generated.grafana_deployed(cfg):
        found.append(
            NeededSecret(
                generated.GRAFANA_SECRET,
                "monitoring",
                {generated.GRAFANA_PASSWORD_KEY: (generated.GRAFANA_KEY, generated.grafana_password_ref(cfg))},
                "Grafana's admin login (kube-prometheus-stack grafana.admin.existingSecret)",
                {generated.GRAFANA_USER_KEY: generated.GRAFANA_USER},
            )
        )
    found.extend(longhorn.needed_secrets(cfg))  # the backup target's S3 credentials (options.longhorn)
    found += [s for s in [velero.needed_secret(cfg)] if s is not None]  # homelab.backup.velero
    for name, app in sorted(cfg.deployed_apps.items()):
        if app.secrets:
            keys = {key: (f"apps.{name}.secrets.{key}", ref) for key, ref in sorted(app.secrets.items())}
            found.append(NeededSecret(secret_name(name), name, keys, f"the {name} Deployment (envFrom)"))
    return found
