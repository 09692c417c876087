"""The platform under the apps: each component is an ArgoCD Application pinned to
a chart version with values from the config, plus plain manifests of its own
(pools, issuers, the tunnel) that ArgoCD syncs after the chart."""

from __future__ import annotations

import re
from typing import Any

import yaml

from homelab.apps import contracts, exposure
from homelab.apps.contracts import CLOUDFLARED_USER, pod_cidr
from homelab.apps.render import GATEWAY, GATEWAY_NAMESPACE, http_route, lm_studio_name, meta, namespace, priority_class
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
    "traefik": "traefik",
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


GATEWAY_CLASS = "traefik"
# Traefik's controller name: it programs only Gateways of a GatewayClass that names it
# (traefik pkg/provider/kubernetes/gateway/kubernetes.go, controllerName).
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
GATEWAY_SERVICE = "traefik"  # the chart's name for it (traefik.fullname), with release name traefik
WILDCARD_SECRET = "wildcard-tls"  # noqa: S105 - the Secret's name, not a value
# A Gateway listener's port must be the port of a Traefik entry point, not the Service's
# (https://doc.traefik.io/traefik/reference/routing-configuration/kubernetes/gateway-api/, "Listener ports";
# source: entryPointName matches the entry point whose address ends in the listener's port). These are the
# chart's entry points, web and websecure; its Service maps 80 and 443 onto them.
ENTRY_POINTS = {"web": 8000, "websecure": 8443}
SERVICE_PORTS = {"web": 80, "websecure": 443}


GATEWAY_API_REPOSITORY = "https://github.com/kubernetes-sigs/gateway-api.git"


def gateway_api_crds() -> Obj:
    """The Gateway API CRDs (standard channel) at the version Traefik is built against (wave -3).

    Traefik's chart ships only its own CRDs (traefik.io); the Gateway API's come from
    their project's repository, ``config/crd/standard`` at the tag versions.toml pins
    (``[binaries.gateway-api]``, the version in Traefik's go.mod), before the chart
    and the Gateway (waves -2 and -1). The sandbox installs the same files itself.
    """
    version = "v" + pins.load().binaries["gateway-api"].version
    source = {"repoURL": GATEWAY_API_REPOSITORY, "targetRevision": version, "path": "config/crd/standard"}
    return application("gateway-api", source, GATEWAY_NAMESPACE, -3)


def gateway_values(cfg: HomelabConfig) -> Obj:
    """The Traefik chart: the Gateway API provider on, Ingress off, its Service on the ingress address.

    The chart's own Gateway and GatewayClass are off: the homelab renders both
    (``gateway``), so the sandbox, which installs no chart, gets the same ones.
    Forwarded headers (X-Forwarded-For) are trusted only from the pod network,
    where cloudflared runs: a LAN client cannot forge its address.
    """
    trusted: Obj = {"forwardedHeaders": {"trustedIPs": [pod_cidr(cfg)]}}
    read = {"transport": {"respondingTimeouts": {"readTimeout": entry_read_timeout(cfg)}}}
    return {
        "image": image_values("traefik"),
        "providers": {
            "kubernetesGateway": {"enabled": True},
            "kubernetesIngress": {"enabled": False},
            "kubernetesCRD": {"enabled": True},  # Middlewares, referenced from HTTPRoutes as ExtensionRef filters
        },
        "gateway": {"enabled": False},
        "gatewayClass": {"enabled": False},
        "ingressClass": {"enabled": False},
        "service": {"annotations": {"metallb.io/loadBalancerIPs": cfg.ingress.load_balancer_ip}},
        "ports": {"web": dict(trusted), "websecure": {**trusted, **read}},
        "metrics": {"prometheus": {"serviceMonitor": {"enabled": cfg.monitoring.enabled}}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }


SECONDS = {"s": 1, "m": 60, "h": 3600}


def seconds(duration: str) -> int:
    """A Gateway API duration of one unit (``30s``, ``5m``, ``1h``) in seconds."""
    return int(duration[:-1]) * SECONDS[duration[-1]]


def entry_read_timeout(cfg: HomelabConfig) -> str:
    """How long Traefik's HTTPS entry point may read one request: what the slowest routed app needs.

    Traefik reads each request within its entry point's ``readTimeout`` (60s by default,
    https://doc.traefik.io/traefik/reference/install-configuration/entrypoints/), whatever
    the route says (it does not implement HTTPRoute timeouts). An app that takes bodies
    of any size (``Limits.max_body`` None: uploads of gigabytes over a home uplink) needs
    no bound at all ("0s"); otherwise the longest timeout of the routed apps.
    """
    limits = [contracts.limits_for(app) for app in exposure.routed_apps(cfg).values()]
    if any(limit.max_body is None for limit in limits):
        return "0s"
    return f"{max([60, *(seconds(limit.timeout) for limit in limits)])}s"


def gateway_service(cfg: HomelabConfig) -> Obj:
    """The gateway's LoadBalancer Service as the Traefik chart makes it (the sandbox renders it alone)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            **meta(GATEWAY_SERVICE, GATEWAY_NAMESPACE),
            "annotations": {"metallb.io/loadBalancerIPs": cfg.ingress.load_balancer_ip},
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-traefik"},
            "ports": [
                {"name": name, "port": SERVICE_PORTS[name], "targetPort": name, "protocol": "TCP"}
                for name in ENTRY_POINTS
            ],
        },
    }


def gateway(cfg: HomelabConfig) -> list[Obj]:
    """The GatewayClass, the one Gateway (HTTPS with the wildcard certificate; HTTP redirects to it).

    Routes of every namespace may attach (each app's HTTPRoute lives with the app).
    """
    api = "gateway.networking.k8s.io/v1"
    every_namespace = {"namespaces": {"from": "All"}}
    listeners = [
        {
            "name": "web",
            "protocol": "HTTP",
            "port": ENTRY_POINTS["web"],
            "allowedRoutes": {"namespaces": {"from": "Same"}},
        },
        {
            "name": "websecure",
            "protocol": "HTTPS",
            "port": ENTRY_POINTS["websecure"],
            "hostname": f"*.{cfg.domain}",
            "tls": {"mode": "Terminate", "certificateRefs": [{"group": "", "kind": "Secret", "name": WILDCARD_SECRET}]},
            "allowedRoutes": every_namespace,
        },
    ]
    redirect = {
        "apiVersion": api,
        "kind": "HTTPRoute",
        "metadata": meta("https-redirect", GATEWAY_NAMESPACE),
        "spec": {
            "parentRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY, "sectionName": "web"}
            ],
            "rules": [
                {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
            ],
        },
    }
    return [
        {
            "apiVersion": api,
            "kind": "GatewayClass",
            "metadata": meta(GATEWAY_CLASS),
            "spec": {"controllerName": GATEWAY_CONTROLLER},
        },
        {
            "apiVersion": api,
            "kind": "Gateway",
            "metadata": meta(GATEWAY, GATEWAY_NAMESPACE),
            "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": listeners},
        },
        redirect,
    ]


def gateway_origin() -> str:
    """Where cloudflared sends each public hostname: the gateway's HTTPS port, inside the cluster."""
    return f"https://{GATEWAY_SERVICE}.{GATEWAY_NAMESPACE}.svc:{SERVICE_PORTS['websecure']}"


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
        "metadata": meta("wildcard", GATEWAY_NAMESPACE),
        "spec": {
            "secretName": WILDCARD_SECRET,
            "dnsNames": [cfg.domain, f"*.{cfg.domain}"],
            "issuerRef": {"kind": "ClusterIssuer", "name": cfg.tls.issuer},
        },
    }
    # No Namespace here: traefik-config renders the gateway's, and an object two Applications render is
    # OutOfSync in one of them (Argo CD's SharedResourceWarning); this Application's destination is that
    # namespace, which its CreateNamespace sync option makes when cert-manager-config syncs first (wave -2).
    return [*issuers, certificate]


def public_hostnames(cfg: HomelabConfig) -> dict[str, str]:
    """Every hostname routed through the tunnel -> the config key that names it (``exposure.public_hostnames``)."""
    return exposure.public_hostnames(cfg)


def cloudflared(cfg: HomelabConfig) -> list[Obj]:
    """The tunnel: one ingress rule per public hostname, all to the gateway (TLS checked for that name).

    cloudflared adds Cf-Connecting-Ip and X-Forwarded-For with the visitor's address
    (https://developers.cloudflare.com/fundamentals/reference/http-headers/); the
    gateway trusts them from the pod network (``gateway_values``) and passes them on.
    """
    rules: list[Obj] = [
        {
            "hostname": host,
            "service": gateway_origin(),
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
        # Outbound only: nothing may connect in; it may reach DNS, Cloudflare and the gateway.
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
            "ingress": {"enabled": False},  # routed by grafana_route, on the gateway
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


GRAFANA_SERVICE = ("kube-prometheus-stack-grafana", 80)  # the grafana subchart's Service, release kube-prometheus-stack


def grafana_route(cfg: HomelabConfig) -> Obj:
    """Grafana's HTTPRoute on the gateway, at ``monitoring.grafana_hostname``."""
    name, port = GRAFANA_SERVICE
    return http_route("grafana", "monitoring", f"{cfg.monitoring.grafana_hostname}.{cfg.domain}", name, port)


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
    """Longhorn's StorageClasses (and local-path no longer default): homelab.storage.longhorn."""
    from homelab.storage import longhorn as storage

    return storage.manifests(cfg)


def longhorn_values(cfg: HomelabConfig) -> Obj:
    """The longhorn chart's values (replicas, backup target at its pinned place): homelab.storage.longhorn."""
    from homelab.storage import longhorn as storage

    return storage.chart_values(cfg)


def velero(cfg: HomelabConfig) -> list[Obj]:
    """Velero's own manifests (storage location, Schedule, alert): homelab.backup.velero."""
    from homelab.backup import velero as velero_backups

    return velero_backups.manifests(cfg)


def velero_chart_values(cfg: HomelabConfig) -> Obj:
    from homelab.backup import velero as velero_backups

    return velero_backups.chart_values(cfg)


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
        parts["gateway-api"] = (gateway_api_crds(), [])
        parts["traefik"] = (
            chart_app("traefik", cfg.ingress.chart_version, gateway_values(cfg), -2),
            [namespace(GATEWAY_NAMESPACE), *gateway(cfg)],
        )
    if cfg.cloudflare.tunnel_enabled:
        parts["cloudflared"] = (None, cloudflared(cfg))
    if cfg.monitoring.enabled:
        parts["kube-prometheus-stack"] = (
            chart_app("kube-prometheus-stack", cfg.monitoring.chart_version, monitoring_values(cfg), -2),
            [namespace("monitoring"), backup_rules(cfg), *([grafana_route(cfg)] if cfg.ingress.enabled else [])],
        )
    parts["lm-studio"] = (None, lm_studio(cfg))
    parts.update(dns.platform_parts(cfg))  # the home LAN's DNS server (lan_dns), homelab.net.dns
    if any(app.critical for app in cfg.deployed_apps.values()):
        parts["scheduling"] = (None, [priority_class()])
    if cfg.options.longhorn:
        parts["longhorn"] = (
            chart_app("longhorn", pins.load().chart("longhorn").version, longhorn_values(cfg), -3),
            longhorn(cfg),
        )
    if cfg.options.velero:
        parts["velero"] = (
            chart_app("velero", pins.load().chart("velero").version, velero_chart_values(cfg), -1),
            velero(cfg),
        )
    return parts
