"""vm.adopt and vm.forget against a real sshd: --dry-run shows the key and the write, and pins nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers import loopback_data, run_cli
from sshd import SshHost, start_sshd

pytestmark = pytest.mark.integration


@pytest.fixture
def node(tmp_path: Path) -> Iterator[SshHost]:
    host = start_sshd("127.0.0.11", tmp_path / "sshd", tmp_path / "client_ed25519")
    yield host
    host.stop()


def env_for(tmp_path: Path, host: SshHost) -> dict[str, str]:
    data = loopback_data()
    data["state_dir"] = str(tmp_path / "state")
    data["ssh"] = {"user": "root", "private_key": str(host.client_key), "public_key": f"{host.client_key}.pub"}
    data["nodes"][0].update({"provider": "ssh", "ssh_port": host.port})
    (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
    return {"HOMELAB_CONFIG": str(tmp_path / "homelab.yaml")}


def fingerprint(host: SshHost) -> str:
    listed = subprocess.run(["ssh-keygen", "-lf", str(host.host_public_key)], capture_output=True, text=True)
    return listed.stdout.split()[1]


def test_adopt_and_forget_dry_runs_show_the_key_and_pin_nothing(tmp_path: Path, node: SshHost) -> None:
    env = env_for(tmp_path, node)
    known_hosts = tmp_path / "state" / "known_hosts"
    seen = fingerprint(node)

    dry = run_cli(["vm.adopt", "k3s-server", "--dry-run"], env)  # no --yes: a dry run asks nothing
    assert dry.code == 0, dry.output
    assert seen in dry.stdout and f"write {known_hosts} (mode 0600" in dry.stdout
    assert not known_hosts.exists()

    pinned = run_cli(["vm.adopt", "k3s-server", "--fingerprint", seen], env)
    assert pinned.code == 0 and f"host key {seen} pinned" in pinned.stdout, pinned.output
    text = known_hosts.read_text()
    assert text.startswith(f"[127.0.0.11]:{node.port} ssh-ed25519 ")
    again = run_cli(["vm.adopt", "k3s-server", "--fingerprint", seen, "--dry-run"], env)
    assert again.code == 0 and "nothing to do" in again.stdout, again.output

    forget = run_cli(["vm.forget", "k3s-server", "--dry-run"], env)
    assert forget.code == 0 and f"write {known_hosts}" in forget.stdout, forget.output
    assert known_hosts.read_text() == text
    gone = run_cli(["vm.forget", "k3s-server", "--yes"], env)
    assert gone.code == 0 and "host key forgotten" in gone.stdout, gone.output
    assert known_hosts.read_text() == ""
