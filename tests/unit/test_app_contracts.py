"""Each app's upstream contract, held by the rendered objects and enforced on the catalog.

The facts themselves (ports, paths, users) come from each image's upstream
source named in ``homelab.apps.contracts``; these tests check that the render
satisfies them app by app, and that a catalog entry breaking one is refused at
the key to change.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from test_config_checks_rules import problems_at

from helpers import loopback_data
from homelab.apps import contracts
from homelab.apps import render as apps
from homelab.apps.volume_data import volume_data
from homelab.config import loader
from homelab.config.schema import HomelabConfig
from homelab.gitops import platform, tree

Obj = dict[str, Any]


def media_on() -> dict[str, Any]:
    data = loopback_data()
    data["media"]["enabled"] = True
    return data


@pytest.fixture(scope="module")
def cfg() -> HomelabConfig:
    return loader.validate(media_on())


@pytest.fixture(scope="module")
def rendered(cfg: HomelabConfig) -> Any:
    return tree.render(cfg)


def objects_of(rendered: Any, name: str, kind: str) -> list[Obj]:
    return [o for o in rendered.files[f"apps/{name}/app.yaml"] if o["kind"] == kind]


def pod_of(rendered: Any, name: str) -> Obj:
    [deployment] = objects_of(rendered, name, "Deployment")
    pod: Obj = deployment["spec"]["template"]["spec"]
    return pod


def env_of(container: Obj) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def mounted_paths(pod: Obj) -> list[str]:
    return [m["mountPath"] for m in pod["containers"][0].get("volumeMounts", [])]


def test_every_known_image_in_the_catalog_has_a_contract(cfg: HomelabConfig) -> None:
    """The default catalog runs only images whose requirements are written down (the bot is your own image)."""
    unknown = {name for name, app in cfg.apps.items() if contracts.contract_for(app) is None}
    assert unknown == {"telegram-bot"}


def test_the_render_satisfies_every_contract(cfg: HomelabConfig, rendered: Any) -> None:
    for name, app in cfg.deployed_apps.items():
        contract = contracts.contract_for(app)
        assert contract is not None
        pod = pod_of(rendered, name)
        [container] = pod["containers"]
        assert container["ports"][0]["containerPort"] == contracts.listening_port(app, contract), name
        paths = mounted_paths(pod)
        for written in contract.writes:  # every path the image writes is a mounted volume, never its image layer
            assert any(PurePosixPath(written).is_relative_to(p) for p in paths), f"{name} writes {written}"
        if contract.runs_as_root and contract.root_unless_secret not in app.secrets:
            assert "runAsUser" not in pod["securityContext"] and "runAsNonRoot" not in pod["securityContext"], name
        policies = {o["metadata"]["name"] for o in objects_of(rendered, name, "NetworkPolicy")}
        for egress in contract.reaches:
            assert f"allow-{egress}" in policies, f"{name} must reach {egress}"


def test_homepage_is_told_its_hostname(cfg: HomelabConfig, rendered: Any) -> None:
    """Homepage >= 1.0 rejects every request whose Host is not in HOMEPAGE_ALLOWED_HOSTS."""
    [container] = pod_of(rendered, "homepage")["containers"]
    assert env_of(container)["HOMEPAGE_ALLOWED_HOSTS"] == f"home.{cfg.domain}"
    # It copies its skeleton into /app/config at start: with no volume, a scratch directory it can write.
    pod = pod_of(rendered, "homepage")
    scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert any(m["mountPath"] == "/app/config" and m["name"] in scratch for m in container["volumeMounts"])


def test_an_entrys_own_setting_wins_over_the_computed_one(cfg: HomelabConfig) -> None:
    app = cfg.apps["homepage"].model_copy(update={"env": {"HOMEPAGE_ALLOWED_HOSTS": "home.example.org:8443"}})
    container = apps.container("homepage", app, cfg)
    assert env_of(container)["HOMEPAGE_ALLOWED_HOSTS"] == "home.example.org:8443"


def test_filebrowser_keeps_database_and_settings_on_its_volume(cfg: HomelabConfig, rendered: Any) -> None:
    pod = pod_of(rendered, "filebrowser")
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert {"/srv", "/database", "/config"} <= set(mounts)
    assert all(mounts[p]["name"] == "data" for p in ("/srv", "/database", "/config"))
    assert mounts["/srv"]["subPath"] != mounts["/config"]["subPath"]
    # The database sits at the volume's top, where the backup copies it as the BoltDB file it is.
    assert "subPath" not in mounts["/database"] and volume_data(cfg.apps["filebrowser"]).databases == {
        "filebrowser.db": "bolt"
    }


def test_open_webui_runs_as_its_image_expects(cfg: HomelabConfig, rendered: Any) -> None:
    assert "runAsUser" not in pod_of(rendered, "open-webui")["securityContext"]


def test_home_assistant_trusts_the_pod_network_and_reaches_devices(cfg: HomelabConfig, rendered: Any) -> None:
    pod = pod_of(rendered, "home-assistant")
    [init] = pod["initContainers"]
    assert init["image"] == cfg.apps["home-assistant"].image
    assert env_of(init) == {"CONFIG_DIR": "/config", "POD_CIDR": contracts.K3S_DEFAULT_POD_CIDR}
    policies = {o["metadata"]["name"]: o["spec"] for o in objects_of(rendered, "home-assistant", "NetworkPolicy")}
    assert policies["allow-lan"]["egress"] == [{"to": [{"ipBlock": {"cidr": cfg.network.lan}}]}]  # the home LAN
    assert "allow-internet" in policies


def test_home_assistant_trusts_a_changed_cluster_cidr() -> None:
    data = loopback_data()
    data["k3s"]["extra_server_config"] = {"cluster-cidr": "10.244.0.0/16"}
    cfg = loader.validate(data)
    init = contracts.home_assistant_init(cfg.apps["home-assistant"], cfg)
    assert {"name": "POD_CIDR", "value": "10.244.0.0/16"} in init["env"]  # type: ignore[operator]


def test_home_assistant_discovery_on_the_host_network(cfg: HomelabConfig) -> None:
    app = cfg.apps["home-assistant"].model_copy(update={"host_network": True})
    deployment = apps.deployment("home-assistant", app, cfg)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # two pods cannot hold one host port
    _, notes = apps.render_app("home-assistant", cfg.apps["home-assistant"], cfg)
    assert any("host_network: true" in n for n in notes)


def run_trust_script(config_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The init container's script, run by a real shell; python3 stands in for Home Assistant's ensure_config."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "python3"
    stand_in.write_text(
        '#!/bin/sh\nprintf "default_config:\\n\\nautomation: !include automations.yaml\\n" > configuration.yaml\n'
    )
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CONFIG_DIR": str(config_dir)}
    env["POD_CIDR"] = "10.42.0.0/16"
    return subprocess.run(["sh", "-c", contracts.TRUST_PROXY_SCRIPT], env=env, capture_output=True, text=True)


class IgnoreTags(yaml.SafeLoader):
    """Home Assistant's !include and friends, read as plain strings."""


IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix} {node.value}")


def test_trust_script_creates_then_keeps_the_http_section(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    assert run_trust_script(config_dir, tmp_path).returncode == 0
    first = (config_dir / "configuration.yaml").read_text()
    doc = yaml.load(first, Loader=IgnoreTags)
    assert doc["http"] == {"use_x_forwarded_for": True, "trusted_proxies": ["10.42.0.0/16"]}
    assert "default_config" in doc
    assert run_trust_script(config_dir, tmp_path).returncode == 0
    assert (config_dir / "configuration.yaml").read_text() == first  # a restart adds nothing


def test_trust_script_leaves_your_own_http_section_alone(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    mine = "default_config:\nhttp:\n  server_port: 8123\n"
    (config_dir / "configuration.yaml").write_text(mine)
    assert run_trust_script(config_dir, tmp_path).returncode == 0
    assert (config_dir / "configuration.yaml").read_text() == mine


def test_the_telegram_bot_is_opt_in_and_private(cfg: HomelabConfig, rendered: Any) -> None:
    assert not cfg.apps["telegram-bot"].enabled and "telegram-bot" not in cfg.deployed_apps
    assert not any("telegram-bot" in path for path in rendered.files)
    problems = problems_at("apps.telegram-bot", lambda d: d["apps"]["telegram-bot"].update(enabled=True))
    assert problems == [
        "apps.telegram-bot.image: ghcr.io/example/homelab-telegram-bot:1.0.0 is a placeholder, not a published "
        "image: build and push yours and name it here, or set apps.telegram-bot.enabled: false"
    ]
    data = loopback_data()
    data["apps"]["telegram-bot"].update(enabled=True, image="ghcr.io/someone/homelab-bot:1.0.0")
    enabled = loader.validate(data)
    objects, _ = apps.render_app("telegram-bot", enabled.apps["telegram-bot"], enabled)
    kinds = [o["kind"] for o in objects]
    assert "HTTPRoute" not in kinds
    assert "allow-gateway" not in {o["metadata"]["name"] for o in objects if o["kind"] == "NetworkPolicy"}
    hosts = {r.get("hostname") for r in yaml.safe_load(tunnel_config(enabled))["ingress"]}
    assert f"bot.{enabled.domain}" not in hosts


def tunnel_config(cfg: HomelabConfig) -> str:
    config_map = next(o for o in platform.cloudflared(cfg) if o["kind"] == "ConfigMap")
    return str(config_map["data"]["config.yaml"])


@pytest.mark.parametrize(
    "image",
    [
        "example.com/bot:1",
        "registry.example.org/team/bot:1",
        "example/bot:1",
        "docker.io/example/bot:1",
        "reg.test/x:1",
    ],
)
def test_placeholder_images_are_refused(image: str) -> None:
    problems = problems_at("apps.vaultwarden.image", lambda d: d["apps"]["vaultwarden"].update(image=image))
    assert len(problems) == 1 and "is a placeholder" in problems[0]


def test_the_media_share_is_one_directory_on_one_node(cfg: HomelabConfig, rendered: Any) -> None:
    assert cfg.media.enabled
    for name, path in {"plex": "/media", "qbittorrent": "/downloads"}.items():
        pod = pod_of(rendered, name)
        [share] = [v for v in pod["volumes"] if v["name"] == apps.MEDIA_VOLUME]
        assert share["hostPath"] == {"path": cfg.media.host_path, "type": "DirectoryOrCreate"}
        assert path in mounted_paths(pod)
        assert pod["nodeSelector"] == {"kubernetes.io/hostname": cfg.agents[0].name}
    assert "nodeSelector" not in pod_of(rendered, "vaultwarden")


def test_media_rules_name_their_keys() -> None:
    def enable(data: dict[str, Any], **media: Any) -> None:
        data["media"].update(enabled=True, **media)

    assert problems_at("media", lambda d: enable(d, node="nas")) == [
        "media.node: 'nas' is not one of nodes: k3s-server, k3s-worker-1, k3s-worker-2"
    ]
    assert problems_at("media", lambda d: enable(d, mounts={"jellyfin": "/media"})) == [
        "media.mounts.jellyfin: 'jellyfin' is not a deployed app"
    ]
    assert problems_at("media", lambda d: enable(d, mounts={"plex": "/config"})) == [
        "media.mounts.plex: /config is already a path of its volume"
    ]
    assert problems_at("media", lambda d: enable(d, mounts={})) == [
        "media.mounts: no app mounts the media directory; name each app and its path"
    ]


def test_a_root_image_set_to_non_root_is_refused() -> None:
    problems = problems_at("apps.plex", lambda d: d["apps"]["plex"].update(non_root=True))
    assert len(problems) == 1 and problems[0].startswith(
        "apps.plex.non_root: lscr.io/linuxserver/plex must start as root"
    )


def test_open_webui_may_run_as_non_root_with_its_secret_key() -> None:
    """Its start script writes a generated key as root; given WEBUI_SECRET_KEY it needs no write there."""
    refused = problems_at("apps.open-webui", lambda d: d["apps"]["open-webui"].update(non_root=True))
    assert len(refused) == 1 and "or give WEBUI_SECRET_KEY in apps.open-webui.secrets" in refused[0]
    secret = {"WEBUI_SECRET_KEY": {"env": "WEBUI_SECRET_KEY"}}
    assert problems_at("apps.open-webui", lambda d: d["apps"]["open-webui"].update(non_root=True, secrets=secret)) == []


def test_a_port_the_image_does_not_listen_on_is_refused() -> None:
    assert problems_at("apps.vaultwarden", lambda d: d["apps"]["vaultwarden"].update(port=8080)) == [
        "apps.vaultwarden.port: 8080 is not where vaultwarden/server listens: 80 (set ROCKET_PORT in env to move it)"
    ]
    moved = {"port": 8080, "env": {"ROCKET_PORT": "8080", "SIGNUPS_ALLOWED": "false"}}  # still public: signups shut
    assert problems_at("apps.vaultwarden", lambda d: d["apps"]["vaultwarden"].update(**moved)) == []


def test_a_written_path_off_the_volume_is_refused() -> None:
    moved = {"mount_path": "/srv", "mounts": {}, "sqlite_databases": []}
    problems = problems_at("apps.filebrowser", lambda d: d["apps"]["filebrowser"].update(**moved))
    assert problems == [
        "apps.filebrowser.mounts: filebrowser/filebrowser writes /database (filebrowser.db (users, settings, shares)), "
        "which is not on its volume: add /database to apps.filebrowser.mounts or make it mount_path"
    ]
    # settings.json is copied from the image at every start: a scratch directory is enough for it.
    without_config = {"mounts": {"/srv": "files"}}
    assert problems_at("apps.filebrowser", lambda d: d["apps"]["filebrowser"].update(**without_config)) == []


def test_an_egress_the_image_needs_is_refused_when_missing() -> None:
    assert problems_at("apps.home-assistant", lambda d: d["apps"]["home-assistant"].update(egress=["internet"])) == [
        "apps.home-assistant.egress: ghcr.io/home-assistant/home-assistant must reach lan (devices on the home "
        "network); add 'lan' to egress"
    ]
    on_host = {"egress": [], "host_network": True}  # the node's network: no NetworkPolicy applies
    assert problems_at("apps.home-assistant", lambda d: d["apps"]["home-assistant"].update(**on_host)) == []


def test_images_without_a_contract_are_rendered_from_the_entry_alone() -> None:
    data = loopback_data()
    data["apps"]["notes"] = {"image": "registry.home.arpa/notes:1.0", "port": 9000, "hostname": "notes"}
    cfg = loader.validate(data)
    assert contracts.contract_for(cfg.apps["notes"]) is None
    assert contracts.one_line(cfg.apps["notes"]) == "no contract (your own image)"
    assert contracts.scratch_paths(cfg.apps["notes"]) == []


def test_lm_studio_is_reached_by_name_not_by_an_endpoint_argo_cd_excludes(cfg: HomelabConfig, rendered: Any) -> None:
    """Argo CD's install manifest excludes EndpointSlices from every sync: the tree must not need one."""
    objects = rendered.files["platform/lm-studio/manifests.yaml"]
    assert not [o for o in objects if o["kind"] in ("EndpointSlice", "Endpoints")]
    [service] = [o for o in objects if o["kind"] == "Service"]
    assert service["spec"]["type"] == "ExternalName"
    assert service["spec"]["externalName"] == apps.lm_studio_name(cfg) == f"lm-studio.{cfg.name}.internal"
    [custom] = [o for o in objects if o["kind"] == "ConfigMap"]
    assert custom["metadata"] == {**custom["metadata"], "name": "coredns-custom", "namespace": "kube-system"}
    [(key, block)] = custom["data"].items()
    assert key.endswith(".server")  # K3S's Corefile imports /etc/coredns/custom/*.server at its top level
    assert block.splitlines() == [
        f"{cfg.name}.internal:53 {{",
        "  hosts {",
        f"    {cfg.lm_studio.host} {apps.lm_studio_name(cfg)}",
        "  }",
        "}",
    ]
    # CoreDNS loads that file only when it starts: the apps that need LM Studio resolve it from /etc/hosts.
    pod = pod_of(rendered, "open-webui")
    assert pod["hostAliases"] == [
        {"ip": cfg.lm_studio.host, "hostnames": [apps.LM_STUDIO_SERVICE, apps.lm_studio_name(cfg)]}
    ]
    [container] = pod["containers"]
    assert env_of(container)["OPENAI_API_BASE_URL"].startswith(f"http://{apps.LM_STUDIO_SERVICE}:")
    assert "hostAliases" not in pod_of(rendered, "homepage")


def test_the_readme_table_shows_each_contract_in_one_line() -> None:
    """The manual's app table (docs/guide/apps.md) is the catalog's: one row per default app, its image and contract."""
    from helpers import REPO

    readme = (REPO / "docs" / "guide" / "apps.md").read_text()
    defaults = loader.load(REPO / "config" / "homelab.yaml", environ={}).config
    for name, app in defaults.apps.items():
        assert f"| {name} | `{app.image}` | {contracts.one_line(app)} |" in readme, name


def test_cloudflared_runs_as_its_image_expects(cfg: HomelabConfig) -> None:
    """Its own user, its entrypoint kept (args only), /ready on the metrics port, nothing written."""
    objects = platform.cloudflared(cfg)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    contract = contracts.PLATFORM["cloudflare/cloudflared"]
    assert container["image"].startswith("cloudflare/cloudflared:")
    assert "command" not in container and container["args"][0] == "tunnel" and container["args"][-1] == "run"
    assert pod["securityContext"]["runAsUser"] == contracts.CLOUDFLARED_USER
    assert container["ports"] == [{"name": "metrics", "containerPort": contract.port}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert not contract.writes and container["securityContext"]["readOnlyRootFilesystem"] is True
    config = yaml.safe_load(tunnel_config(cfg))
    assert config["metrics"].endswith(f":{contract.port}")
