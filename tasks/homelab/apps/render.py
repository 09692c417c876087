"""One app catalog entry in, the app's hardened manifests out.

Every app gets requests and limits, probes, a securityContext, its PVC, an
Ingress served by the wildcard certificate, a default-deny NetworkPolicy with
only the allows it needs, and (when critical) a PodDisruptionBudget that fits
its replica count.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from homelab.config.schema import App, HomelabConfig
from homelab.core.kube import SINGLE_REPLICA_LABEL as SINGLE_REPLICA

PART_OF = "homelab"
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]

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


def container(name: str, app: App) -> Obj:
    probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3}
    security: Obj = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    if not app.non_root:
        security["capabilities"] = {"drop": ["ALL"], "add": ["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER"]}
    spec: Obj = {
        "name": name,
        "image": app.image,
        "ports": [{"name": "http", "containerPort": app.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": app.cpu_request, "memory": quantity(app.memory_request)},
            "limits": {"cpu": app.cpu_limit, "memory": quantity(app.memory_limit)},
        },
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 6},
        "readinessProbe": {**probe, "initialDelaySeconds": 5, "failureThreshold": 3},
        "securityContext": security,
    }
    if app.env:
        spec["env"] = [{"name": k, "value": v} for k, v in sorted(app.env.items())]
    if app.secrets:
        spec["envFrom"] = [{"secretRef": {"name": secret_name(name)}}]
    if app.storage:
        spec["volumeMounts"] = [{"name": "data", "mountPath": app.mount_path}]
    return spec


def deployment(name: str, app: App) -> Obj:
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
        "containers": [container(name, app)],
    }
    if app.storage:
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": f"{name}-data"}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, name),
        "spec": {
            "replicas": app.replicas,
            "revisionHistoryLimit": 3,
            # A ReadWriteOnce volume cannot be mounted by old and new pod at once.
            "strategy": {"type": "Recreate"} if app.storage else {"type": "RollingUpdate"},
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


def volume_claim(name: str, app: App) -> Obj | None:
    if not app.storage:
        return None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(f"{name}-data", name),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": app.storage_class,
            "resources": {"requests": {"storage": quantity(app.storage)}},
        },
    }


def ingress(name: str, app: App, domain: str) -> Obj:
    host = f"{app.hostname}.{domain}"
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta(name, name),
        "spec": {
            "ingressClassName": "nginx",
            # No secretName: ingress-nginx serves the wildcard certificate by default.
            "tls": [{"hosts": [host]}],
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": name, "port": {"name": "http"}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


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
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("allow-ingress-controller", name),
            "spec": {
                "podSelector": selector,
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [from_namespace("ingress-nginx")], "ports": [{"port": app.port, "protocol": "TCP"}]}
                ],
            },
        },
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


def lm_studio_cidr(cfg: HomelabConfig) -> str:
    return f"{ipaddress.IPv4Address(cfg.lm_studio.host)}/32"


def disruption_budget(name: str, app: App) -> tuple[Obj | None, str]:
    """The PDB for a critical app, and a sentence saying what was chosen and why."""
    if not app.critical:
        return None, ""
    selector = {"matchLabels": {"app.kubernetes.io/name": name}}
    if app.replicas >= 2:
        spec = {"minAvailable": app.replicas - 1, "selector": selector}
        return (
            {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(name, name), "spec": spec},
            f"{name}: PDB minAvailable {app.replicas - 1} of {app.replicas} replicas; drains proceed one pod at a time",
        )
    spec = {"minAvailable": 1, "selector": selector}
    obj = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, name, extra={SINGLE_REPLICA: "true"}),
        "spec": spec,
    }
    return (
        obj,
        f"{name}: critical with 1 replica: PDB minAvailable 1 protects it from voluntary evictions, so a drain "
        "of its node stops and names this PDB; `inv k3s.upgrade --allow-downtime` briefly lifts it "
        "(or scale the app to 2 replicas)",
    )


def render_app(name: str, app: App, cfg: HomelabConfig) -> tuple[list[Obj], list[str]]:
    """All objects of one app, in apply order, plus notes about choices made."""
    objects: list[Obj] = [namespace(name)]
    claim = volume_claim(name, app)
    if claim:
        objects.append(claim)
    objects += [deployment(name, app), service(name, app), ingress(name, app, cfg.domain)]
    objects += network_policies(name, app, cfg)
    pdb, note = disruption_budget(name, app)
    if pdb:
        objects.append(pdb)
    return objects, [note] if note else []
