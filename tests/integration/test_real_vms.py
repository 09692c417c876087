"""The vm and k3s layers on a real Lima VM: QEMU (TCG here), the built Debian image, Lima's user-v2 network.

One small VM (1 vCPU, 1 GiB) lives for the whole module; the tests run in file order,
each building on the last: a create whose ``limactl start`` is killed and finished by the
next apply, SSH with the host key pinned through Lima, K3S's files and unit over real SSH
(the installer is a stand-in: the K3S binary cannot be downloaded here), the datastore
and a volume backed up from the VM and the volume restored onto it, a stop and a memory
change made in place while stopped (started again by the apply), destroy. Two boots in
all: under TCG each takes about three minutes.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from backup_support import local_path_claim
from k3s_nodes import embedded_kubeconfig
from real_vms import VmHost, free_port, vm_host

from helpers import FAKES, REPO, CliResult, inv_binary, loopback_data, run_cli
from homelab.core.kube import Kube
from homelab.core.session import Session
from homelab.core.tools import require
from homelab.host import boot

pytestmark = pytest.mark.integration

NAME = "vmt-server"
IP = "192.168.104.210"
MARKER = "/var/lib/homelab-marker"


class VmLab:
    """The module's VM host, its config and the CLI run next to the VM."""

    k3s_yaml = ""  # what the stand-in installer leaves as the server's k3s.yaml

    def __init__(self, host: VmHost) -> None:
        self.host = host
        self.tmp = host.base
        key = self.tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        data = loopback_data()
        data.update(
            {
                "name": "vmt",
                "target": "lima",
                "state_dir": str(self.tmp / "state"),
                "host": {"kind": "linux", "ip": "192.168.104.2"},
                "network": {
                    "subnet": "192.168.104.0/24",
                    "gateway": "192.168.104.2",
                    "dns": ["192.168.104.2"],
                    "dhcp_end": None,
                    "lan": "127.0.1.0/24",  # the host's home LAN, for home-assistant's lan egress
                },
                "lan_dns": {"enabled": False},  # user-v2's VMs are out of the LAN's reach
                "ssh": {"user": "homelab", "private_key": str(key), "public_key": f"{key}.pub"},
                "lima": {"vm_type": "qemu", "arch": "x86_64", "network": "user-v2", "guest_image": str(host.image)},
                "nodes": [
                    {"name": NAME, "role": "server", "ip": IP, "cpus": 1, "memory": "1GiB", "disk": "4GiB"}
                    | {"ssh_port": free_port(), "reserved_memory": "256MiB"}  # its K3S is a stand-in
                ],
                # No catalog and no monitoring: a 1 GiB node leaves pods too little for them (homelab.apps.sizing);
                # the backup test names its own app.
                "apps": {},
                "monitoring": {"enabled": False},
                "metallb": {"pool": {"start": "192.168.104.150", "end": "192.168.104.160"}},
                "ingress": {"load_balancer_ip": "192.168.104.150"},
                "k3s": {
                    "installer_file": str(FAKES / "k3s-install-systemd.sh"),
                    "token": {"file": str(self.tmp / "k3s-token")},
                    "min_free_disk": "1GiB",
                },
                "backup": {
                    "repository": str(self.tmp / "repo"),
                    "password": {"file": str(self.tmp / "restic-pw")},
                },
            }
        )
        (self.tmp / "restic-pw").write_text("correct horse battery staple\n")
        (self.tmp / "restic-pw").chmod(0o600)
        self.data = data
        self.save()

    @property
    def config(self) -> Path:
        return self.tmp / "homelab.yaml"

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    def save(self) -> None:
        self.config.write_text(yaml.safe_dump(self.data))

    def env(self) -> dict[str, str]:
        return {
            "HOMELAB_CONFIG": str(self.config),
            "PATH": f"{self.host.wrapper_dir}:{os.environ['PATH']}",
            "LIMA_HOME": str(self.host.lima_home),  # what the wrapper's limactl uses, for the toolkit to look at
        }

    def cli(self, *args: str, timeout: float = 900) -> CliResult:
        return run_cli(list(args), self.env(), timeout=timeout, netns=self.host.netns)

    def shell(self, command: str) -> subprocess.CompletedProcess[str]:
        """A command in the guest through Lima's own SSH (not the toolkit's)."""
        return self.host.limactl("shell", NAME, "sudo", "sh", "-c", command, timeout=120)

    def instance(self) -> dict[str, Any]:
        listed = self.host.limactl("list", "--json", timeout=60)
        rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
        return next((r for r in rows if r["name"] == NAME), {})


@pytest.fixture(scope="module")
def lab(sandbox_session: Session) -> Iterator[VmLab]:
    """The VM host; its namespace's 127.0.0.1:6443 (the user-v2 API endpoint) leads to the sandbox API server."""
    k3s_yaml, server = embedded_kubeconfig(sandbox_session)
    for host in vm_host():
        host.bridge(6443, int(urlsplit(server).port or 443))
        lab = VmLab(host)
        lab.k3s_yaml = yaml.safe_dump(k3s_yaml)
        yield lab


def kill_apply_once_the_vm_runs(lab: VmLab) -> None:
    """Start vm.apply and kill it (inv, terraform, limactl start) once QEMU runs, mid-boot."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMELAB")} | lab.env()
    argv = lab.host.enter([inv_binary(), "vm.apply"])
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if lab.instance().get("status") == "Running":
            break
        time.sleep(2)
    assert process.poll() is None, "vm.apply ended before the VM ran: nothing was interrupted"
    time.sleep(5)  # well inside the boot: the guest is not reachable over SSH yet
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_a_killed_create_is_finished_by_the_next_apply_which_pins_the_key_read_through_lima(lab: VmLab) -> None:
    kill_apply_once_the_vm_runs(lab)
    assert not (lab.state / "inventory.json").exists(), "the killed apply got as far as the inventory"

    result = lab.cli("vm.apply")
    assert result.code == 0, result.output
    assert "QEMU acceleration: " in result.stdout, result.stdout
    assert lab.instance()["status"] == "Running"
    assert lab.instance()["memory"] == 1 << 30

    real_key = lab.shell("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
    port = lab.data["nodes"][0]["ssh_port"]
    [pinned] = (lab.state / "known_hosts").read_text().splitlines()
    assert pinned.split() == [f"[127.0.0.1]:{port}", *real_key]
    inventory = json.loads((lab.state / "inventory.json").read_text())
    assert inventory["nodes"][NAME]["ip"] == IP and inventory["nodes"][NAME]["ssh_host"] == "127.0.0.1"

    again = lab.cli("vm.apply")
    assert again.code == 0, again.output
    assert "nothing to do" in again.stdout, again.stdout


def test_the_node_has_its_address_and_ssh_rejects_a_changed_host_key(lab: VmLab) -> None:
    addresses = lab.shell("ip -4 -o addr show eth0").stdout
    assert f"{IP}/24" in addresses, addresses

    ok = lab.cli("k3s.preflight")
    assert ok.code == 0, ok.output

    known = lab.state / "known_hosts"
    genuine = known.read_text()
    other = lab.tmp / "other_host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    host_field = genuine.split()[0]
    known.write_text(" ".join([host_field, *Path(f"{other}.pub").read_text().split()[:2]]) + "\n")
    try:
        refused = lab.cli("k3s.preflight")
        assert refused.code != 0
        assert "host key" in refused.stderr.lower(), refused.output
    finally:
        known.write_text(genuine)


def test_k3s_install_over_real_ssh_writes_config_token_and_a_running_unit(lab: VmLab) -> None:
    staged = lab.host.limactl(
        "shell",
        NAME,
        "sudo",
        "sh",
        "-c",
        "mkdir -p /var/lib/rancher && cat > /var/lib/rancher/standin-k3s.yaml",
        input_text=lab.k3s_yaml,
    )
    assert staged.returncode == 0, staged.stderr
    result = lab.cli("k3s.install")
    assert result.code == 0, result.output
    config = yaml.safe_load(lab.shell("cat /etc/rancher/k3s/config.yaml").stdout)
    assert config["node-ip"] == IP and config["flannel-iface"] == "eth0"
    mode = lab.shell(f"stat -c '%a %U' {config['token-file']}").stdout.split()
    assert mode == ["600", "root"]
    assert lab.shell(f"cat {config['token-file']}").stdout.strip() == (lab.tmp / "k3s-token").read_text().strip()
    assert lab.shell("systemctl is-active k3s").stdout.strip() == "active"
    [record] = [json.loads(line) for line in lab.shell("cat /var/lib/rancher/installer-log.jsonl").stdout.splitlines()]
    assert record["exec"] == "server" and record["user"] == "root"
    token = (lab.tmp / "k3s-token").read_text().strip()
    assert token not in result.output

    again = lab.cli("k3s.install")
    assert again.code == 0, again.output
    assert len(lab.shell("cat /var/lib/rancher/installer-log.jsonl").stdout.splitlines()) == 1


def restic_bytes(lab: VmLab, *args: str) -> bytes:
    restic_binary = require("restic")  # the built one (the cache's bin dir), as the toolkit finds it
    argv = [restic_binary, "-r", str(lab.tmp / "repo"), "--password-file", str(lab.tmp / "restic-pw"), *args]
    done = subprocess.run(argv, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def restic(lab: VmLab, *args: str) -> str:
    return restic_bytes(lab, *args).decode()


def test_the_backup_reads_the_datastore_and_a_volume_from_the_vm_and_restores_the_volume(
    lab: VmLab, kube: Kube
) -> None:
    name = f"notes-{os.getpid()}"
    inside = local_path_claim(kube, name, NAME)
    written = lab.shell(
        f"mkdir -p {inside} && echo 'remember the milk' > {inside}/notes.txt && chmod 0640 {inside}/notes.txt"
    )
    assert written.returncode == 0, written.stderr
    lab.data["apps"] = {
        name: {"image": "registry.home.arpa/notes:1", "port": 8080, "hostname": name, "storage": "1GiB"}
    }
    lab.data["backup"]["components"] = ["datastore", "volumes"]
    lab.save()
    try:
        result = lab.cli("backup.run")
        assert result.code == 0, result.output
        assert "components ok: datastore, volumes" in result.stdout, result.stdout
        files = restic(lab, "ls", "latest").splitlines()
        assert any(line.endswith(f"/volumes/{name}/files.tar") for line in files), files
        [datastore] = [line for line in files if line.endswith("/datastore/datastore")]
        copy = lab.tmp / "datastore.db"
        copy.write_bytes(restic_bytes(lab, "dump", "latest", datastore))
        assert sqlite3.connect(copy).execute("SELECT name FROM kine").fetchall() == [("/registry/ns/default",)]

        changed = lab.shell(f"echo 'written after the backup' > {inside}/notes.txt && touch {inside}/after.txt")
        assert changed.returncode == 0, changed.stderr
        restored = lab.cli("backup.restore", "--component", "volumes", "--yes")
        assert restored.code == 0, restored.output
        assert lab.shell(f"cat {inside}/notes.txt").stdout == "remember the milk\n"
        assert lab.shell(f"stat -c %a {inside}/notes.txt").stdout.strip() == "640"
        assert lab.shell(f"test -e {inside}/after.txt").returncode != 0
    finally:
        lab.data.pop("apps")
        lab.data["backup"].pop("components")
        lab.save()
        kube.delete("v1", "Namespace", name)
        kube.delete("v1", "PersistentVolume", f"pv-{name}")


def test_stop_then_a_memory_change_edits_the_vm_in_place_starts_it_and_keeps_its_disk(lab: VmLab) -> None:
    """One boot for both: vm.stop, then vm.apply resizes the stopped VM (limactl edit) and starts it."""
    assert lab.shell(f"echo kept > {MARKER}").returncode == 0
    stopped = lab.cli("vm.stop")
    assert stopped.code == 0, stopped.output
    assert lab.instance()["status"] == "Stopped"
    again = lab.cli("vm.stop")
    assert again.code == 0 and "already stopped" in again.stdout, again.output

    lab.data["nodes"][0]["memory"] = "1536MiB"
    lab.save()
    result = lab.cli("vm.apply")
    assert result.code == 0, result.output
    assert "resized in place" in result.stdout, result.stdout
    assert lab.instance()["status"] == "Running" and lab.instance()["memory"] == 1536 << 20
    assert lab.shell(f"cat {MARKER}").stdout.strip() == "kept"  # the same disk: edited, not re-created
    total_kib = int(lab.shell("awk '/MemTotal/ {print $2}' /proc/meminfo").stdout)
    assert 1200 * 1024 < total_kib <= 1536 * 1024
    running = lab.cli("vm.start")
    assert running.code == 0 and "already running" in running.stdout, running.output
    assert lab.cli("k3s.preflight").code == 0  # the same host key after the restart


def test_the_boot_units_start_the_stopped_vm_again_and_it_answers_over_ssh_with_its_pinned_key(lab: VmLab) -> None:
    """A reboot as the units describe it: installed into the test's directory (never systemd's), the VM
    stopped as a power cut leaves it, then each VM unit's ExecStart in start order, as systemd runs them."""
    root = lab.tmp / "systemd"
    installed = lab.cli("host.autostart", f"--root={root}")
    assert installed.code == 0, installed.output
    assert "nothing enabled or loaded" in installed.stdout
    order = [boot.vm_unit_name(NAME), boot.AFTER_BOOT_UNIT]
    assert sorted(p.name for p in root.iterdir()) == sorted(order)
    assert "After=network-online.target\n" in (root / order[0]).read_text()  # the server waits for no VM
    assert boot.vm_unit_name(NAME) in (root / order[1]).read_text().split("After=", 1)[1].splitlines()[0]

    stopped = lab.cli("vm.stop")
    assert stopped.code == 0 and lab.instance()["status"] == "Stopped", stopped.output
    unit = (root / order[0]).read_text()
    env = os.environ | lab.env() | boot.unit_environment(unit)  # as systemd gives it (TCG's QEMU among it)
    for line in boot.exec_starts(unit):
        started = subprocess.run(
            lab.host.enter(shlex.split(line)), capture_output=True, text=True, timeout=900, env=env
        )
        assert started.returncode == 0, started.stderr[-3000:]
    assert lab.instance()["status"] == "Running"
    assert lab.cli("k3s.preflight").code == 0  # SSH answers with the host key pinned before the "reboot"
    post = boot.exec_starts((root / order[1]).read_text())
    assert post == [f"{Path(inv_binary()).parent / 'homelab'} host.after-boot"]


def test_destroy_deletes_the_vm_and_forgets_its_host_key(lab: VmLab) -> None:
    result = lab.cli("vm.destroy", "--yes")
    assert result.code == 0, result.output
    assert lab.instance() == {}
    assert (lab.state / "known_hosts").read_text().strip() == ""
