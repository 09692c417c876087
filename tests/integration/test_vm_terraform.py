"""vm.* through real terraform (or tofu), with a recording limactl since VMs cannot boot here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import FAKES, loopback_data, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def lima_env(tmp_path: Path) -> dict[str, str]:
    if not (shutil.which("terraform") or shutil.which("tofu")):
        pytest.fail("terraform or tofu must be installed (scripts/get-binaries.sh tofu)")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = tmp_path / "homelab.yaml"
    data = loopback_data()
    data["target"] = "lima"
    data["terraform"] = {"binary": "terraform" if shutil.which("terraform") else "tofu"}
    config.write_text(yaml.safe_dump(data))
    return {
        "HOMELAB_CONFIG": str(config),
        "HOMELAB__STATE_DIR": str(tmp_path / "state"),
        "HOMELAB__SSH__PUBLIC_KEY": f"{key}.pub",
        "HOMELAB__SSH__PRIVATE_KEY": str(key),
        "PATH": f"{FAKES}:{os.environ['PATH']}",
        "FAKE_LIMA_STATE": str(tmp_path / "lima"),
        "FAKE_RECORD": str(tmp_path / "record.jsonl"),
    }


def calls(env: dict[str, str], verb: str | None = None) -> list[list[str]]:
    record = Path(env["FAKE_RECORD"])
    rows = [json.loads(line)["argv"] for line in record.read_text().splitlines()] if record.exists() else []
    return [r for r in rows if verb is None or r[0] == verb]


def records(env: dict[str, str]) -> list[dict[str, Any]]:
    record = Path(env["FAKE_RECORD"])
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def names(rows: list[list[str]]) -> list[str]:
    out = []
    for argv in rows:
        named = [a.split("=", 1)[1] for a in argv if a.startswith("--name=")]
        out.append(named[0] if named else argv[-1])
    return sorted(out)


def test_apply_creates_every_vm_and_a_second_apply_does_nothing(lima_env: dict[str, str]) -> None:
    first = run_cli(["vm.apply"], lima_env)
    assert first.code == 0, first.output
    assert names(calls(lima_env, "create")) == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]
    assert names(calls(lima_env, "start")) == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]
    state = Path(lima_env["HOMELAB__STATE_DIR"])
    inventory = json.loads((state / "inventory.json").read_text())
    assert inventory["nodes"]["k3s-worker-1"]["ip"] == "127.0.0.12"
    pinned = (state / "known_hosts").read_text().splitlines()
    assert len(pinned) == 3 and all(line.split()[1] == "ssh-ed25519" for line in pinned)
    assert (state / "known_hosts").stat().st_mode & 0o777 == 0o600

    before = len(calls(lima_env))
    second = run_cli(["vm.apply"], lima_env)
    assert second.code == 0, second.output
    assert "nothing to do" in second.stdout
    assert [c for c in calls(lima_env)[before:] if c[0] in ("create", "delete", "start")] == []


def test_changing_one_vm_cpus_replaces_only_that_vm(lima_env: dict[str, str]) -> None:
    assert run_cli(["vm.apply"], lima_env).code == 0
    config = Path(lima_env["HOMELAB_CONFIG"])
    data = yaml.safe_load(config.read_text())
    data["nodes"][1]["cpus"] = 5
    config.write_text(yaml.safe_dump(data))
    before = len(calls(lima_env))
    result = run_cli(["vm.apply"], lima_env)
    assert result.code == 0, result.output
    changed = [c for c in calls(lima_env)[before:] if c[0] in ("create", "delete")]
    assert names(changed) == ["k3s-worker-1", "k3s-worker-1"]
    assert [c[0] for c in changed] == ["delete", "create"]


def test_dry_run_prints_the_plan_and_changes_nothing(lima_env: dict[str, str]) -> None:
    result = run_cli(["vm.apply", "--dry-run"], lima_env)
    assert result.code == 0, result.output
    assert "k3s-server.yaml" in result.stdout and "apply -input=false" in result.stdout
    assert not Path(lima_env["HOMELAB__STATE_DIR"]).exists()
    assert calls(lima_env) == []


def test_delete_asks_and_destroy_with_yes_removes_every_vm(lima_env: dict[str, str]) -> None:
    assert run_cli(["vm.apply"], lima_env).code == 0
    refused = run_cli(["vm.delete", "--name", "k3s-worker-2"], lima_env)
    assert refused.code == 2 and "--yes" in refused.stderr
    assert calls(lima_env, "delete") == []
    one = run_cli(["vm.delete", "--name", "k3s-worker-2", "--yes"], lima_env)
    assert one.code == 0, one.output
    assert names(calls(lima_env, "delete")) == ["k3s-worker-2"]
    assert run_cli(["vm.destroy", "--yes"], lima_env).code == 0
    assert names(calls(lima_env, "delete")) == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]
    assert (Path(lima_env["HOMELAB__STATE_DIR"]) / "known_hosts").read_text() == ""


def test_start_runs_vms_in_parallel(lima_env: dict[str, str]) -> None:
    assert run_cli(["vm.apply"], lima_env).code == 0
    assert run_cli(["vm.stop"], lima_env).code == 0
    env = {**lima_env, "FAKE_LIMA_DELAY": "1.5"}
    first = len(calls(lima_env))
    result = run_cli(["vm.start"], env)
    assert result.code == 0, result.output
    # The fake records each call before its 1.5 s delay: in parallel, every start begins before the first ends.
    began = [row["t"] for row in records(lima_env)[first:] if row["argv"][0] == "start"]
    assert len(began) == 3 and max(began) - min(began) < 1.5, f"starts began {began}: not parallel"
    status = run_cli(["vm.status", "--json"], lima_env)
    assert {row["state"] for row in json.loads(status.stdout)} == {"Running"}
    again = run_cli(["vm.start"], lima_env)
    assert "nothing to do" in again.stdout


def picture(env: dict[str, str]) -> dict[str, str]:
    """Every file of the state dir (mode and content) and the fake Lima's instances."""
    found = {}
    for root in (Path(env["HOMELAB__STATE_DIR"]), Path(env["FAKE_LIMA_STATE"])):
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file() and path.name != "lock":
                found[str(path)] = f"{path.stat().st_mode & 0o777:o}:{path.read_text()}"
    return found


def test_every_vm_dry_run_shows_its_plan_and_changes_no_state_no_vm(lima_env: dict[str, str]) -> None:
    assert run_cli(["vm.apply"], lima_env).code == 0
    config = Path(lima_env["HOMELAB_CONFIG"])
    data = yaml.safe_load(config.read_text())
    data["nodes"][1]["cpus"] = 5
    config.write_text(yaml.safe_dump(data))
    before, first_call = picture(lima_env), len(calls(lima_env))
    expected = {
        ("vm.apply",): ["1 to add, 0 to change, 1 to destroy", "apply -input=false", "k3s-worker-1.yaml"],
        ("vm.create", "--name", "k3s-worker-1"): ['-target=terraform_data.vm["k3s-worker-1"]'],
        ("vm.render",): ["write", "k3s-worker-1.yaml"],
        ("vm.delete", "--name", "k3s-worker-2"): [
            "destroy",
            '-target=terraform_data.vm["k3s-worker-2"]',
            "known_hosts",
        ],
        ("vm.destroy",): ["destroy -input=false", "known_hosts"],
        ("vm.stop",): ["stop --tty=false k3s-server", "stop --tty=false k3s-worker-2"],
        ("vm.start",): ["already running"],
        ("vm.forget", "k3s-server"): ["known_hosts (mode 0600"],
    }
    for args, shown in expected.items():
        result = run_cli([*args, "--dry-run"], lima_env)
        assert result.code == 0, result.output
        assert all(text in result.stdout for text in shown), (args, result.stdout)
        assert picture(lima_env) == before, f"inv {' '.join(args)} --dry-run changed the state"
    verbs = {argv[0] for argv in calls(lima_env)[first_call:]}
    assert verbs <= {"list"}, f"dry runs ran limactl {verbs}"


def test_apply_after_a_dry_run_does_what_it_showed_and_says_converged(lima_env: dict[str, str]) -> None:
    shown = run_cli(["vm.apply", "--dry-run"], lima_env)
    assert "3 to add" in shown.stdout, shown.output
    done = run_cli(["vm.apply"], lima_env)
    assert done.code == 0 and "vm: converged" in done.stdout, done.output
    again = run_cli(["vm.apply", "--dry-run"], lima_env)
    assert "terraform: every VM matches the config" in again.stdout and "nothing to do" in again.stdout
