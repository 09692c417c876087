"""K3S test nodes: sshd on 127.0.0.x, each in its own UTS and mount namespace.

Each node has its own hostname and its own /etc/rancher, /var/lib/rancher and
/usr/local/bin (bind mounts visible only to that node's sshd and its children),
so three "machines" on one host do not see each other's files.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sshd import SSHD, free_port, keygen, wait_listening

NODE_DIRS = {"etc": "/etc/rancher", "lib": "/var/lib/rancher", "bin": "/usr/local/bin"}


@dataclass
class TestNode:
    __test__ = False  # a fixture type, not a test class

    name: str
    ip: str
    port: int
    root: Path
    process: subprocess.Popen[bytes]

    def path(self, inside: str) -> Path:
        """Where a path on the node lives on the host."""
        for key, mount in NODE_DIRS.items():
            if inside.startswith(mount + "/"):
                return self.root / key / inside[len(mount) + 1 :]
        raise ValueError(inside)

    def installer_log(self) -> list[dict]:
        log = self.root / "lib" / "installer-log.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_node(name: str, ip: str, root: Path, client_key: Path, hide_memory_cgroup: bool = False) -> TestNode:
    for key in NODE_DIRS:
        (root / key).mkdir(parents=True, exist_ok=True)
    for mount in NODE_DIRS.values():
        Path(mount).mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    keygen(root / "host_ed25519")
    (root / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = free_port(ip)
    (root / "sshd_config").write_text(
        f"ListenAddress {ip}\nPort {port}\nHostKey {root}/host_ed25519\n"
        f"AuthorizedKeysFile {root}/authorized_keys .ssh/authorized_keys\nPidFile {root}/sshd.pid\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    mounts = " && ".join(f"mount --bind {root / key} {mount}" for key, mount in NODE_DIRS.items())
    if hide_memory_cgroup:
        (root / "cgroups").write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\n")
        mounts += f" && mount --bind {root / 'cgroups'} /proc/cgroups"
    script = f"hostname {name} && {mounts} && exec {SSHD} -D -e -f {root / 'sshd_config'}"
    process = subprocess.Popen(
        ["unshare", "--mount", "--uts", "--propagation", "private", "--", "sh", "-c", script],
        stderr=subprocess.DEVNULL,
    )
    wait_listening(ip, port, process)
    return TestNode(name, ip, port, root, process)
