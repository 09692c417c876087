"""VM planning: templates, power plans, layer selection, task wiring with MockContext."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from invoke import MockContext, Result

from helpers import LOOPBACK_CONFIG
from homelab.config import loader
from homelab.core.errors import UsageError
from homelab.root.layers import select
from homelab.vm import lima
from homelab.vm import plan as vms


@pytest.fixture
def cfg():
    return loader.load(LOOPBACK_CONFIG, environ={}).config


def test_rendering_is_deterministic_and_per_node(cfg) -> None:
    first = lima.render_all(cfg, "ssh-ed25519 AAAAC3Nza test")
    assert first == lima.render_all(cfg, "ssh-ed25519 AAAAC3Nza test")
    assert sorted(first) == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]
    server = yaml.safe_load(first["k3s-server"])
    assert server["cpus"] == 4 and server["memory"] == "6GiB" and server["disk"] == "60GiB"
    assert server["vmType"] == "vz" and server["mounts"] == []
    assert server["networks"][0]["socket"] == "/var/run/socket_vmnet"
    assert "127.0.0.11/24" in server["provision"][0]["script"]
    assert "ssh-ed25519 AAAAC3Nza test" in server["provision"][0]["script"]


def test_mac_addresses_are_stable_and_distinct() -> None:
    assert lima.mac_address("a") == lima.mac_address("a")
    assert lima.mac_address("a") != lima.mac_address("b")
    assert lima.mac_address("a").startswith("52:55:55:")


def test_power_plan_skips_vms_already_in_state(cfg) -> None:
    states = {
        "k3s-server": vms.VmState("k3s-server", "Running"),
        "k3s-worker-1": vms.VmState("k3s-worker-1", "Stopped"),
    }
    plan = vms.power_plan(cfg.nodes, states, "limactl", "Running")
    assert [a.argv for a in plan.changes()] == [("limactl", "start", "--tty=false", "k3s-worker-1")]
    text = "\n".join(plan.lines())
    assert "already running" in text and "k3s-worker-2: does not exist" in text


def test_layers_follow_target_and_narrowing() -> None:
    assert [layer.name for layer in select("lima")] == ["vm", "k3s", "gitops", "backup"]
    assert [layer.name for layer in select("lima", start="k3s")] == ["k3s", "gitops", "backup"]
    assert [layer.name for layer in select("sandbox")] == ["sandbox", "gitops"]
    assert select("lima", only="sandbox") == []
    with pytest.raises(UsageError, match="--only 'vms' is not a layer"):
        select("lima", only="vms")


def fake_limactl(tmp_path: Path, monkeypatch) -> Path:
    fake = tmp_path / "limactl"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("HOMELAB_CONFIG", str(LOOPBACK_CONFIG))
    monkeypatch.setenv("HOMELAB__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    return fake


def listing(status: str) -> Result:
    return Result("\n".join(json.dumps({"name": n, "status": status}) for n in ("k3s-server", "k3s-worker-1")))


def test_vm_stop_task_runs_exact_limactl_commands_then_checks_again(tmp_path: Path, monkeypatch) -> None:
    from homelab.vm import tasks as vm

    fake = fake_limactl(tmp_path, monkeypatch)
    ctx = MockContext(
        run={
            f"{fake} list --json": [listing("Running"), listing("Stopped")],
            f"{fake} stop --tty=false k3s-server": Result(exited=0),
            f"{fake} stop --tty=false k3s-worker-1": Result(exited=0),
        }
    )
    vm.stop(ctx, name=[])
    ran = sorted(call.args[0] for call in ctx.run.call_args_list)
    assert ran == sorted(
        [
            f"{fake} list --json",
            f"{fake} stop --tty=false k3s-server",
            f"{fake} stop --tty=false k3s-worker-1",
            f"{fake} list --json",
        ]
    )


def test_vm_stop_that_leaves_a_vm_running_exits_1_naming_it(tmp_path: Path, monkeypatch) -> None:
    from invoke.exceptions import Exit

    from homelab.vm import tasks as vm

    fake = fake_limactl(tmp_path, monkeypatch)
    still = Result("\n".join(json.dumps({"name": n, "status": s}) for n, s in (("k3s-server", "Running"),)))
    ctx = MockContext(
        run={
            f"{fake} list --json": [listing("Running"), still],
            f"{fake} stop --tty=false k3s-server": Result(exited=0),
            f"{fake} stop --tty=false k3s-worker-1": Result(exited=0),
        }
    )
    with pytest.raises(Exit) as caught:
        vm.stop(ctx, name=[])
    assert caught.value.code == 1
    message = str(caught.value.message)
    assert "not converged" in message and "stop --tty=false k3s-server" in message
    assert "k3s-worker-1" not in message
