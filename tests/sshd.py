"""Real OpenSSH test hosts on 127.0.0.x, each with its own host key, for fabric tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/usr/bin") or "/usr/sbin/sshd"


@dataclass
class SshHost:
    """One running sshd and the files a client needs to reach it."""

    ip: str
    port: int
    directory: Path
    client_key: Path
    process: subprocess.Popen[bytes]

    @property
    def host_public_key(self) -> Path:
        return self.directory / "host_ed25519.pub"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def start_sshd(ip: str, directory: Path, client_key: Path, extra: str = "") -> SshHost:
    """Start sshd on ``ip`` with a fresh host key; ``client_key`` may log in as root."""
    if not Path(SSHD).exists():
        raise RuntimeError("sshd not found: apt-get install openssh-server (scripts/setup.sh does)")
    directory.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    keygen(directory / "host_ed25519")
    if not client_key.exists():
        keygen(client_key)
    (directory / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = free_port(ip)
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress {ip}\nPort {port}\nHostKey {directory}/host_ed25519\n"
        f"AuthorizedKeysFile {directory}/authorized_keys\nPidFile {directory}/sshd.pid\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nSubsystem sftp internal-sftp\n"
        "LogLevel ERROR\n" + extra
    )
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    wait_listening(ip, port, process)
    return SshHost(ip, port, directory, client_key, process)


def wait_listening(ip: str, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"sshd for {ip}:{port} exited with {process.returncode}") from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"sshd on {ip}:{port} did not start")
