"""vm.* through real terraform (or tofu), with a recording limactl since VMs cannot boot here."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import interrupt, loopback_data, run_cli, stand_in_lima_env, start_inv

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
    return stand_in_lima_env(tmp_path, config, key)


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
    # Creating VMs takes minutes: Terraform's own progress lines are shown as they come, not the provisioners'.
    progress = [line for line in first.stdout.splitlines() if line.startswith("    | ")]
    assert '    | terraform_data.vm["k3s-server"]: Creating...' in progress, first.stdout
    assert any(line.startswith('    | terraform_data.vm["k3s-worker-2"]: Creation complete after') for line in progress)
    assert not [line for line in progress if "local-exec" in line]
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


def instances(env: dict[str, str]) -> dict[str, Any]:
    """What the stand-in limactl holds: name -> record (status, sizes in bytes, creation time)."""
    state = Path(env["FAKE_LIMA_STATE"]) / "instances.json"
    return dict(json.loads(state.read_text())) if state.exists() else {}


def edit_config(env: dict[str, str], change: Any) -> None:
    config = Path(env["HOMELAB_CONFIG"])
    data = yaml.safe_load(config.read_text())
    change(data)
    config.write_text(yaml.safe_dump(data))


def test_a_size_change_resizes_that_vm_in_place_and_keeps_its_disk(lima_env: dict[str, str]) -> None:
    """cpus and memory change through stop, limactl edit, start: the VM (and its data) is the same one."""
    assert run_cli(["vm.apply"], lima_env).code == 0
    before_vms, before = instances(lima_env), len(calls(lima_env))

    def grow(data: dict[str, Any]) -> None:
        data["nodes"][1].update(cpus=5, memory="10GiB")

    edit_config(lima_env, grow)
    result = run_cli(["vm.apply"], lima_env)
    assert result.code == 0, result.output
    acted = [c for c in calls(lima_env)[before:] if c[0] in ("create", "delete", "stop", "edit", "start")]
    assert [c[0] for c in acted] == ["stop", "edit", "start"] and all(c[-1] == "k3s-worker-1" for c in acted)
    after = instances(lima_env)["k3s-worker-1"]
    assert after["created"] == before_vms["k3s-worker-1"]["created"]  # not re-created
    assert (after["cpus"], after["memory"], after["status"]) == (5, 10 * 1024**3, "Running")
    again = run_cli(["vm.apply"], lima_env)
    assert again.code == 0 and "nothing to do" in again.stdout, again.output


def test_a_stopped_vm_is_resized_without_a_stop_and_started(lima_env: dict[str, str]) -> None:
    """limactl stop refuses a stopped instance (Lima 1.2): the module must not ask it to."""
    assert run_cli(["vm.apply"], lima_env).code == 0
    assert run_cli(["vm.stop", "--name", "k3s-worker-2"], lima_env).code == 0
    before = len(calls(lima_env))
    edit_config(lima_env, lambda data: data["nodes"][2].update(memory="9GiB"))
    result = run_cli(["vm.apply"], lima_env)
    assert result.code == 0, result.output
    acted = [c for c in calls(lima_env)[before:] if c[0] in ("stop", "edit", "start")]
    assert [(c[0], c[-1]) for c in acted] == [("edit", "k3s-worker-2"), ("start", "k3s-worker-2")]
    after = instances(lima_env)["k3s-worker-2"]
    assert (after["memory"], after["status"]) == (9 * 1024**3, "Running")


def test_a_smaller_disk_is_refused_naming_the_node_before_any_vm_stops(lima_env: dict[str, str]) -> None:
    """Lima grows disks only: a shrink is refused up front, not after the VM was stopped for it."""
    assert run_cli(["vm.apply"], lima_env).code == 0
    before_vms, before = instances(lima_env), len(calls(lima_env))
    edit_config(lima_env, lambda data: data["nodes"][1].update(disk="10GiB"))
    for args in (["vm.apply", "--dry-run"], ["vm.apply"], ["up", "--offline"]):
        result = run_cli(args, lima_env)
        assert result.code == 2, (args, result.output)
        assert "nodes[1].disk" in result.stderr and "never shrink" in result.stderr, result.output
        assert "Traceback" not in result.output
    assert [c[0] for c in calls(lima_env)[before:] if c[0] not in ("list",)] == []
    assert instances(lima_env) == before_vms  # every VM still running, nothing edited


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_while_vms_start_ends_vm_apply_with_its_code_stops_terraform_and_a_rerun_finishes(
    lima_env: dict[str, str], how: str
) -> None:
    """Terraform and the limactl it runs are stopped, not left behind; the tainted VM is finished by the re-run."""
    from homelab.core.signals import descendants

    process = start_inv(["vm.apply"], {**lima_env, "FAKE_LIMA_DELAY": "30"})
    deadline = time.monotonic() + 120
    while not any(c[0] == "start" for c in calls(lima_env)):
        assert time.monotonic() < deadline and process.poll() is None, "no VM started"
        time.sleep(0.1)
    below = descendants(process.pid)
    code = interrupt(process, how)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == code, stderr
    assert "re-run the same command" in stderr and "Traceback" not in stderr, stderr
    left = [pid for pid in below if Path(f"/proc/{pid}").exists()]
    assert not left, f"still running after vm.apply ended: {left}"
    rerun = run_cli(["vm.apply"], lima_env)
    assert rerun.code == 0, rerun.output
    assert {name: vm["status"] for name, vm in instances(lima_env).items()} == dict.fromkeys(
        ["k3s-server", "k3s-worker-1", "k3s-worker-2"], "Running"
    )
    assert "nothing to do" in run_cli(["vm.apply"], lima_env).stdout


def test_on_limas_first_run_here_vms_are_created_one_at_a_time(lima_env: dict[str, str]) -> None:
    fresh = {**lima_env, "LIMA_HOME": str(Path(lima_env["FAKE_LIMA_STATE"]) / "new-lima-home")}
    result = run_cli(["vm.apply"], fresh)
    assert result.code == 0, result.output
    assert "Lima's first run here: VMs start one at a time" in result.stdout
    assert "-parallelism=1" in result.stdout and "-parallelism=3" not in result.stdout


def test_resizes_of_several_vms_run_one_at_a_time(lima_env: dict[str, str]) -> None:
    assert run_cli(["vm.apply"], lima_env).code == 0
    before = len(records(lima_env))

    def grow(data: dict[str, Any]) -> None:
        for node in data["nodes"]:
            node["memory"] = "12GiB"

    edit_config(lima_env, grow)
    result = run_cli(["vm.apply"], {**lima_env, "FAKE_LIMA_DELAY": "0.5"})
    assert result.code == 0, result.output
    steps = [(r["argv"][0], r["argv"][-1]) for r in records(lima_env)[before:] if r["argv"][0] in ("stop", "start")]
    # each VM is back up before the next one stops: never two nodes down at once
    assert [verb for verb, _ in steps] == ["stop", "start"] * 3, steps
    assert [name for _, name in steps[::2]] == [name for _, name in steps[1::2]]


def test_a_change_only_a_new_vm_can_make_is_refused_without_yes_naming_the_loss(lima_env: dict[str, str]) -> None:
    assert run_cli(["vm.apply"], lima_env).code == 0
    state = Path(lima_env["HOMELAB__STATE_DIR"])
    pinned = (state / "known_hosts").read_text()
    created = {name: vm["created"] for name, vm in instances(lima_env).items()}
    before = len(calls(lima_env))

    def new_image(data: dict[str, Any]) -> None:
        arch = data["lima"]["arch"]
        data["lima"]["images"] = {arch: "https://images.example.org/debian-13.qcow2"}

    edit_config(lima_env, new_image)
    refused = run_cli(["vm.apply"], lima_env)
    assert refused.code == 2, refused.output
    assert "k3s-server, k3s-worker-1, k3s-worker-2 would be deleted and created again" in refused.stderr
    assert "k3s-server loses the K3S datastore" in refused.stderr and "inv vm.apply --yes" in refused.stderr
    assert [c for c in calls(lima_env)[before:] if c[0] in ("create", "delete", "stop", "edit")] == []
    shown = run_cli(["vm.apply", "--dry-run"], lima_env)
    assert shown.code == 0 and "the real run stops here without --yes" in shown.stdout, shown.output
    accepted = run_cli(["vm.apply", "--yes"], lima_env)
    assert accepted.code == 0, accepted.output
    assert all(instances(lima_env)[name]["created"] != when for name, when in created.items())
    repinned = (state / "known_hosts").read_text()
    assert repinned != pinned and len(repinned.splitlines()) == 3  # old keys forgotten, new ones pinned


def test_a_start_killed_midway_is_finished_by_the_next_apply(lima_env: dict[str, str]) -> None:
    """The failed VM is tainted; Terraform runs no destroy provisioner for it, so the next create must find it."""
    failing = {**lima_env, "FAKE_LIMA_FAIL_START": "k3s-worker-2"}
    first = run_cli(["vm.apply"], failing)
    assert first.code != 0
    assert instances(lima_env)["k3s-worker-2"]["status"] == "Stopped"
    second = run_cli(["vm.apply"], failing)
    assert second.code == 0, second.output
    assert "already exists" not in second.output
    assert names(calls(lima_env, "create")).count("k3s-worker-2") == 1
    assert {vm["status"] for vm in instances(lima_env).values()} == {"Running"}


def test_destroy_deletes_a_vm_whose_creation_failed(lima_env: dict[str, str]) -> None:
    assert run_cli(["vm.apply"], {**lima_env, "FAKE_LIMA_FAIL_START": "k3s-worker-2"}).code != 0
    assert "k3s-worker-2" in instances(lima_env)
    gone = run_cli(["vm.destroy", "--yes"], lima_env)
    assert gone.code == 0, gone.output
    assert instances(lima_env) == {}


def test_destroy_finishes_when_a_delete_fails_after_removing_its_vm(lima_env: dict[str, str]) -> None:
    assert run_cli(["vm.apply"], lima_env).code == 0
    gone = run_cli(["vm.destroy", "--yes"], {**lima_env, "FAKE_LIMA_FAIL_DELETE": "k3s-server"})
    assert gone.code == 0, gone.output
    assert instances(lima_env) == {}
    assert names(calls(lima_env, "delete")).count("k3s-server") == 2
    state = json.loads((Path(lima_env["HOMELAB__STATE_DIR"]) / "terraform" / "terraform.tfstate").read_text())
    assert state["resources"] == []  # nothing left for a later apply to trip over


def test_dry_run_prints_the_plan_and_changes_nothing(lima_env: dict[str, str]) -> None:
    result = run_cli(["vm.apply", "--dry-run"], lima_env)
    assert result.code == 0, result.output
    assert "k3s-server.yaml" in result.stdout and "apply -input=false" in result.stdout
    assert not Path(lima_env["HOMELAB__STATE_DIR"]).exists()
    # looking (can limactl run at all? how big is each disk now?) is not acting
    assert calls(lima_env) and all(call == ["list", "--json"] for call in calls(lima_env))


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
        # the size resource is replaced (stop, edit, start); the VM itself only has its recorded cpus updated
        ("vm.apply",): ["1 to add, 1 to change, 1 to destroy", "resized in place", "apply -input=false"],
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
    assert "6 to add" in shown.stdout, shown.output  # each VM and its size
    done = run_cli(["vm.apply"], lima_env)
    assert done.code == 0 and "vm: converged" in done.stdout, done.output
    again = run_cli(["vm.apply", "--dry-run"], lima_env)
    assert "terraform: every VM matches the config" in again.stdout and "nothing to do" in again.stdout


def test_a_limactl_that_refuses_root_is_one_clear_error_before_terraform_runs(
    lima_env: dict[str, str], tmp_path: Path
) -> None:
    refusing = tmp_path / "refusing"
    refusing.mkdir()
    (refusing / "limactl").write_text('#!/bin/sh\necho "must not run as the root user" >&2\nexit 1\n')
    (refusing / "limactl").chmod(0o755)
    result = run_cli(["vm.apply"], {**lima_env, "PATH": f"{refusing}:{lima_env['PATH']}"})
    assert result.code != 0
    assert "limactl cannot run (must not run as the root user): run inv as your own user, not root" in result.stderr
    assert result.stderr.count("root user") == 1, result.stderr
    assert not (Path(lima_env["HOMELAB__STATE_DIR"]) / "terraform" / "terraform.tfstate").exists()
