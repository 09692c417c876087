"""The platform under the apps: each component is an ArgoCD Application pinned to
a chart version with values from the config, plus plain manifests of its own
(pools, issuers, the tunnel) that ArgoCD syncs after the chart."""

from __future__ import annotations

import re
from typing import Any

import yaml

from homelab.apps import exposure
from homelab.apps.contracts import CLOUDFLARED_USER
from homelab.apps.render import lm_studio_name, meta, namespace, priority_class
from homelab.config.schema import HomelabConfig
from homelab.core import pins
from homelab.net import dns
from homelab.secrets import generated

Obj = dict[str, Any]
ARGOCD_NAMESPACE = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"
# Secrets the platform reads (name, key): rendered here by name only, sealed from the config (secrets/needed.py).
DNS_TOKEN_SECRET = ("cloudflare-api-token", "api-token")
TUNNEL_SECRET = ("cloudflared-credentials", "credentials.json")
TELEGRAM_SECRET = ("alertmanager-telegram", "bot-token")
# The controller images are pinned in the charts' values, not left to each chart's appVersion, so the
# real homelab runs the code the sandbox runs as processes: every version comes from versions.toml.

# component -> the namespace its chart installs into (repository, chart and version: versions.toml)
CHART_NAMESPACES = {
    "metallb": "metallb-system",
    "ingress-nginx": "ingress-nginx",
    "cert-manager": "cert-manager",
    "kube-prometheus-stack": "monitoring",
    "sealed-secrets": "kube-system",
    "longhorn": "longhorn-system",
    "velero": "velero",
}


def image_values(name: str) -> Obj:
    """A chart's ``image`` values (registry, repository, tag) for the manifest's image ``name``."""
    reference = pins.load().image(name)
    path, _, tag = reference.rpartition(":")
    registry, _, repository = path.partition("/")
    return {"registry": registry, "repository": repository, "tag": tag}


# Argo CD v3 retries a failed automated sync 5 times (about 2.5 minutes with its default backoff), then
# not again for the same commit. An Application synced before the CRDs it uses exist (another
# Application installs them, in an earlier wave Argo CD does not wait for) stays failed when they take
# longer. So: retry until it works (a negative limit), at most every 30 seconds.
RETRY = {"limit": -1, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "30s"}}


def sync_policy() -> Obj:
    return {
        "automated": {"prune": True, "selfHeal": True},
        "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
        "retry": RETRY,
    }


def application(name: str, source: Obj, dest_namespace: str, wave: int) -> Obj:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            **meta(name, ARGOCD_NAMESPACE),
            "annotations": {"argocd.argoproj.io/sync-wave": str(wave)},
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": "default",
            "source": source,
            "destination": {"server": IN_CLUSTER, "namespace": dest_namespace},
            "syncPolicy": sync_policy(),
        },
    }


RAW_GITHUB = re.compile(
    r"^https://raw\.githubusercontent\.com/(?P<owner>[^/]+)/(?P<repo>[^/]+)/(?P<ref>[^/]+)/(?P<file>.+)$"
)


def install_url(cfg: HomelabConfig) -> str:
    """``gitops.install_manifest`` with ``{version}`` filled in: where Argo CD is installed from."""
    return cfg.gitops.install_manifest.format(version=cfg.gitops.argocd_version)


def install_source(cfg: HomelabConfig) -> Obj | None:
    """Where ``gitops.bootstrap`` installs Argo CD from, as an Application source; None when not a Git file.

    ``gitops.install_manifest`` (by default Argo CD's ``manifests/install.yaml`` at
    ``gitops.argocd_version`` on GitHub) read through its repository: the same file,
    so the same objects, with the same immutable selectors.
    """
    found = RAW_GITHUB.match(install_url(cfg))
    if found is None:
        return None
    directory, _, name = found["file"].rpartition("/")
    return {
        "repoURL": f"https://github.com/{found['owner']}/{found['repo']}.git",
        "targetRevision": found["ref"],
        "path": directory or ".",
        "directory": {"include": name},
    }


def argocd_itself(cfg: HomelabConfig) -> Obj | None:
    """Argo CD managing itself from the manifest it was bootstrapped from (wave -4, after Sealed Secrets).

    Not from the argo-cd Helm chart: its Deployments' selectors carry
    ``app.kubernetes.io/instance`` and the install manifest's do not, and a
    selector cannot change, so that sync fails on every Deployment.
    """
    source = install_source(cfg)
    if source is None:
        return None
    app = application("argocd", source, ARGOCD_NAMESPACE, -4)
    # No resources finalizer: deleting this Application must not delete Argo CD (and its CRDs, and so
    # every Application), as Argo CD's docs on managing itself advise.
    del app["metadata"]["finalizers"]
    return app


def chart_app(component: str, version: str, values: Obj, wave: int) -> Obj:
    """The Application of ``component``'s chart (repository and chart from versions.toml) at ``version``."""
    chart = pins.load().chart(component)
    source = {
        "repoURL": chart.repository,
        "chart": chart.chart,
        "targetRevision": version,
        "helm": {"valuesObject": values},
    }
    return application(component, source, CHART_NAMESPACES[component], wave)


def git_app(cfg: HomelabConfig, name: str, path: str, dest_namespace: str, wave: int) -> Obj:
    """An Application of the directory ``path`` under the tree (``gitops.path``) in the repository."""
    return repo_app(cfg, name, f"{cfg.gitops.path}/{path}", dest_namespace, wave)


def repo_app(cfg: HomelabConfig, name: str, repo_path: str, dest_namespace: str, wave: int) -> Obj:
    """An Application of the directory ``repo_path`` (from the repository's top) of the homelab's repository."""
    source = {"repoURL": cfg.gitops.repo_url, "targetRevision": cfg.gitops.revision, "path": repo_path}
    return application(name, source, dest_namespace, wave)


def root_application(cfg: HomelabConfig) -> Obj:
    return git_app(cfg, "root", "argocd", ARGOCD_NAMESPACE, 0)


def metallb(cfg: HomelabConfig) -> list[Obj]:
    pool = cfg.metallb.pool
    return [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": meta("homelab-pool", "metallb-system"),
            "spec": {"addresses": [f"{pool.start}-{pool.end}"], "autoAssign": True},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": meta("homelab-l2", "metallb-system"),
            "spec": {"ipAddressPools": ["homelab-pool"]},
        },
    ]


def ingress_values(cfg: HomelabConfig) -> Obj:
    return {
        "controller": {
            "service": {"annotations": {"metallb.io/loadBalancerIPs": cfg.ingress.load_balancer_ip}},
            "extraArgs": {"default-ssl-certificate": "ingress-nginx/wildcard-tls"},
            "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        }
    }


INGRESS_SERVICE = "ingress-nginx-controller"  # the chart's name for it, with release name ingress-nginx


def ingress_service(cfg: HomelabConfig) -> Obj:
    """The ingress controller's LoadBalancer Service as its chart makes it (the sandbox renders it alone)."""
    selector = {
        "app.kubernetes.io/name": "ingress-nginx",
        "app.kubernetes.io/instance": "ingress-nginx",
        "app.kubernetes.io/component": "controller",
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            **meta(INGRESS_SERVICE, "ingress-nginx"),
            "annotations": {"metallb.io/loadBalancerIPs": cfg.ingress.load_balancer_ip},
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": selector,
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
            ],
        },
    }


def cert_manager(cfg: HomelabConfig) -> list[Obj]:
    issuers = []
    for name, server in (
        ("letsencrypt-staging", "https://acme-staging-v02.api.letsencrypt.org/directory"),
        ("letsencrypt-prod", "https://acme-v02.api.letsencrypt.org/directory"),
    ):
        issuers.append(
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "ClusterIssuer",
                "metadata": meta(name),
                "spec": {
                    "acme": {
                        "email": cfg.tls.email,
                        "server": server,
                        "privateKeySecretRef": {"name": f"{name}-account"},
                        "solvers": [
                            {
                                "dns01": {
                                    "cloudflare": {
                                        "apiTokenSecretRef": {"name": DNS_TOKEN_SECRET[0], "key": DNS_TOKEN_SECRET[1]}
                                    }
                                },
                                "selector": {"dnsZones": [cfg.domain]},
                            }
                        ],
                    }
                },
            }
        )
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": meta("wildcard", "ingress-nginx"),
        "spec": {
            "secretName": "wildcard-tls",
            "dnsNames": [cfg.domain, f"*.{cfg.domain}"],
            "issuerRef": {"kind": "ClusterIssuer", "name": cfg.tls.issuer},
        },
    }
    return [namespace("ingress-nginx"), *issuers, certificate]


def public_hostnames(cfg: HomelabConfig) -> dict[str, str]:
    """Every hostname routed through the tunnel -> the config key that names it (``exposure.public_hostnames``)."""
    return exposure.public_hostnames(cfg)


def cloudflared(cfg: HomelabConfig) -> list[Obj]:
    """The tunnel: one ingress rule per public hostname, all to ingress-nginx (TLS checked for that name)."""
    rules: list[Obj] = [
        {
            "hostname": host,
            "service": "https://ingress-nginx-controller.ingress-nginx.svc:443",
            "originRequest": {"originServerName": host},
        }
        for host in sorted(public_hostnames(cfg))
    ]
    rules.append({"service": "http_status:404"})
    config = {
        "tunnel": cfg.cloudflare.tunnel_name,
        "credentials-file": f"/etc/cloudflared/creds/{TUNNEL_SECRET[1]}",
        "metrics": "0.0.0.0:2000",
        "no-autoupdate": True,
        "ingress": rules,
    }
    ns = "cloudflared"
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": CLOUDFLARED_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "cloudflared",
                "image": pins.load().image("cloudflared"),
                "args": ["tunnel", "--config", "/etc/cloudflared/config/config.yaml", "run"],
                "ports": [{"name": "metrics", "containerPort": 2000}],
                "livenessProbe": {"httpGet": {"path": "/ready", "port": "metrics"}, "periodSeconds": 10},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "metrics"}, "periodSeconds": 10},
                "resources": {
                    "requests": {"cpu": "20m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/cloudflared/config", "readOnly": True},
                    {"name": "creds", "mountPath": "/etc/cloudflared/creds", "readOnly": True},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "cloudflared"}},
            {"name": "creds", "secret": {"secretName": TUNNEL_SECRET[0]}},
        ],
    }
    selector = {"matchLabels": {"app.kubernetes.io/name": "cloudflared"}}
    return [
        namespace(ns),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta("cloudflared", ns),
            "data": {"config.yaml": yaml.safe_dump(config, sort_keys=False)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta("cloudflared", ns),
            "spec": {
                "replicas": 2,
                "selector": selector,
                "template": {
                    "metadata": {
                        "labels": {"app.kubernetes.io/name": "cloudflared", "app.kubernetes.io/part-of": "homelab"}
                    },
                    "spec": pod,
                },
            },
        },
        # Outbound only: nothing may connect in; it may reach DNS, Cloudflare and the ingress controller.
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("outbound-only", ns),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                        "ports": [{"port": 2000, "protocol": "TCP"}],
                    }
                ],
                "egress": [{}],
            },
        },
    ]


def alertmanager_config(cfg: HomelabConfig) -> Obj:
    """Alertmanager's own config: Telegram, bot token from a mounted secret file, critical route."""
    telegram = {
        "bot_token_file": f"/etc/alertmanager/secrets/{TELEGRAM_SECRET[0]}/{TELEGRAM_SECRET[1]}",
        "chat_id": cfg.monitoring.telegram.chat_id,
        "parse_mode": "HTML",
        "send_resolved": True,
    }
    return {
        "route": {
            "receiver": "telegram",
            "group_by": ["alertname", "namespace"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "12h",
            "routes": [
                # Watchdog always fires (the pipeline's heartbeat); InfoInhibitor only exists to mute info alerts.
                {"receiver": "null", "matchers": ['alertname =~ "Watchdog|InfoInhibitor"']},
                {
                    "receiver": "telegram-critical",
                    "matchers": ['severity = "critical"'],
                    "repeat_interval": "1h",
                    "continue": False,
                },
            ],
        },
        "receivers": [
            {"name": "null"},
            {"name": "telegram", "telegram_configs": [telegram]},
            {
                "name": "telegram-critical",
                "telegram_configs": [{**telegram, "message": ('{{ template "telegram.default.message" . }}')}],
            },
        ],
        # kube-prometheus-stack's own set: a louder alert mutes its quieter twins, and InfoInhibitor
        # (firing while any warning or critical alert fires in a namespace) mutes that namespace's info alerts.
        "inhibit_rules": [
            {
                "source_matchers": ['severity = "critical"'],
                "target_matchers": ['severity =~ "warning|info"'],
                "equal": ["namespace", "alertname"],
            },
            {
                "source_matchers": ['severity = "warning"'],
                "target_matchers": ['severity = "info"'],
                "equal": ["namespace", "alertname"],
            },
            {
                "source_matchers": ['alertname = "InfoInhibitor"'],
                "target_matchers": ['severity = "info"'],
                "equal": ["namespace"],
            },
            {"target_matchers": ['alertname = "InfoInhibitor"']},
        ],
    }


BACKUP_LEASE = "homelab-backup"


def backup_rules(cfg: HomelabConfig) -> Obj:
    """Alerts on the backup's heartbeat, a Lease each complete run renews (``backup.heartbeat``).

    The backup runs on the Mac, where nothing scrapes; the Lease lives in the
    cluster, and kube-state-metrics exports its renew time as
    ``kube_lease_renew_time``, which Prometheus does scrape.
    """
    seconds = cfg.backup.max_age_hours * 3600
    selector = f'kube_lease_renew_time{{namespace="monitoring", lease="{BACKUP_LEASE}"}}'
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": meta("homelab-backup", "monitoring"),
        "spec": {
            "groups": [
                {
                    "name": "homelab-backup",
                    "rules": [
                        {
                            "alert": "HomelabBackupTooOld",
                            "expr": f"time() - max({selector}) > {seconds}",
                            "for": "10m",
                            "labels": {"severity": "critical"},
                            "annotations": {
                                "summary": f"No complete backup for more than {cfg.backup.max_age_hours} hours",
                                "description": "Run inv backup.run on the Mac and read its report; inv doctor "
                                "shows the last backup.",
                            },
                        },
                        {
                            "alert": "HomelabBackupNeverRecorded",
                            "expr": f"absent({selector})",
                            "for": f"{cfg.backup.max_age_hours}h",
                            "labels": {"severity": "critical"},
                            "annotations": {
                                "summary": "No complete backup has ever been recorded in the cluster",
                                "description": "Schedule backups with inv backup.schedule.",
                            },
                        },
                    ],
                }
            ]
        },
    }


def monitoring_values(cfg: HomelabConfig) -> Obj:
    mon = cfg.monitoring
    return {
        # K3S runs these inside one process and does not expose them where the
        # chart looks, so their "down" alerts would always fire: off.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "kubeEtcd": {"enabled": cfg.k3s.datastore == "etcd"},
        "prometheus": {
            "prometheusSpec": {
                "retention": mon.retention,
                "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"memory": "3Gi"}},
                "storageSpec": {
                    "volumeClaimTemplate": {
                        "spec": {
                            "storageClassName": "local-path",
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": mon.storage.replace("iB", "i")}},
                        }
                    }
                },
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,  # our PrometheusRules carry no chart release label
            }
        },
        "grafana": {
            "ingress": {
                "enabled": True,
                "ingressClassName": "nginx",
                "hosts": [f"{mon.grafana_hostname}.{cfg.domain}"],
                "tls": [{"hosts": [f"{mon.grafana_hostname}.{cfg.domain}"]}],
            },
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            # The login from the Secret the toolkit generates and seals (homelab.secrets.generated), never the
            # chart's adminPassword prom-operator: the grafana chart's admin.existingSecret, userKey, passwordKey.
            "admin": {
                "existingSecret": generated.GRAFANA_SECRET,
                "userKey": generated.GRAFANA_USER_KEY,
                "passwordKey": generated.GRAFANA_PASSWORD_KEY,
            },
        },
        "alertmanager": {
            "config": alertmanager_config(cfg),
            "alertmanagerSpec": {
                "secrets": [TELEGRAM_SECRET[0]],
                "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            },
        },
    }


def lm_studio(cfg: HomelabConfig) -> list[Obj]:
    """LM Studio on the Mac: an ExternalName Service to a name K3S's CoreDNS answers with the Mac's address.

    Why not a selectorless Service with an EndpointSlice: the ``argocd-cm`` of
    Argo CD's install manifest excludes Endpoints and EndpointSlices from every
    sync, so that object would never reach the cluster. K3S's CoreDNS imports
    ``*.server`` blocks from the optional ``coredns-custom`` ConfigMap, which
    Argo CD does sync; pods then resolve the Service to ``lm_studio.host``.
    CoreDNS reads imported files only when it starts, so apps that declare the
    ``lm-studio`` egress also get both names as host aliases and need no restart.
    """
    ns, name = "lm-studio", lm_studio_name(cfg)
    zone = name.split(".", 1)[1]
    server_block = f"{zone}:53 {{\n  hosts {{\n    {cfg.lm_studio.host} {name}\n  }}\n}}\n"
    return [
        namespace(ns),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta("lm-studio", ns),
            "spec": {
                "type": "ExternalName",
                "externalName": name,
                "ports": [{"name": "http", "port": cfg.lm_studio.port, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta("coredns-custom", "kube-system"),
            "data": {"lm-studio.server": server_block},
        },
    ]


def longhorn(cfg: HomelabConfig) -> list[Obj]:
    return [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": meta("longhorn-homelab"),
            "provisioner": "driver.longhorn.io",
            "allowVolumeExpansion": True,
            "reclaimPolicy": "Retain",
            "parameters": {"numberOfReplicas": "2", "dataLocality": "best-effort"},
        }
    ]


def velero(cfg: HomelabConfig) -> list[Obj]:
    return [
        namespace("velero"),
        {
            "apiVersion": "velero.io/v1",
            "kind": "BackupStorageLocation",
            "metadata": meta("default", "velero"),
            "spec": {
                "provider": "aws",
                "default": True,
                "objectStorage": {"bucket": f"{cfg.name}-velero"},
                "config": {"region": "us-east-1", "s3ForcePathStyle": "true"},
            },
        },
        {
            "apiVersion": "velero.io/v1",
            "kind": "Schedule",
            "metadata": meta("daily", "velero"),
            "spec": {
                "schedule": "0 2 * * *",
                "template": {
                    "ttl": "720h0m0s",
                    "includedNamespaces": sorted(cfg.deployed_apps),
                    "storageLocation": "default",
                },
            },
        },
    ]


def platform(cfg: HomelabConfig) -> dict[str, tuple[Obj | None, list[Obj]]]:
    """Component -> (chart Application or None, its own manifests), in dependency order."""
    parts: dict[str, tuple[Obj | None, list[Obj]]] = {
        "sealed-secrets": (
            chart_app(
                "sealed-secrets",
                cfg.secrets.chart_version,
                {"fullnameOverride": cfg.secrets.controller_name, "image": image_values("sealed-secrets-controller")},
                -5,
            ),
            [],
        ),
        "argocd": (argocd_itself(cfg), [namespace(ARGOCD_NAMESPACE)]),
    }
    if cfg.metallb.enabled:
        parts["metallb"] = (
            chart_app("metallb", cfg.metallb.chart_version, {}, -3),
            [namespace("metallb-system"), *metallb(cfg)],
        )
    parts["cert-manager"] = (
        chart_app("cert-manager", cfg.tls.chart_version, {"crds": {"enabled": True}}, -3),
        [namespace("cert-manager"), *cert_manager(cfg)],
    )
    if cfg.ingress.enabled:
        parts["ingress-nginx"] = (chart_app("ingress-nginx", cfg.ingress.chart_version, ingress_values(cfg), -2), [])
    if cfg.cloudflare.tunnel_enabled:
        parts["cloudflared"] = (None, cloudflared(cfg))
    if cfg.monitoring.enabled:
        parts["kube-prometheus-stack"] = (
            chart_app("kube-prometheus-stack", cfg.monitoring.chart_version, monitoring_values(cfg), -2),
            [namespace("monitoring"), backup_rules(cfg)],
        )
    parts["lm-studio"] = (None, lm_studio(cfg))
    parts.update(dns.platform_parts(cfg))  # the home LAN's DNS server (lan_dns), homelab.net.dns
    if any(app.critical for app in cfg.deployed_apps.values()):
        parts["scheduling"] = (None, [priority_class()])
    if cfg.options.longhorn:
        parts["longhorn"] = (
            chart_app(
                "longhorn", pins.load().chart("longhorn").version, {"defaultSettings": {"defaultReplicaCount": 2}}, -3
            ),
            longhorn(cfg),
        )
    if cfg.options.velero:
        parts["velero"] = (
            chart_app("velero", pins.load().chart("velero").version, {"snapshotsEnabled": False}, -1),
            velero(cfg),
        )
    return parts
