"""k3d.up and k3d.down as plans, with a recording k3d (no Docker engine here): --dry-run changes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from helpers import FAKES, loopback_data, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def k3d_env(tmp_path: Path) -> dict[str, str]:
    data = loopback_data()
    data.update({"name": "fake", "target": "k3d", "state_dir": str(tmp_path / "state")})
    (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
    return {
        "HOMELAB_CONFIG": str(tmp_path / "homelab.yaml"),
        "PATH": f"{FAKES}:{os.environ['PATH']}",
        "FAKE_K3D_STATE": str(tmp_path / "k3d.json"),
        "FAKE_RECORD": str(tmp_path / "record.jsonl"),
    }


def verbs(env: dict[str, str]) -> list[str]:
    record = Path(env["FAKE_RECORD"])
    rows = [json.loads(line)["argv"] for line in record.read_text().splitlines()] if record.exists() else []
    return [" ".join(a for a in argv[:2]) for argv in rows]


def clusters(env: dict[str, str]) -> list[str]:
    state = Path(env["FAKE_K3D_STATE"])
    return list(json.loads(state.read_text())) if state.exists() else []


def test_up_dry_run_plans_the_create_and_writes_nothing_then_up_converges(k3d_env: dict[str, str]) -> None:
    state = Path(k3d_env["HOMELAB_CONFIG"]).parent / "state"
    dry = run_cli(["k3d.up", "--dry-run"], k3d_env)
    assert dry.code == 0, dry.output
    assert "run: " in dry.stdout and "cluster create fake-k3d" in dry.stdout
    assert verbs(k3d_env) == ["cluster list"] and not state.exists()

    up = run_cli(["k3d.up"], k3d_env)
    assert up.code == 0 and "converged" in up.stdout, up.output
    kubeconfig = yaml.safe_load((state / "kubeconfig").read_text())
    assert [c["name"] for c in kubeconfig["contexts"]] == ["fake"]
    assert (state / "kubeconfig").stat().st_mode & 0o777 == 0o600
    again = run_cli(["k3d.up"], k3d_env)
    assert again.code == 0 and "nothing to do" in again.stdout, again.output
    assert verbs(k3d_env).count("cluster create") == 1


def test_down_dry_run_keeps_the_cluster_and_the_kubeconfig_even_when_only_the_context_is_left(
    k3d_env: dict[str, str],
) -> None:
    assert run_cli(["k3d.up"], k3d_env).code == 0
    kubeconfig = Path(k3d_env["HOMELAB_CONFIG"]).parent / "state" / "kubeconfig"
    doc = yaml.safe_load(kubeconfig.read_text())
    for key, item in (("clusters", {"server": "https://127.0.0.1:1"}), ("users", {"token": "t"})):
        doc[key].append({"name": "other", key[:-1]: item})
    doc["contexts"].append({"name": "other", "context": {"cluster": "other", "user": "other"}})
    kubeconfig.write_text(yaml.safe_dump(doc))
    kubeconfig.chmod(0o600)
    before = kubeconfig.read_bytes()

    dry = run_cli(["k3d.down", "--dry-run"], k3d_env)
    assert dry.code == 0 and "cluster delete fake-k3d" in dry.stdout and f"write {kubeconfig}" in dry.stdout
    assert clusters(k3d_env) == ["fake-k3d"] and kubeconfig.read_bytes() == before

    Path(k3d_env["FAKE_K3D_STATE"]).write_text("[]")  # the cluster went away behind the toolkit's back
    stale = run_cli(["k3d.down", "--dry-run"], k3d_env)
    assert kubeconfig.read_bytes() == before, "a dry run rewrote the kubeconfig"
    assert stale.code == 0 and "cluster delete" not in stale.stdout and f"write {kubeconfig}" in stale.stdout

    down = run_cli(["k3d.down"], k3d_env)
    assert down.code == 0, down.output
    assert [c["name"] for c in yaml.safe_load(kubeconfig.read_text())["contexts"]] == ["other"]
    assert "nothing to do" in run_cli(["k3d.down"], k3d_env).stdout
