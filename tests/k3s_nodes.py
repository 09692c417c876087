"""K3S test nodes: sshd on 127.0.0.x, each in its own UTS and mount namespace.

Each node has its own hostname and its own /etc/rancher, /var/lib/rancher and
/usr/local/bin (bind mounts visible only to that node's sshd and its children),
so three "machines" on one host do not see each other's files.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from helpers import FAKES, CliResult, loopback_data, run_cli
from homelab.core.session import Session
from homelab.sandbox import cluster as sandbox
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


def start_node(
    name: str,
    ip: str,
    root: Path,
    client_key: Path,
    hide_memory_cgroup: bool = False,
    hide_sqlite3: bool = False,
    apt_get: bool = True,
) -> TestNode:
    """Start a node; ``hide_sqlite3`` makes it lack sqlite3 as Ubuntu's cloud images do, with a
    recording apt-get (``tests/fakes/apt-get``) that can install it, or none when ``apt_get`` is off."""
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
    if hide_sqlite3:  # a file that is not executable: `command -v` no longer finds the host's binary
        missing = root / "missing-command"
        missing.write_text("")
        missing.chmod(0o644)
        shutil.copy2(_host_command("sqlite3"), root / "lib" / "sqlite3.real")
        apt = FAKES / "apt-get" if apt_get else missing
        mounts += f" && mount --bind {missing} {_host_command('sqlite3')}"
        mounts += f" && mount --bind {apt} {_host_command('apt-get')}"
    script = f"hostname {name} && {mounts} && exec {SSHD} -D -e -f {root / 'sshd_config'}"
    process = subprocess.Popen(
        ["unshare", "--mount", "--uts", "--propagation", "private", "--", "sh", "-c", script],
        stderr=subprocess.DEVNULL,
    )
    wait_listening(ip, port, process)
    return TestNode(name, ip, port, root, process)


def _host_command(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is missing on this machine: scripts/setup.sh installs it")
    return found


LAB_K3S_VERSION = "v1.33.5+k3s1"
NODES = [("k3s-server", "127.0.0.11"), ("k3s-worker-1", "127.0.0.12"), ("k3s-worker-2", "127.0.0.13")]


def embedded_kubeconfig(session: Session) -> tuple[dict[str, Any], str]:
    """The sandbox's kubeconfig with certificates inlined, as k3s writes k3s.yaml."""
    paths = sandbox.paths_for(session.cfg, session.state_dir)
    source = yaml.safe_load(paths.kubeconfig.read_text())
    cluster, user = source["clusters"][0]["cluster"], source["users"][0]["user"]

    def data(path: str) -> str:
        return base64.b64encode(Path(path).read_bytes()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "default",
        "clusters": [
            {
                "name": "default",
                "cluster": {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority-data": data(cluster["certificate-authority"]),
                },
            }
        ],
        "users": [
            {
                "name": "default",
                "user": {
                    "client-certificate-data": data(user["client-certificate"]),
                    "client-key-data": data(user["client-key"]),
                },
            }
        ],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
    }
    return doc, cluster["server"]


class Lab:
    """Three test nodes, a config pointing at them, and helpers to run the CLI."""

    def __init__(self, tmp: Path, sandbox_session: Session, nodes: list[TestNode], key: Path) -> None:
        self.tmp, self.nodes, self.key = tmp, {n.name: n for n in nodes}, key
        _, server_url = embedded_kubeconfig(sandbox_session)
        data = loopback_data()
        data["target"] = "lima"
        data["state_dir"] = str(tmp / "state")
        data["ssh"] = {"user": "root", "private_key": str(key), "public_key": f"{key}.pub"}
        for entry, node in zip(data["nodes"], nodes, strict=True):
            entry.update({"provider": "ssh", "ssh_port": node.port})
        data["k3s"] = {
            # Pinned, not versions.toml's default (which Renovate moves on): the tests install this
            # release and upgrade one minor up from it; a lower default would make that a downgrade.
            "version": LAB_K3S_VERSION,
            "installer_file": str(FAKES / "k3s-install.sh"),
            "token": {"file": str(tmp / "k3s-token")},
            "api_endpoint": server_url,
            "drain_timeout": 8,
            "min_free_disk": "1GiB",
        }
        self.data = data
        self.save()
        known = "".join(
            f"[{n.ip}]:{n.port} {(n.root / 'host_ed25519.pub').read_text().split()[0]} "
            f"{(n.root / 'host_ed25519.pub').read_text().split()[1]}\n"
            for n in nodes
        )
        (tmp / "state").mkdir()
        (tmp / "state" / "known_hosts").write_text(known)
        (tmp / "state" / "known_hosts").chmod(0o600)

    @property
    def config(self) -> Path:
        return self.tmp / "homelab.yaml"

    def save(self) -> None:
        self.config.write_text(yaml.safe_dump(self.data))

    def cli(self, *args: str) -> CliResult:
        return run_cli(list(args), {"HOMELAB_CONFIG": str(self.config)})

    def token(self) -> str:
        return (self.tmp / "k3s-token").read_text().strip()

    def touched(self) -> bool:
        return any(n.installer_log() or n.path("/etc/rancher/k3s/config.yaml").exists() for n in self.nodes.values())

    def restart_node(self, name: str, **options: bool) -> TestNode:
        """Replace node ``name`` by a fresh one started with ``options`` (see start_node), its key pinned."""
        index = [entry["name"] for entry in self.data["nodes"]].index(name)
        old = self.nodes[name]
        old.stop()
        new = start_node(name, old.ip, self.tmp / f"{name}-restarted", self.key, **options)
        (new.root / "lib" / "fake-k3s.yaml").write_text((old.root / "lib" / "fake-k3s.yaml").read_text())
        self.nodes[name] = new
        self.data["nodes"][index]["ssh_port"] = new.port
        self.save()
        pub = (new.root / "host_ed25519.pub").read_text().split()
        with (self.tmp / "state" / "known_hosts").open("a") as known:
            known.write(f"[{new.ip}]:{new.port} {pub[0]} {pub[1]}\n")
        return new

    def pin_wrong_key(self, index: int) -> Path:
        """Replace node ``index``'s pinned host key by another key; returns the known_hosts path."""
        other = self.tmp / f"other_host_{index}"
        keygen(other)
        known = self.tmp / "state" / "known_hosts"
        lines = known.read_text().splitlines()
        lines[index] = " ".join([lines[index].split()[0], *Path(f"{other}.pub").read_text().split()[:2]])
        known.write_text("\n".join(lines) + "\n")
        return known
