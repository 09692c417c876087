"""Grafana's admin login: a password the toolkit generates once, seals, and never prints; never the chart default.

kube-prometheus-stack's values give Grafana ``adminPassword: prom-operator``; the render
points the chart at the generated Secret instead (``grafana.admin.existingSecret``).
"""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from invoke import Context

from helpers import loopback_data, run_cli
from homelab.config import loader
from homelab.config.schema import HomelabConfig
from homelab.core.executor import Executor
from homelab.core.plan import WriteFile
from homelab.gitops import platform
from homelab.secrets import generated, sealing
from homelab.secrets.needed import needed


def config(state: Path, **monitoring: Any) -> HomelabConfig:
    data = copy.deepcopy(loopback_data())
    data["state_dir"] = str(state)
    data["target"] = "lima"  # a target that deploys Grafana from its chart (the sandbox installs no chart)
    data["monitoring"] = {**data["monitoring"], **monitoring}
    return loader.validate(data)


def fake_session(cfg: HomelabConfig, dry_run: bool, lines: list[str]) -> Any:
    """What the sealing plans read from a session: the config, the state dir, an executor (real, local)."""
    executor = Executor(Context(), dry_run=dry_run, out=lines.append)
    return SimpleNamespace(cfg=cfg, state_dir=Path(cfg.state_dir), executor=executor, dry_run=dry_run)


def test_grafana_reads_its_login_from_the_generated_secret_never_the_chart_default(tmp_path: Path) -> None:
    cfg = config(tmp_path / "state")
    values = platform.monitoring_values(cfg)["grafana"]
    assert values["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }
    assert "adminPassword" not in values and "prom-operator" not in str(platform.monitoring_values(cfg))
    [secret] = [s for s in needed(cfg) if s.name == "grafana-admin"]
    assert (secret.namespace, secret.literals) == ("monitoring", {"admin-user": "admin"})
    assert secret.keys["admin-password"][0] == "monitoring.grafana_admin_password"
    assert secret.keys["admin-password"][1].file == str(tmp_path / "state" / "grafana-admin-password")


def test_the_password_is_generated_once_0600_reused_after_and_never_printed(tmp_path: Path) -> None:
    cfg = config(tmp_path / "state")
    (tmp_path / "state").mkdir()
    lines: list[str] = []
    session = fake_session(cfg, dry_run=False, lines=lines)
    first = sealing.missing_plan(session)  # no pinned certificate yet: the password is still made now
    [write] = [a for a in first.actions if isinstance(a, WriteFile)]
    session.executor.execute(first)
    path = tmp_path / "state" / "grafana-admin-password"
    password = path.read_text().strip()
    assert len(password) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert write.path == str(path) and write.mode == 0o600
    resolved, _ = sealing.from_config(session)
    [grafana] = [s for s in resolved if s.name == "grafana-admin"]
    assert grafana.data == {"admin-user": "admin", "admin-password": password}

    again = sealing.missing_plan(session)
    assert not [a for a in again.actions if isinstance(a, WriteFile)], "the second run makes nothing"
    session.executor.execute(again)
    assert path.read_text().strip() == password, "reused, never rotated behind the owner's back"
    shown = "\n".join([*lines, *first.lines(), *again.lines()])
    assert password not in shown


def test_a_dry_run_shows_the_write_and_writes_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path / "state")
    lines: list[str] = []
    session = fake_session(cfg, dry_run=True, lines=lines)
    plan = sealing.missing_plan(session)
    [write] = [a for a in plan.actions if isinstance(a, WriteFile)]
    session.executor.execute(plan)
    assert not (tmp_path / "state").exists()
    assert any(str(tmp_path / "state" / "grafana-admin-password") in line for line in lines)
    value = write.data().decode().strip()
    assert value and not any(value in line for line in lines)


def test_an_owner_reference_is_used_as_is_and_nothing_is_generated(tmp_path: Path) -> None:
    own = tmp_path / "mine"
    own.write_text("correct-horse-battery-staple\n")
    own.chmod(0o600)
    cfg = config(tmp_path / "state", grafana_admin_password={"file": str(own)})
    assert generated.pending(cfg) == []
    session = fake_session(cfg, dry_run=False, lines=[])
    [grafana] = [s for s in sealing.from_config(session)[0] if s.name == "grafana-admin"]
    assert grafana.data["admin-password"] == "correct-horse-battery-staple"
    assert not generated.pending(config(tmp_path / "state", enabled=False)), "no Grafana, no password"


def test_inv_secrets_grafana_says_where_the_password_is_without_printing_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config_file = tmp_path / "homelab.yaml"
    data = loopback_data()
    data["state_dir"] = str(state)
    config_file.write_text(yaml.safe_dump(data))
    env = {"HOMELAB_CONFIG": str(config_file)}
    sandbox = run_cli(["secrets.grafana"], env)
    assert sandbox.code == 0 and "Grafana does not run on the sandbox" in sandbox.stdout, sandbox.output
    data["target"] = "lima"
    config_file.write_text(yaml.safe_dump(data))
    before = run_cli(["secrets.grafana"], env)
    assert before.code == 0, before.output
    assert "password: not made yet: the next inv up generates it" in before.stdout
    state.mkdir()
    (state / "grafana-admin-password").write_text("s3cret-grafana-password-value\n")
    (state / "grafana-admin-password").chmod(0o600)
    after = run_cli(["secrets.grafana"], env)
    assert after.code == 0, after.output
    assert after.stdout.splitlines() == [
        "Grafana: https://grafana.home.test (LAN only)",
        "user: admin",
        f"password: in file {state / 'grafana-admin-password'} (made by inv up; 0600, never printed)",
    ]
    assert "s3cret-grafana-password-value" not in after.output


def test_the_sandbox_which_installs_no_grafana_makes_and_seals_no_login(tmp_path: Path) -> None:
    """Sealed there, it would land in the sealed folder the real homelab shares, from every sandbox started."""
    cfg = config(tmp_path / "state").model_copy(update={"target": "sandbox"})
    assert not [s for s in needed(cfg) if s.name == "grafana-admin"]
    assert generated.pending(cfg) == []
