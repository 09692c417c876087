"""The SSH executor against a real sshd: runs, uploads, and refuses unverified hosts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from invoke import Context

from helpers import loopback_data, run_cli
from homelab.core.errors import HostKeyError
from homelab.core.plan import Plan, Run, WriteFile
from homelab.core.session import Session
from homelab.vm.plan import host_key_from_pub
from sshd import SshHost, start_sshd

pytestmark = pytest.mark.integration


@pytest.fixture
def node(tmp_path: Path) -> Iterator[SshHost]:
    host = start_sshd("127.0.0.11", tmp_path / "sshd", tmp_path / "client_ed25519")
    yield host
    host.stop()


def make_session(tmp_path: Path, host: SshHost) -> Session:
    data = loopback_data()
    data["state_dir"] = str(tmp_path / "state")
    data["ssh"] = {"user": "root", "private_key": str(host.client_key), "public_key": f"{host.client_key}.pub"}
    data["nodes"][0]["ssh_port"] = host.port
    data["nodes"][0]["provider"] = "ssh"
    config = tmp_path / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    return Session(Context(), config_path=config, out=lambda _: None)


def pin(session: Session, host: SshHost, key_file: Path | None = None) -> None:
    key = host_key_from_pub((key_file or host.host_public_key).read_text())
    session.known_hosts.record(session.endpoint(session.node("k3s-server")), key)


def test_runs_a_command_and_uploads_a_file_with_its_mode(tmp_path: Path, node: SshHost) -> None:
    with make_session(tmp_path, node) as s:
        pin(s, node)
        result = s.executor.run(Run(("sh", "-c", "echo hello from $(id -un)"), host="k3s-server"))
        assert result.stdout.strip() == "hello from root"
        target = tmp_path / "uploaded" / "config.yaml"
        s.executor.execute(Plan("upload", [WriteFile(str(target), "token-file: x\n", 0o600, host="k3s-server")]))
    assert target.read_text() == "token-file: x\n"
    assert target.stat().st_mode & 0o777 == 0o600


def test_unknown_host_key_is_refused_and_nothing_runs(tmp_path: Path, node: SshHost) -> None:
    marker = tmp_path / "ran"
    with make_session(tmp_path, node) as s:
        with pytest.raises(HostKeyError, match="not pinned"):
            s.executor.run(Run(("touch", str(marker)), host="k3s-server"))
        assert not s.known_hosts.path.exists()
    assert not marker.exists()


def test_changed_host_key_is_refused_and_known_hosts_unchanged(tmp_path: Path, node: SshHost) -> None:
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    marker = tmp_path / "ran"
    with make_session(tmp_path, node) as s:
        pin(s, node, Path(f"{other}.pub"))
        before = s.known_hosts.path.read_bytes()
        with pytest.raises(HostKeyError, match="CHANGED"):
            s.executor.run(Run(("touch", str(marker)), host="k3s-server"))
        assert s.known_hosts.path.read_bytes() == before
    assert not marker.exists()


def test_adopt_pins_only_the_expected_fingerprint(tmp_path: Path, node: SshHost) -> None:
    from homelab.core.ssh import fingerprint, scan_host_key

    s = make_session(tmp_path, node)
    expected = subprocess.run(
        ["ssh-keygen", "-lf", str(node.host_public_key)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert fingerprint(scan_host_key(s.endpoint(s.node("k3s-server")))) == expected
    env = {"HOMELAB_CONFIG": str(s.loaded.files[0])}

    other = "SHA256:" + "A" * 43
    refused = run_cli(["vm.adopt", "k3s-server", "--fingerprint", other], env)
    assert refused.code == 1, refused.output
    assert f"host key fingerprint is {expected}, not the expected {other}; nothing pinned" in refused.stderr
    assert not s.known_hosts.path.exists()

    pinned = run_cli(["vm.adopt", "k3s-server", "--fingerprint", expected], env)
    assert pinned.code == 0 and f"host key {expected} pinned" in pinned.stdout, pinned.output
    with make_session(tmp_path, node) as again:
        assert again.executor.run(Run(("true",), host="k3s-server")).exited == 0  # the pinned key is trusted
    repeated = run_cli(["vm.adopt", "k3s-server", "--fingerprint", expected], env)
    assert repeated.code == 0 and "already pinned; nothing to do" in repeated.stdout, repeated.output
