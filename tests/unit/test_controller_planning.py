"""Planning the sandbox's controllers: pinned versions in step, listeners on loopback, no fetch beyond it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import REPO, loopback_data
from homelab.config.loader import validate
from homelab.config.schema import GitOps, MetalLB
from homelab.gitops import platform
from homelab.sandbox import controller_objects, controllers, processes

GET_BINARIES = REPO / "scripts" / "get-binaries.sh"


def script_default(name: str) -> str:
    """The default of ``NAME="${NAME:-$(pin table.key)}"`` in get-binaries.sh: that key of versions.toml."""
    import tomllib

    found = re.search(rf'^{name}="\$\{{{name}:-\$\(pin ([^)]+)\)\}}"', GET_BINARIES.read_text(), re.MULTILINE)
    assert found, f"{name} is not read from versions.toml in {GET_BINARIES}"
    value: object = tomllib.loads((REPO / "versions.toml").read_text())
    for key in found.group(1).split("."):
        assert isinstance(value, dict)
        value = value[key]
    return str(value)


def test_the_sandbox_builds_runs_and_the_tree_deploys_the_same_controller_versions() -> None:
    versions = controller_objects.VERSIONS
    assert "v" + script_default("ARGOCD_VERSION") == versions["argocd"]
    assert "v" + script_default("SEALED_SECRETS_VERSION") == versions["sealed-secrets"]
    assert "v" + script_default("METALLB_VERSION") == versions["metallb"]
    reference = validate(loopback_data())
    assert GitOps().argocd_version == reference.gitops.argocd_version == versions["argocd"]
    assert "v" + MetalLB().chart_version == "v" + reference.metallb.chart_version == versions["metallb"]
    assert platform.image_values("sealed-secrets-controller")["tag"] == versions["sealed-secrets"].removeprefix("v")
    rendered = platform.platform(reference)
    argocd_app, _ = rendered["argocd"]
    sealed_app, _ = rendered["sealed-secrets"]
    # Argo CD manages itself from its install manifest at the tag (which pins its image to the same tag)
    assert argocd_app and argocd_app["spec"]["source"]["targetRevision"] == versions["argocd"]
    image = sealed_app and sealed_app["spec"]["source"]["helm"]["valuesObject"]["image"]
    assert image and "v" + image["tag"] == versions["sealed-secrets"]


def test_the_crds_installed_on_the_sandbox_are_the_running_versions() -> None:
    text = GET_BINARIES.read_text()
    for component, version in controller_objects.VERSIONS.items():
        entry = re.search(rf'^\s+"{component} \S+@(\S+) ', text, re.MULTILINE)
        assert entry, f"no CRD source for {component}"
        shell_name = re.fullmatch(r"v\$(\w+)", entry.group(1))
        assert shell_name, (component, entry.group(1))
        assert "v" + script_default(shell_name.group(1)) == version, component


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[processes.Daemon]:
    """The processes as planned for a made-up layout, with every binary "found" under its own name."""
    monkeypatch.setattr(controllers, "require", lambda tool: f"/bin/{tool}")
    cfg = validate(loopback_data())
    session = type("S", (), {"cfg": cfg, "state_dir": tmp_path})()
    lay = controllers.layout(session)
    ports = {name: 20000 + i for i, name in enumerate(controllers.PORTS)}
    api = controllers.Api(context="kwok-x", host="127.0.0.1", port=6443, ca_file="/ca.crt")
    return controllers.daemons(session, lay, ports, api)


def test_every_listener_that_takes_an_address_is_bound_to_loopback(planned: list[processes.Daemon]) -> None:
    flags = {
        "git-daemon": ["--listen=127.0.0.1"],
        "argocd-repo-server": ["--address", "--metrics-address"],
        "sealed-secrets-controller": ["--listen-addr", "--listen-metrics-addr"],
    }
    by_name = {d.name: d for d in planned}
    assert set(by_name) == set(controllers.PROCESSES)
    for name, wanted in flags.items():
        argv = list(by_name[name].argv)
        for flag in wanted:
            if "=" in flag:
                assert flag in argv, (name, flag)
            else:
                assert argv[argv.index(flag) + 1].startswith("127.0.0.1"), (name, flag)
    for daemon in planned:
        assert daemon.probe.describe().split("//")[-1].split()[-1].startswith("127.0.0.1:")


def test_redis_password_reaches_argocd_from_a_file_never_from_argv_or_env(
    planned: list[processes.Daemon], tmp_path: Path
) -> None:
    argocd = [d for d in planned if d.name.startswith("argocd-")]
    assert argocd and all(dict(d.env_from)["REDIS_PASSWORD"].startswith(str(tmp_path)) for d in argocd)
    assert all("REDIS_PASSWORD" not in dict(d.env) for d in planned)
    actions = controllers.file_actions(controllers.Layout(tmp_path / "c", tmp_path / "k"), {"redis": 1, "git": 2})
    secret_writes = [a for a in actions if getattr(a, "mode", None) == 0o600]
    assert {Path(a.path).name for a in secret_writes} == {"redis.password", "redis.conf"}  # type: ignore[attr-defined]
    password = (tmp_path / "c" / "redis.password").exists()
    assert not password, "planning writes nothing"
    for action in actions:
        assert "requirepass" not in action.display()


def test_the_default_project_admits_only_the_local_repository() -> None:
    project = controller_objects.default_project(controllers.git_url(9418))
    assert project["spec"]["sourceRepos"] == ["git://127.0.0.1:9418/homelab.git"]
