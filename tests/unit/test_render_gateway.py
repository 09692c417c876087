"""The edge on the render: Traefik's chart, one Gateway, an HTTPRoute per routed app, the tunnel to it."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import loopback_data
from homelab.apps import contracts, exposure
from homelab.apps import render as apps
from homelab.config.loader import validate
from homelab.config.schema import HomelabConfig
from homelab.core import pins
from homelab.core.errors import ConfigError
from homelab.gitops import platform, tree

GATEWAY_API = "gateway.networking.k8s.io/v1"


@pytest.fixture
def cfg() -> HomelabConfig:
    return validate(loopback_data())


def all_objects(rendered: tree.Rendered) -> list[dict]:
    return [o for objs in rendered.files.values() for o in objs]


def test_no_ingress_nginx_is_left_in_the_tree(cfg: HomelabConfig) -> None:
    for local_controllers in (False, True):
        rendered = tree.render(cfg, local_controllers=local_controllers)
        assert not [o for o in all_objects(rendered) if o["kind"] == "Ingress"]
        for path in rendered.files:
            assert "ingress-nginx" not in rendered.text(path), path
            assert "nginx" not in rendered.text(path).replace("nginx.", ""), path


def test_the_chart_runs_the_pinned_traefik_with_the_gateway_provider_on_the_ingress_address(cfg: HomelabConfig) -> None:
    chart, config = tree.render(cfg).files["argocd/traefik.yaml"]
    assert config["metadata"]["name"] == "traefik-config"  # the Gateway, after the chart (its wave + 1)
    source = chart["spec"]["source"]
    pinned = pins.load().chart("traefik")
    assert (source["repoURL"], source["chart"], source["targetRevision"]) == (
        "https://traefik.github.io/charts",
        "traefik",
        cfg.ingress.chart_version,
    )
    assert cfg.ingress.chart_version == pinned.version
    values = source["helm"]["valuesObject"]
    assert values["image"]["tag"] == "v" + pins.load().binaries["traefik"].version  # what the sandbox runs
    assert values["providers"]["kubernetesGateway"] == {"enabled": True}
    assert values["providers"]["kubernetesIngress"] == {"enabled": False}
    assert values["gateway"] == {"enabled": False} and values["gatewayClass"] == {"enabled": False}
    assert values["service"]["annotations"] == {"metallb.io/loadBalancerIPs": cfg.ingress.load_balancer_ip}
    assert chart["spec"]["destination"]["namespace"] == apps.GATEWAY_NAMESPACE


def test_forwarded_headers_are_trusted_only_from_the_pod_network(cfg: HomelabConfig) -> None:
    """cloudflared runs in the pod network; a LAN client reaching the pool address cannot forge X-Forwarded-For."""
    values = platform.gateway_values(cfg)
    for entry_point in platform.ENTRY_POINTS:
        assert values["ports"][entry_point]["forwardedHeaders"] == {"trustedIPs": [contracts.pod_cidr(cfg)]}
    data = loopback_data()
    data["k3s"] = {**data.get("k3s", {}), "extra_server_config": {"cluster-cidr": "10.60.0.0/16"}}
    moved = platform.gateway_values(validate(data))
    assert moved["ports"]["websecure"]["forwardedHeaders"]["trustedIPs"] == ["10.60.0.0/16"]


def test_one_gateway_terminates_the_wildcard_certificate_on_traefiks_entry_point_ports(cfg: HomelabConfig) -> None:
    manifests = tree.render(cfg).files["platform/traefik/manifests.yaml"]
    [klass] = [o for o in manifests if o["kind"] == "GatewayClass"]
    assert klass["spec"]["controllerName"] == "traefik.io/gateway-controller"
    [gateway] = [o for o in manifests if o["kind"] == "Gateway"]
    assert gateway["spec"]["gatewayClassName"] == klass["metadata"]["name"]
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    assert {name: listener["port"] for name, listener in listeners.items()} == {"web": 8000, "websecure": 8443}
    secure = listeners["websecure"]
    assert (secure["protocol"], secure["hostname"]) == ("HTTPS", f"*.{cfg.domain}")
    assert secure["tls"]["certificateRefs"] == [{"group": "", "kind": "Secret", "name": platform.WILDCARD_SECRET}]
    [certificate] = [
        o for o in tree.render(cfg).files["platform/cert-manager/manifests.yaml"] if o["kind"] == "Certificate"
    ]
    assert certificate["metadata"]["namespace"] == gateway["metadata"]["namespace"] == apps.GATEWAY_NAMESPACE
    assert certificate["spec"]["secretName"] == platform.WILDCARD_SECRET
    assert set(certificate["spec"]["dnsNames"]) == {cfg.domain, f"*.{cfg.domain}"}
    [redirect] = [o for o in manifests if o["kind"] == "HTTPRoute"]
    assert redirect["spec"]["parentRefs"][0]["sectionName"] == "web"
    assert redirect["spec"]["rules"][0]["filters"][0]["requestRedirect"]["scheme"] == "https"


def test_every_routed_app_has_an_httproute_to_its_service_and_admits_the_gateway(cfg: HomelabConfig) -> None:
    rendered = tree.render(cfg)
    routed = exposure.routed_apps(cfg)
    assert routed, "the catalog routes apps"
    for name, app in cfg.deployed_apps.items():
        objects = rendered.files[f"apps/{name}/app.yaml"]
        routes = [o for o in objects if o["kind"] == "HTTPRoute"]
        policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
        if name not in routed:
            assert not routes and "allow-gateway" not in policies, name
            continue
        [route] = routes
        assert route["apiVersion"] == GATEWAY_API
        assert route["spec"]["hostnames"] == [f"{app.hostname}.{cfg.domain}"], name
        assert route["spec"]["parentRefs"] == [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": "homelab",
                "namespace": apps.GATEWAY_NAMESPACE,
                "sectionName": "websecure",
            }
        ]
        [service] = [o for o in objects if o["kind"] == "Service"]
        [backend] = route["spec"]["rules"][0]["backendRefs"]
        assert (backend["name"], backend["port"]) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
        admitted = policies["allow-gateway"]["ingress"][0]
        assert admitted["from"] == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": apps.GATEWAY_NAMESPACE}}}
        ]
        assert admitted["ports"] == [{"port": app.port, "protocol": "TCP"}]


def test_grafana_is_routed_on_the_gateway_not_by_its_chart(cfg: HomelabConfig) -> None:
    rendered = tree.render(cfg)
    chart, _ = rendered.files["argocd/kube-prometheus-stack.yaml"]
    assert chart["spec"]["source"]["helm"]["valuesObject"]["grafana"]["ingress"] == {"enabled": False}
    [route] = [o for o in rendered.files["platform/kube-prometheus-stack/manifests.yaml"] if o["kind"] == "HTTPRoute"]
    assert route["spec"]["hostnames"] == [f"{cfg.monitoring.grafana_hostname}.{cfg.domain}"]
    assert route["metadata"]["namespace"] == "monitoring"
    [backend] = route["spec"]["rules"][0]["backendRefs"]
    assert (backend["name"], backend["port"]) == platform.GRAFANA_SERVICE


def test_the_tunnel_sends_every_public_hostname_to_the_gateway_checking_its_certificate(cfg: HomelabConfig) -> None:
    config_map = next(o for o in platform.cloudflared(cfg) if o["kind"] == "ConfigMap")
    rules = yaml.safe_load(config_map["data"]["config.yaml"])["ingress"]
    hosted = [rule for rule in rules if "hostname" in rule]
    assert hosted, "something is public in the loopback catalog"
    for rule in hosted:
        assert rule["service"] == "https://traefik.traefik.svc:443"
        assert rule["originRequest"] == {"originServerName": rule["hostname"]}
    assert rules[-1] == {"service": "http_status:404"}


def test_the_sandbox_renders_the_gateway_service_the_chart_would_make(cfg: HomelabConfig) -> None:
    service = platform.gateway_service(cfg)
    assert (service["metadata"]["namespace"], service["metadata"]["name"]) == ("traefik", "traefik")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "web": (80, "web"),
        "websecure": (443, "websecure"),
    }
    line = " ".join(tree.switch_differences(cfg))
    assert "traefik/traefik" in line and "ingress-nginx" not in line


@pytest.mark.parametrize("version", ["4.13.3", "v4.12.0", "4.14.1"])
def test_a_pinned_ingress_nginx_chart_version_is_one_clear_message(version: str) -> None:
    data = copy.deepcopy(loopback_data())
    data["ingress"] = {**data.get("ingress", {}), "chart_version": version}
    with pytest.raises(ConfigError) as raised:
        validate(data)
    message = str(raised.value)
    assert "ingress.chart_version" in message and "ingress-nginx chart version" in message, message
    assert "remove ingress.chart_version" in message and pins.load().chart("traefik").version in message, message


def test_a_traefik_chart_version_is_accepted() -> None:
    data = copy.deepcopy(loopback_data())
    data["ingress"] = {**data.get("ingress", {}), "chart_version": "41.3.0"}
    assert validate(data).ingress.chart_version == "41.3.0"


def test_the_gateway_api_crds_come_before_the_chart_and_the_gateway(cfg: HomelabConfig) -> None:
    rendered = tree.render(cfg)
    applications = tree.applications(rendered)
    wave = {
        name: int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for name, app in applications.items()
    }
    assert wave["gateway-api"] < wave["traefik"] < wave["traefik-config"]
    assert wave["cert-manager-config"] < wave["traefik-config"]  # the certificate the Gateway serves
    source = applications["gateway-api"]["spec"]["source"]
    assert source == {
        "repoURL": "https://github.com/kubernetes-sigs/gateway-api.git",
        "targetRevision": "v" + pins.load().binaries["gateway-api"].version,
        "path": "config/crd/standard",
    }
    assert "gateway-api" not in tree.applications(tree.render(cfg, local_controllers=True))  # the sandbox's own


def test_only_the_gateway_asks_for_the_ingress_address(cfg: HomelabConfig) -> None:
    """MetalLB gives one address to one Service of these ports: nothing else of the tree may want it."""
    wanting = [
        (o["metadata"].get("namespace"), o["metadata"]["name"])
        for o in all_objects(tree.render(cfg, local_controllers=True))
        if o["kind"] == "Service"
        and cfg.ingress.load_balancer_ip
        in (o["metadata"].get("annotations") or {}).get("metallb.io/loadBalancerIPs", "")
    ]
    assert wanting == [(apps.GATEWAY_NAMESPACE, platform.GATEWAY_SERVICE)]


def test_a_published_ingress_nginx_is_retired_in_the_plan_before_the_push(cfg: HomelabConfig, tmp_path) -> None:
    from types import SimpleNamespace

    from homelab.core.plan import Note, Run
    from homelab.gitops import local, publish

    wanted = local.published_files(cfg, tree.render(cfg))
    old = f"{cfg.gitops.path}/argocd/ingress-nginx.yaml"
    remote = publish.RemoteTree("0" * 40, {**wanted, old: tree.HEADER + "kind: Application\n"})
    session = SimpleNamespace(cfg=cfg, state_dir=tmp_path)
    plan = publish.publish_plan(session, remote, wanted)
    notes = [a.text for a in plan.actions if isinstance(a, Note)]
    assert notes == [
        "the edge moves from ingress-nginx to Traefik: Argo CD prunes Application ingress-nginx and its Service "
        f"first, then MetalLB gives {cfg.ingress.load_balancer_ip} to the gateway's Service (traefik/traefik), "
        "which waits for it"
    ]
    removed = [i for i, a in enumerate(plan.actions) if isinstance(a, Run) and a.argv[-1] == old]
    pushed = [i for i, a in enumerate(plan.actions) if isinstance(a, Run) and "push" in a.argv]
    assert removed and pushed and removed[0] < pushed[0]
    quiet = publish.publish_plan(session, publish.RemoteTree("0" * 40, dict(wanted)), wanted)
    assert not [a for a in quiet.actions if isinstance(a, Note)]


def route_and_limit(cfg: HomelabConfig, name: str) -> tuple[dict, dict | None]:
    objects = tree.render(cfg).files[f"apps/{name}/app.yaml"]
    [route] = [o for o in objects if o["kind"] == "HTTPRoute"]
    middlewares = [o for o in objects if o["kind"] == "Middleware"]
    return route, (middlewares[0] if middlewares else None)


def test_a_route_carries_its_contracts_body_limit_and_timeout(cfg: HomelabConfig) -> None:
    route, limit = route_and_limit(cfg, "homepage")
    [rule] = route["spec"]["rules"]
    assert rule["filters"] == [
        {"type": "ExtensionRef", "extensionRef": {"group": "traefik.io", "kind": "Middleware", "name": "body-limit"}}
    ]
    assert rule["timeouts"] == {"request": "30s"}
    assert limit is not None
    assert (limit["apiVersion"], limit["metadata"]["namespace"]) == ("traefik.io/v1alpha1", "homepage")
    assert limit["spec"] == {"buffering": {"maxRequestBodyBytes": 1 << 20}}
    _, torrents = route_and_limit(cfg, "qbittorrent")
    assert torrents is not None and torrents["spec"]["buffering"]["maxRequestBodyBytes"] == 100 << 20


@pytest.mark.parametrize("name", ["open-webui", "filebrowser", "vaultwarden", "home-assistant", "plex"])
def test_an_app_whose_answers_stream_gets_no_buffering_and_no_request_timeout(cfg: HomelabConfig, name: str) -> None:
    """Open WebUI's long answers, websockets, video and downloads: a buffer or a deadline would cut them."""
    if name not in exposure.routed_apps(cfg):
        pytest.skip(f"{name} is not routed in this catalog")
    route, limit = route_and_limit(cfg, name)
    [rule] = route["spec"]["rules"]
    assert limit is None and "filters" not in rule and "timeouts" not in rule, name


def test_an_image_without_a_contract_gets_the_default_limits(cfg: HomelabConfig) -> None:
    data = loopback_data()
    data["apps"]["whoami"] = {"image": "traefik/whoami:v1.11", "port": 80, "hostname": "whoami", "storage": None}
    route, limit = route_and_limit(validate(data), "whoami")
    assert limit is not None and limit["spec"]["buffering"]["maxRequestBodyBytes"] == 100 << 20
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "60s"}


def test_the_entry_point_reads_as_long_as_the_slowest_routed_app_needs(cfg: HomelabConfig) -> None:
    def read_timeout(config: HomelabConfig) -> str:
        return platform.gateway_values(config)["ports"]["websecure"]["transport"]["respondingTimeouts"]["readTimeout"]

    unbounded = [n for n, a in exposure.routed_apps(cfg).items() if contracts.limits_for(a).max_body is None]
    assert unbounded and read_timeout(cfg) == "0s"  # uploads of any size: no deadline on reading them
    data = loopback_data()
    for name, app in data["apps"].items():
        if name not in ("homepage", "qbittorrent"):
            app.update(routed=False, public=False)
    assert read_timeout(validate(data)) == "60s"  # Traefik's default, the longest of 30s and 60s
    data["apps"]["qbittorrent"].update(routed=False, public=False)
    assert read_timeout(validate(data)) == "60s"  # never below Traefik's default


def test_no_object_is_rendered_by_two_applications(cfg: HomelabConfig) -> None:
    """Argo CD holds an object two Applications render OutOfSync in one of them (SharedResourceWarning)."""
    for local_controllers in (False, True):
        owners: dict[tuple[str, str, str], str] = {}
        for path, objects in tree.render(cfg, local_controllers=local_controllers).files.items():
            for obj in objects:
                key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                assert key not in owners, f"{key} in {owners.get(key)} and {path}"
                owners[key] = path


def test_vaultwarden_reads_the_clients_address_from_x_forwarded_for(cfg: HomelabConfig) -> None:
    """X-Real-Ip is the hop that reached Traefik (cloudflared's pod for the tunnel): its rate limits need XFF."""
    objects = tree.render(cfg).files["apps/vaultwarden/app.yaml"]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["IP_HEADER"] == "X-Forwarded-For"


def test_home_assistant_trusts_the_network_the_gateway_runs_in(cfg: HomelabConfig) -> None:
    """Its init container lists the pod network as trusted_proxies: Traefik's pods forward from there."""
    objects = tree.render(cfg).files["apps/home-assistant/app.yaml"]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["POD_CIDR"] == contracts.pod_cidr(cfg)
    assert platform.gateway_values(cfg)["ports"]["websecure"]["forwardedHeaders"]["trustedIPs"] == [env["POD_CIDR"]]


def run_qbittorrent_script(config_dir: Path) -> str:
    env = {"CONFIG_DIR": str(config_dir), "POD_CIDR": "10.42.0.0/16", "PATH": os.environ["PATH"]}
    done = subprocess.run(["sh", "-c", contracts.QBITTORRENT_PROXY_SCRIPT], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return (config_dir / "qBittorrent" / "qBittorrent.conf").read_text()


def test_qbittorrent_trusts_the_gateway_from_a_fresh_volume_on(cfg: HomelabConfig, tmp_path: Path) -> None:
    """Without reverse proxy support its login ban would hit everyone: each client looks like the gateway."""
    objects = tree.render(cfg).files["apps/qbittorrent/app.yaml"]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["command"] == ["sh", "-c", contracts.QBITTORRENT_PROXY_SCRIPT]
    assert {e["name"]: e["value"] for e in init["env"]}["POD_CIDR"] == contracts.pod_cidr(cfg)
    assert run_qbittorrent_script(tmp_path) == (
        "[Preferences]\nWebUI\\ReverseProxySupportEnabled=true\nWebUI\\TrustedReverseProxiesList=10.42.0.0/16\n"
    )


def test_qbittorrent_keeps_its_other_settings_and_an_owners_own_choice(tmp_path: Path) -> None:
    conf = tmp_path / "qBittorrent" / "qBittorrent.conf"
    conf.parent.mkdir()
    conf.write_text("[BitTorrent]\nSession\\Port=6881\n\n[Preferences]\nWebUI\\Port=8080\n")
    assert run_qbittorrent_script(tmp_path) == (
        "[BitTorrent]\nSession\\Port=6881\n\n[Preferences]\nWebUI\\ReverseProxySupportEnabled=true\n"
        "WebUI\\TrustedReverseProxiesList=10.42.0.0/16\nWebUI\\Port=8080\n"
    )
    owned = "[Preferences]\nWebUI\\ReverseProxySupportEnabled=false\n"
    conf.write_text(owned)
    assert run_qbittorrent_script(tmp_path) == owned
