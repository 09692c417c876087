"""One app catalog entry in, the app's hardened manifests out.

Every app gets requests and limits, probes, a securityContext, its PVC, an
Ingress served by the wildcard certificate (when routed: ``exposure``), a default-deny
NetworkPolicy with only the allows it needs, and what its image's contract
(``contracts``) says it cannot run without. Critical apps get a
PodDisruptionBudget only where one can protect them without blocking drains
(two replicas or more), and a PriorityClass that keeps them scheduled first.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from homelab.apps import contracts, exposure
from homelab.config.schema import App, HomelabConfig

PART_OF = "homelab"
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
CRITICAL_PRIORITY = "homelab-critical"
MEDIA_VOLUME = "media"

Obj = dict[str, Any]


def quantity(size: str) -> str:
    """Config sizes (4GiB) in Kubernetes quantity form (4Gi)."""
    return size.replace("iB", "i")


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}


def meta(name: str, namespace: str | None = None, extra: dict[str, str] | None = None) -> Obj:
    data: Obj = {"name": name, "labels": {**labels(name), **(extra or {})}}
    if namespace:
        data["namespace"] = namespace
    return data


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name)}


def secret_name(app: str) -> str:
    return f"{app}-secrets"


def container(name: str, app: App, cfg: HomelabConfig) -> Obj:
    probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3}
    security: Obj = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    if not app.non_root:
        security["capabilities"] = {"drop": ["ALL"], "add": ["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER"]}
    sizing = contracts.resources_for(app)
    limits = {"memory": quantity(sizing.memory_limit)}
    if sizing.cpu_limit:
        limits = {"cpu": sizing.cpu_limit, **limits}
    spec: Obj = {
        "name": name,
        "image": app.image,
        "ports": [{"name": "http", "containerPort": app.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": sizing.cpu_request, "memory": quantity(sizing.memory_request)},
            "limits": limits,
        },
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 6},
        "readinessProbe": {**probe, "initialDelaySeconds": 5, "failureThreshold": 3},
        "securityContext": security,
    }
    env = {**contracts.env_for(name, app, cfg), **app.env}
    if env:
        spec["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    if app.secrets:
        spec["envFrom"] = [{"secretRef": {"name": secret_name(name)}}]
    mounts = volume_mounts(name, app, cfg)
    if mounts:
        spec["volumeMounts"] = mounts
    return spec


def volume_mounts(name: str, app: App, cfg: HomelabConfig) -> list[Obj]:
    """The volume at mount_path and each of ``mounts`` (a directory of it), scratch paths, the media share."""
    found: list[Obj] = []
    if app.storage:
        found.append({"name": "data", "mountPath": app.mount_path})
        for path, sub in sorted(app.mounts.items()):
            found.append({"name": "data", "mountPath": path, **({"subPath": sub} if sub else {})})
    for i, path in enumerate(contracts.scratch_paths(app)):
        found.append({"name": f"scratch-{i}", "mountPath": path})
    share = media_path(name, cfg)
    if share:
        found.append({"name": MEDIA_VOLUME, "mountPath": share})
    return found


def media_path(name: str, cfg: HomelabConfig) -> str | None:
    """Where ``name`` sees the shared media directory, or None when it does not mount it."""
    return cfg.media.mounts.get(name) if cfg.media.enabled else None


def media_node(cfg: HomelabConfig) -> str | None:
    """The node that holds the media directory (default: the first agent, else the server)."""
    if cfg.media.node:
        return cfg.media.node
    nodes = cfg.agents or [n for n in cfg.nodes if n.role == "server"]
    return nodes[0].name if nodes else None


def volumes(name: str, app: App, cfg: HomelabConfig) -> list[Obj]:
    found: list[Obj] = []
    if app.storage:
        found.append({"name": "data", "persistentVolumeClaim": {"claimName": f"{name}-data"}})
    for i, _ in enumerate(contracts.scratch_paths(app)):
        found.append({"name": f"scratch-{i}", "emptyDir": {}})
    if media_path(name, cfg):
        found.append({"name": MEDIA_VOLUME, "hostPath": {"path": cfg.media.host_path, "type": "DirectoryOrCreate"}})
    return found


def deployment(name: str, app: App, cfg: HomelabConfig) -> Obj:
    pod_security: Obj = {"seccompProfile": {"type": "RuntimeDefault"}}
    if app.non_root:
        pod_security.update(
            {
                "runAsNonRoot": True,
                "runAsUser": app.run_as_user,
                "runAsGroup": app.run_as_user,
                "fsGroup": app.run_as_user,
            }
        )
    pod: Obj = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security,
        "containers": [container(name, app, cfg)],
    }
    init = contracts.init_containers(app, cfg)
    if init:
        pod["initContainers"] = init
    if app.critical:
        pod["priorityClassName"] = CRITICAL_PRIORITY
    if "lm-studio" in app.egress:  # resolved from /etc/hosts: no wait for CoreDNS to load its custom zone
        pod["hostAliases"] = [
            {"ip": lm_studio_cidr(cfg).split("/")[0], "hostnames": [LM_STUDIO_SERVICE, lm_studio_name(cfg)]}
        ]
    if app.host_network:
        pod["hostNetwork"] = True
        pod["dnsPolicy"] = "ClusterFirstWithHostNet"  # still resolves cluster Services
    pod_volumes = volumes(name, app, cfg)
    if pod_volumes:
        pod["volumes"] = pod_volumes
    node = media_node(cfg) if media_path(name, cfg) else None
    if node:
        pod["nodeSelector"] = {"kubernetes.io/hostname": node}  # the media directory lives on that node
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, name),
        "spec": {
            "replicas": app.replicas,
            "revisionHistoryLimit": 3,
            # A ReadWriteOnce volume cannot be mounted by old and new pod at once; a host port neither.
            "strategy": {"type": "Recreate"} if app.storage or app.host_network else {"type": "RollingUpdate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels(name)}, "spec": pod},
        },
    }


def service(name: str, app: App) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, name),
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": app.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


# An app's data outlives the app: Argo CD neither prunes its claim (the claim dropped from the tree) nor deletes
# it with its Application (the app dropped from the config), nor the Namespace whose deletion would take the
# claim along. Argo CD's sync options, resource-level annotations that override the Application's automated
# prune: "No Prune Resources" and "No Resource Deletion" (which names Persistent Volume Claims as its case),
# https://argo-cd.readthedocs.io/en/stable/user-guide/sync-options/. ``inv up --delete-data`` removes them.
# A claim kept while its app stays (its storage dropped) would hold the Application OutOfSync, and every
# inv up waiting for Synced, but for IgnoreExtraneous, which the same page advises with Prune=false
# (https://argo-cd.readthedocs.io/en/stable/user-guide/compare-options/).
KEEP_DATA = {
    "argocd.argoproj.io/sync-options": "Prune=false,Delete=false",
    "argocd.argoproj.io/compare-options": "IgnoreExtraneous",
}


def volume_claim(name: str, app: App) -> Obj | None:
    """The app's claim, kept when the app goes (``KEEP_DATA``)."""
    if not app.storage:
        return None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {**meta(f"{name}-data", name), "annotations": dict(KEEP_DATA)},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": app.storage_class,
            "resources": {"requests": {"storage": quantity(app.storage)}},
        },
    }


# The one Gateway every route attaches to (homelab.gitops.platform.gateway renders it, with Traefik's chart).
GATEWAY_NAMESPACE = "traefik"
GATEWAY = "homelab"
GATEWAY_LISTENER = "websecure"  # HTTPS, the wildcard certificate; the HTTP listener only redirects to it


def http_route(name: str, namespace: str, host: str, service: str, port: int) -> Obj:
    """An HTTPRoute for ``host`` on the gateway's HTTPS listener, to ``service``:``port`` in ``namespace``.

    The Gateway lets routes of every namespace attach (``allowedRoutes``), and a
    backend in the route's own namespace needs no ReferenceGrant.
    """
    parent = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": GATEWAY,
        "namespace": GATEWAY_NAMESPACE,
        "sectionName": GATEWAY_LISTENER,
    }
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta(name, namespace),
        "spec": {
            "parentRefs": [parent],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": service, "port": port}]}],
        },
    }


UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
BODY_LIMIT = "body-limit"  # the app's Buffering middleware, in its namespace


def size_bytes(size: str) -> int:
    """``10MiB`` as bytes."""
    for unit, factor in UNITS.items():
        if size.endswith(unit):
            return int(size[: -len(unit)]) * factor
    raise ValueError(f"{size!r} is not a size like 10MiB")


def body_limit(name: str, limits: contracts.Limits) -> Obj | None:
    """A Traefik Buffering middleware refusing larger bodies (413); None when the app bounds them itself.

    Its request side spools a body to disk past 1 MiB (memRequestBodyBytes' default) and answers
    413 past ``maxRequestBodyBytes`` (https://doc.traefik.io/traefik/reference/routing-configuration/
    http/middlewares/buffering/). It buffers the answer too, so streaming apps get none (``Limits``).
    """
    if limits.max_body is None or limits.streams:
        return None
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "Middleware",
        "metadata": meta(BODY_LIMIT, name),
        "spec": {"buffering": {"maxRequestBodyBytes": size_bytes(limits.max_body)}},
    }


def app_route(name: str, app: App, domain: str) -> Obj:
    """The app's HTTPRoute at ``<hostname>.<domain>``, to its Service, with its contract's limits.

    The body limit is the middleware ``body_limit`` renders, attached as an ExtensionRef
    filter: Traefik's Gateway provider resolves ``traefik.io/Middleware`` there (registered
    by its kubernetesCRD provider, traefik pkg/provider/kubernetes/crd/kubernetes.go). The
    timeout is the route's ``timeouts.request``, the Gateway API's own field; Traefik 3.7
    does not claim HTTPRouteRequestTimeout (pkg/provider/kubernetes/gateway/features.go),
    so its entry point's read timeout (``homelab.gitops.platform.gateway_values``) bounds
    the longest of them on the real homelab.
    """
    route = http_route(name, name, f"{app.hostname}.{domain}", name, app.port)
    limits = contracts.limits_for(app)
    rule = route["spec"]["rules"][0]
    if body_limit(name, limits) is not None:
        ref = {"group": "traefik.io", "kind": "Middleware", "name": BODY_LIMIT}
        rule["filters"] = [{"type": "ExtensionRef", "extensionRef": ref}]
    if limits.timeout != "0s":
        rule["timeouts"] = {"request": limits.timeout}
    return route


def network_policies(name: str, app: App, cfg: HomelabConfig) -> list[Obj]:
    """Default deny in and out, then only what this app needs."""
    selector = {"matchLabels": {"app.kubernetes.io/name": name}}

    def from_namespace(ns: str) -> Obj:
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}

    policies = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("default-deny", name),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
    ]
    if exposure.routed(app):
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": meta("allow-gateway", name),
                "spec": {
                    "podSelector": selector,
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {"from": [from_namespace(GATEWAY_NAMESPACE)], "ports": [{"port": app.port, "protocol": "TCP"}]}
                    ],
                },
            }
        )
    policies += [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("allow-prometheus", name),
            "spec": {
                "podSelector": selector,
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [from_namespace("monitoring")], "ports": [{"port": app.port, "protocol": "TCP"}]}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("allow-dns", name),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {**from_namespace("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
                        ],
                        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                    }
                ],
            },
        },
    ]
    if "internet" in app.egress:
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": meta("allow-internet", name),
                "spec": {
                    "podSelector": selector,
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}]}],
                },
            }
        )
    if "lan" in app.egress:
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": meta("allow-lan", name),
                "spec": {
                    "podSelector": selector,
                    "policyTypes": ["Egress"],
                    # The home LAN (network.lan; the node subnet itself when bridged), never the Mac's NAT network.
                    "egress": [{"to": [{"ipBlock": {"cidr": lan_cidr(cfg)}}]}],
                },
            }
        )
    if "lm-studio" in app.egress:
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": meta("allow-lm-studio", name),
                "spec": {
                    "podSelector": selector,
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [{"ipBlock": {"cidr": lm_studio_cidr(cfg)}}],
                            "ports": [{"port": cfg.lm_studio.port, "protocol": "TCP"}],
                        }
                    ],
                },
            }
        )
    return policies


def lan_cidr(cfg: HomelabConfig) -> str:
    """The home LAN the ``lan`` egress reaches; validation requires ``network.lan`` where it cannot be derived."""
    from homelab.net.checks import nodes_on_lan

    return cfg.network.lan_cidr(nodes_on_lan(cfg)) or cfg.network.subnet


def lm_studio_name(cfg: HomelabConfig) -> str:
    """The DNS name the cluster resolves to LM Studio's host (a zone of our own, never a public one)."""
    return f"lm-studio.{cfg.name}.internal"


LM_STUDIO_SERVICE = "lm-studio.lm-studio.svc.cluster.local"


def lm_studio_cidr(cfg: HomelabConfig) -> str:
    return f"{ipaddress.IPv4Address(cfg.lm_studio.host)}/32"


def disruption_budget(name: str, app: App) -> tuple[Obj | None, str]:
    """The PDB for a critical app, and a sentence saying what was chosen and why.

    A budget can only protect an app that has a pod to spare: on one replica any
    budget either allows the eviction (protects nothing) or refuses it (and every
    drain of that node waits forever). So one-replica apps get none; they are
    protected by their PriorityClass, their Recreate strategy and backups.
    """
    if not app.critical:
        return None, ""
    if app.replicas >= 2:
        spec = {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}}
        return (
            {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(name, name), "spec": spec},
            f"{name}: PDB maxUnavailable 1 of {app.replicas} replicas; drains proceed one pod at a time",
        )
    return (
        None,
        f"{name}: critical with 1 replica: no PDB (one that protects its only pod blocks every drain); "
        f"PriorityClass {CRITICAL_PRIORITY} keeps it scheduled first; scale it to 2 replicas for a PDB",
    )


def priority_class() -> Obj:
    """Critical apps are scheduled before, and preempted after, everything else of the homelab."""
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": meta(CRITICAL_PRIORITY),
        "value": 100000,
        "preemptionPolicy": "PreemptLowerPriority",
        "description": "Apps marked critical in the homelab catalog",
    }


def render_app(name: str, app: App, cfg: HomelabConfig) -> tuple[list[Obj], list[str]]:
    """All objects of one app, in apply order, plus notes about choices made."""
    objects: list[Obj] = [namespace(name)]
    claim = volume_claim(name, app)
    if claim:
        objects[0]["metadata"]["annotations"] = dict(KEEP_DATA)  # deleting the namespace deletes the claim
        objects.append(claim)
    objects += [deployment(name, app, cfg), service(name, app)]
    if exposure.routed(app):
        objects.append(app_route(name, app, cfg.domain))
        limit = body_limit(name, contracts.limits_for(app))
        if limit is not None:
            objects.append(limit)
    objects += network_policies(name, app, cfg)
    pdb, note = disruption_budget(name, app)
    if pdb:
        objects.append(pdb)
    notes = [note] if note else []
    contract = contracts.contract_for(app)
    if contract and contract.note and not app.host_network:
        notes.append(f"{name}: {contract.note}")
    return objects, notes
