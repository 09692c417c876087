"""The home LAN's DNS server for ``domain``: CoreDNS on a MetalLB address, answering from the rendered routes.

Phones and laptops at home learn ``<app>.<domain>`` from it (the owner points the
router's DNS, or a Pi-hole conditional forward for the domain, at
``lan_dns.address``). Every hostname the gateway routes (``exposure.routed_hostnames``:
the apps and Grafana) answers with the address that serves it at home: the
gateway's pool address when the nodes are on the LAN (bridged, or any target
other than a shared-mode Lima), else the Mac's LAN address, which forwards
ports 53, 80 and 443 into the NAT network (``homelab.net.forwarder``).

It is authoritative for the domain only and never recursive: no ``forward``
plugin, so it cannot be abused as an open resolver. CoreDNS answers a query
that matches no server block with REFUSED (zones select a server block:
https://coredns.io/manual/configuration/#server-blocks); inside the zone the
``file`` plugin serves a zone of the routed names and denies every other name
with NXDOMAIN.
``tests/integration/test_lan_dns.py`` runs the real CoreDNS on the Corefile
rendered here and checks all three answers.
"""

from __future__ import annotations

import hashlib
from typing import Any

from homelab.apps import exposure
from homelab.apps.render import meta, namespace
from homelab.config.schema import HomelabConfig
from homelab.core import pins
from homelab.net.checks import bridged

Obj = dict[str, Any]
NAMESPACE = "lan-dns"
NAME = "lan-dns"
# The pod listens on unprivileged ports (no NET_BIND_SERVICE, runs as nobody); the Service maps 53 to them.
DNS_PORT = 5353
HEALTH_PORT = 8080  # the health plugin's default (https://coredns.io/plugins/health/)
READY_PORT = 8181  # the ready plugin's default (https://coredns.io/plugins/ready/)
METRICS_PORT = 9153  # the prometheus plugin's default (https://coredns.io/plugins/metrics/)
TTL = 300  # seconds LAN clients may cache an answer
NEGATIVE_TTL = 60  # seconds a "no such name" may be cached: a new app's name resolves soon after its route exists
RUN_AS = 65534  # nobody
CONFIG_DIR = "/etc/coredns"  # where the pod mounts the ConfigMap
ZONE_KEY = "zone.db"  # the ConfigMap key (and file) holding the zone


def answer_address(cfg: HomelabConfig) -> str:
    """The address LAN clients are sent to for every routed hostname.

    Only a shared-mode Lima homelab hides the pool behind the Mac's NAT network;
    there the Mac's LAN address stands in for it (validation requires
    ``host.lan_ip`` then). Everywhere else the gateway's pool address is on a
    network the LAN reaches.
    """
    if cfg.target == "lima" and not bridged(cfg) and cfg.host.lan_ip:
        return cfg.host.lan_ip
    return cfg.ingress.load_balancer_ip


def records(cfg: HomelabConfig) -> dict[str, str]:
    """Hostname -> address, sorted: every name the LAN DNS answers."""
    address = answer_address(cfg)
    return {host: address for host in sorted(exposure.routed_hostnames(cfg))}


def zone_file(cfg: HomelabConfig) -> str:
    """The zone in RFC 1035 master-file form: the SOA and one A record per routed hostname.

    The serial is a digest of the records: CoreDNS's ``file`` plugin re-reads a
    zone whose file changed only when its SOA serial differs from the one it
    serves (plugin/file/reload.go), and the render must stay deterministic.
    The SOA's last field bounds how long resolvers cache a denial (RFC 2308).
    """
    zone = f"{cfg.domain}."
    body = "".join(f"{host}. IN A {address}\n" for host, address in records(cfg).items())
    serial = int(hashlib.sha256(body.encode()).hexdigest()[:8], 16) or 1
    return (
        f"$ORIGIN {zone}\n$TTL {TTL}\n"
        f"@ IN SOA {NAME}.{zone} hostmaster.{zone} {serial} 7200 1800 86400 {NEGATIVE_TTL}\n{body}"
    )


def corefile(
    cfg: HomelabConfig,
    port: int = DNS_PORT,
    bind: str | None = None,
    health_port: int = HEALTH_PORT,
    ready_port: int = READY_PORT,
    metrics_port: int = METRICS_PORT,
    config_dir: str = CONFIG_DIR,
) -> str:
    """The Corefile: one server block for ``domain``, served from ``zone_file`` and nothing else.

    ``bind``, the ports and ``config_dir`` exist for the test, which runs this
    same text on 127.0.0.x; in the cluster the pod listens on every address and
    reads the ConfigMap mounted at ``CONFIG_DIR``.
    """
    listen = bind or ""  # the health, ready and metrics listeners too: on every address unless bound
    lines = [f"{cfg.domain}:{port} {{"]
    if bind:
        lines.append(f"    bind {bind}")
    lines += [
        "    errors",
        f"    health {listen}:{health_port}",
        f"    ready {listen}:{ready_port}",
        f"    prometheus {listen}:{metrics_port}",
        # Re-reads this file when the ConfigMap changes (https://coredns.io/plugins/reload/).
        "    reload",
        # Authoritative for the zone (https://coredns.io/plugins/file/): a routed name answers, any other name
        # of the zone is NXDOMAIN with the SOA; the zone is re-read every 30 s once its serial changes.
        f"    file {config_dir}/{ZONE_KEY} {cfg.domain} {{",
        "        reload 30s",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


def manifests(cfg: HomelabConfig) -> list[Obj]:
    """Namespace, ConfigMap, Deployment, LoadBalancer Service and NetworkPolicy of the LAN DNS server."""
    selector = {"app.kubernetes.io/name": NAME}
    container = {
        "name": "coredns",
        "image": pins.load().image("coredns"),
        "args": ["-conf", f"{CONFIG_DIR}/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": DNS_PORT, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": {"httpGet": {"path": "/health", "port": HEALTH_PORT}, "periodSeconds": 10},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": READY_PORT}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": NAME}}],
    }
    dns_ports = [{"port": DNS_PORT, "protocol": "UDP"}, {"port": DNS_PORT, "protocol": "TCP"}]
    return [
        namespace(NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(NAME, NAMESPACE),
            "data": {"Corefile": corefile(cfg), ZONE_KEY: zone_file(cfg)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(NAME, NAMESPACE),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": meta(NAME)["labels"]}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                **meta(NAME, NAMESPACE),
                # MetalLB's annotation for a fixed address (https://metallb.universe.tf/usage/#requesting-specific-ips).
                "annotations": {"metallb.io/loadBalancerIPs": cfg.lan_dns.address},
            },
            "spec": {
                "type": "LoadBalancer",
                "selector": selector,
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": DNS_PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": DNS_PORT, "protocol": "TCP"},
                ],
            },
        },
        # Anyone on the LAN may ask (that is its job); Prometheus may scrape; it reaches nothing itself.
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("answer-only", NAMESPACE),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"ports": dns_ports},
                    {
                        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                        "ports": [{"port": METRICS_PORT, "protocol": "TCP"}],
                    },
                ],
                # Egress listed with no rules denies all; no "egress": [] key, which the API server drops
                # on storage, so the live object would differ from the render forever.
            },
        },
    ]


def platform_parts(cfg: HomelabConfig) -> dict[str, tuple[Obj | None, list[Obj]]]:
    """The ``lan-dns`` platform component (no chart, its own manifests) while ``lan_dns.enabled``."""
    return {"lan-dns": (None, manifests(cfg))} if cfg.lan_dns.enabled else {}
