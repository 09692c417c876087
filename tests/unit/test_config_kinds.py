"""Config value kinds: valid values of every kind still pass, every field has a kind.

The bad-config corpus (tests/configs/bad) shows each rule rejecting; these tests
show the same rules accept what real configs hold, so a validator cannot become
"reject everything" unnoticed.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import AfterValidator, BaseModel, BeforeValidator, PlainValidator

from homelab.config import checks, cron, image_ref, loader
from homelab.config.schema import HomelabConfig
from homelab.core.errors import ConfigError

NODE = {"name": "a", "role": "server", "ip": "192.168.105.10"}
# An image without a contract (homelab.apps.contracts): these tests are about the kinds of values alone.
APP = {"image": "registry.home.arpa/notes:1.0", "port": 80, "hostname": "vault"}
DIGEST = "sha256:" + "0123456789abcdef" * 4

VALID: dict[str, list[Any]] = {
    "domain": ["home.example.com", "lab.home.arpa", "xn--bcher-kva.example", "1password.example.com", "a.b"],
    "name": ["homelab", "lab-2"],
    "apps.vault.hostname": ["vault", "a", "x1", "my-vault"],
    "monitoring.grafana_hostname": ["grafana", "metrics"],
    "backup.schedule": [
        "0 3 * * *",
        "*/15 * * * *",
        "0 3 * * mon-fri",
        "30 2 1,15 * *",
        "0 4 * jan-jun/2 sun",
        "0 3 29 2 *",  # leap days come round
        "0 3 30 2 1",  # weekday restricted too: runs on Mondays
        "0 0 * * 7",
        "0-30/10 1-5 * * *",
        "0 3 * * SAT",
        "@daily",
        "@weekly",
    ],
    "apps.vault.image": [
        "nginx:1.27",
        "ghcr.io/gethomepage/homepage-fork:v1.4.6",
        "localhost:5000/app:dev",
        "localhost/app:1",
        f"registry.home:5000/team/app:1.0@{DIGEST}",
        f"app@{DIGEST}",
        "[::1]:5000/app:1",
        "192.168.105.5:5000/app:1",
        "quay.io/org/a.b_c__d-e---f:1_2.3-rc",
        "docker.io/library/alpine:3.20",
        "Registry.Home/app:1",
        f"app@sha512:{'ab' * 64}",
    ],
    "backup.notify_api": ["https://api.telegram.org", "https://api.telegram.org/", "http://127.0.0.1:8081"],
    "backup.deadman_url": ["https://hc-ping.com/5f3e-uuid", "http://192.168.105.5:8000/ping/abc", None],
    "backup.repository": [
        "/var/backups/homelab/restic",
        "~/backups/restic",
        "sftp:user@nas.home:/srv/restic",
        "rest:https://nas.home:8000/homelab",
        "s3:s3.amazonaws.com/bucket/homelab",
        "local:/srv/restic",
    ],
    "gitops.repo_url": [
        "https://github.com/me/homelab.git",
        "git@github.com:me/homelab.git",
        "ssh://git@github.com:22/me/homelab.git",
    ],
    "gitops.install_manifest": [
        "https://raw.githubusercontent.com/argoproj/argo-cd/{version}/manifests/install.yaml",
        "/srv/argocd/{version}/install.yaml",
        "~/argocd-install.yaml",
    ],
    "gitops.revision": ["main", "release/1.2", "v1.0.0", "0123456789abcdef0123456789abcdef01234567"],
    "gitops.path": ["k8s", ".", "clusters/home"],
    "gitops.argocd_version": ["v3.1.8", "v3.2.0-rc1"],
    "k3s.api_endpoint": ["https://192.168.105.10:6443", "https://k3s.home.example.com:6443", None],
    "k3s.installer_url": ["https://get.k3s.io", "http://127.0.0.1:8080/install.sh"],
    "k3s.version": ["v1.33.5+k3s1", "v1.34.0-rc1+k3s1"],
    "k3s.drain_timeout": [5, 300, 86400],
    "k3s.extra_server_config": [{"node-ip": "192.168.105.10", "disable": "traefik"}],
    "lima.images.aarch64": ["file:///srv/ubuntu.qcow2", "/srv/ubuntu.img", "~/ubuntu.img", "https://x.example/u.img"],
    "lima.interface": ["lima0", "vmnet.1"],
    "metallb.chart_version": ["0.15.2", "v1.18.2", "1.0.0-rc.1", "1.2.3+build.5"],
    "monitoring.retention": ["15d", "12h", "1w2d", "1y", "90m"],
    "monitoring.storage": ["512MiB", "20GiB", "1TiB"],
    "apps.vault.cpu_request": ["50m", "0.05", "0.5"],
    "apps.vault.cpu_limit": ["500m", "0.5", "2", "1.25"],
    "apps.vault.memory_limit": ["512MiB", "1GiB"],
    "apps.vault.port": [1, 8080, 65535],
    "apps.vault.mount_path": ["/config", "/app/backend/data"],
    "apps.vault.env": [{"OPENAI_API_BASE_URL": "http://x", "spring.profile": "home", "_X": ""}],
    "apps.vault.sqlite_databases": [["db.sqlite3", "home-assistant_v2.db"]],
    "apps.vault.storage_class": ["local-path", "longhorn-homelab", "fast.ssd"],
    "apps.vault.quiesce": [["sqlite3 /data/db.sqlite3 .backup"]],
    "network.dns": [["1.1.1.1", "9.9.9.9"], ["192.168.105.1"], ["192.168.105.3", "10.0.0.53", "8.8.8.8"]],
    "network.gateway": ["192.168.105.1", "192.168.105.254"],
    "ssh.port": [22, 2222],
    "ssh.user": ["homelab", "root", "_svc", "ops-1"],
    "nodes.0.taints": [["dedicated=gpu:NoSchedule", "gpu:NoExecute", "example.com/spot=:PreferNoSchedule"]],
    "nodes.0.labels": [{"node.kubernetes.io/gpu": "true", "tier": "", "example.com/a_b.c": "x-1"}],
    "tls.email": ["admin@example.com", "me+lab@home.example.org"],
    "cloudflare.tunnel_name": ["homelab", "home_lab.2"],
    "kube_context": ["homelab", "admin@k3s", None],
    "secrets.controller_name": ["sealed-secrets-controller"],
    "cloudflare.api_token": [
        {"env": "CLOUDFLARE_API_TOKEN"},
        {"file": "~/.config/cf"},
        {"keychain": "cloudflare token"},
    ],
}


def config_with(path: str, value: Any) -> dict[str, Any]:
    """A minimal valid config with the value at ``path`` (dots; digits index lists)."""
    data: dict[str, Any] = {"nodes": [dict(NODE)], "apps": {"vault": dict(APP)}}
    keys = path.split(".")
    target: Any = data
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target.setdefault(key, {})
    target[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value"), [(path, value) for path, values in VALID.items() for value in values], ids=str
)
def test_valid_value_passes(path: str, value: Any) -> None:
    loader.validate(config_with(path, value))


def test_reference_and_loopback_configs_stay_valid() -> None:
    from helpers import LOOPBACK_CONFIG, REPO, loopback_data

    loader.load(REPO / "config" / "homelab.yaml", environ={})
    loader.load(LOOPBACK_CONFIG, environ={})
    loader.validate(loopback_data())


def test_notify_api_loses_its_trailing_slash() -> None:
    """The token path is appended to it: https://api.telegram.org/ must not become ...org//bot<token>."""
    cfg = loader.validate(config_with("backup.notify_api", "https://api.telegram.org/"))
    assert cfg.backup.notify_api == "https://api.telegram.org"


@pytest.mark.parametrize(
    ("expression", "minutes", "weekdays"),
    [("*/20 * * * *", {0, 20, 40}, set(range(8))), ("0 3 * * mon-fri", {0}, {1, 2, 3, 4, 5})],
)
def test_cron_fields_select_what_cron_would(expression: str, minutes: set[int], weekdays: set[int]) -> None:
    sets = cron.parse(expression)
    assert sets is not None and sets[0] == minutes and sets[4] == weekdays


def test_image_reference_splits_registry_as_docker_does() -> None:
    """'library/app' is a path on Docker Hub; 'Upper/app' names a registry, so its case is allowed there."""
    assert image_ref.problem("library/app:1") is None
    assert image_ref.problem("Upper/app:1") is None
    assert "path component 'Upper'" in (image_ref.problem("docker.io/Upper/app:1") or "")


def test_every_field_has_a_validator_for_its_kind() -> None:
    """A new field typed as bare str or int would accept anything: give it a kind from config/kinds.py."""
    offenders: list[str] = []

    def typed(tp: Any, metadata: list[Any]) -> bool:
        if typing.get_origin(tp) is typing.Annotated:
            return typed(tp.__origin__, [*metadata, *tp.__metadata__])
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            walk(tp, "")
            return True
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            return all(typed(arg, metadata) for arg in typing.get_args(tp) if arg is not type(None))
        if origin in (list, dict):
            return all(typed(arg, []) for arg in typing.get_args(tp))
        if origin is typing.Literal or tp is bool:
            return True
        return any(isinstance(m, AfterValidator | BeforeValidator | PlainValidator) for m in metadata)

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            if not typed(info.annotation, list(info.metadata)):
                offenders.append(f"{model.__name__}.{name}: {info.annotation}")

    walk(HomelabConfig, "")
    assert not offenders, "\n".join(offenders)


def test_apps_cannot_take_a_namespace_the_platform_renders() -> None:
    """RESERVED_NAMESPACES mirrors gitops/platform.py; a new platform namespace must be added there."""
    from helpers import loopback_data
    from homelab.gitops import platform

    data = loopback_data()
    data["options"] = {"longhorn": True, "velero": True}
    data["backup"]["offsite"] = {  # Velero keeps its backups in the offsite S3 store
        "repository": "s3:https://s3.example.com/bucket/restic",
        "credentials": {"AWS_ACCESS_KEY_ID": {"file": "/k/id"}, "AWS_SECRET_ACCESS_KEY": {"file": "/k/secret"}},
    }
    cfg = loader.validate(data)
    used: set[str] = set()
    for app, objects in platform.platform(cfg).values():
        for obj in [*objects, *([app] if app else [])]:
            if obj["kind"] == "Namespace":
                used.add(obj["metadata"]["name"])
            used.add(obj["metadata"].get("namespace") or "default")
            used.add(((obj.get("spec") or {}).get("destination") or {}).get("namespace") or "default")
    reserved = checks.RESERVED_NAMESPACES | {cfg.secrets.controller_namespace}
    assert {ns for ns in used if not ns.startswith("kube-")} <= reserved


def test_private_path_inside_sticky_dir_is_allowed_once_it_is_yours(tmp_path: Path) -> None:
    """/tmp/<your 0700 dir>/repo is safe: the sticky bit stops others renaming what you own."""
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert "does not exist yet" in (checks.exposure(sticky / "mine" / "repo") or "")
    (sticky / "mine").mkdir(mode=0o700)
    assert checks.exposure(sticky / "mine" / "repo") is None
    (sticky / "mine").chmod(0o777)
    assert "is world-writable" in (checks.exposure(sticky / "mine" / "repo") or "")
    assert "world-writable directory (sticky)" in (checks.exposure(sticky) or "")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a directory to another user")
def test_private_path_in_sticky_dir_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "theirs").mkdir(mode=0o700)
    os.chown(sticky / "theirs", 65534, 65534)
    assert "belongs to another user" in (checks.exposure(sticky / "theirs" / "repo") or "")


def test_world_writable_ancestor_is_found_above_a_private_directory(tmp_path: Path) -> None:
    """The old check stopped at the nearest existing directory; every ancestor counts."""
    shared = tmp_path / "shared"
    (shared / "private").mkdir(parents=True)
    shared.chmod(0o777)
    (shared / "private").chmod(0o700)
    assert "above it is world-writable" in (checks.exposure(shared / "private" / "repo") or "")
    with pytest.raises(ConfigError, match="state_dir"):
        loader.validate({**config_with("state_dir", str(shared / "private" / "state"))})
