"""k3s.* over SSH against three real sshd test nodes and the sandbox API server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from k3s_nodes import NODES, Lab

from helpers import FAKES, CliResult, run_cli
from homelab.core.kube import Kube
from homelab.core.kube.nodes import LIFTED_ANNOTATION, SINGLE_REPLICA_LABEL
from homelab.k3s.plan import UPGRADING_ANNOTATION
from sshd import free_port

pytestmark = pytest.mark.integration


def pinned_app_with_pdb(
    kube: Kube, namespace: str, name: str, node: str, pdb_name: str | None = None, pdb_labels: dict | None = None
) -> None:
    """A one-replica Deployment pinned to ``node`` and a PDB that forbids evicting it."""
    app = {"app": name}
    pod = {
        "nodeSelector": {"kubernetes.io/hostname": node},
        "containers": [{"name": name, "image": "vaultwarden/server:1.34.3"}],
    }
    kube.apply(
        [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": app},
                    "template": {"metadata": {"labels": app}, "spec": pod},
                },
            },
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": pdb_name or name, "namespace": namespace, "labels": pdb_labels or {}},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": app}},
            },
        ]
    )


class ProcessWatcher:
    """Samples every local process's argv while a command runs."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            self.seen.update(out.splitlines())
            time.sleep(0.05)

    def __enter__(self) -> ProcessWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_install_configures_each_node_joins_agents_in_parallel_and_hides_the_token(lab: Lab) -> None:
    for node in lab.nodes.values():
        (node.root / "lib" / "fake-install-seconds").write_text("2")
    with ProcessWatcher() as watcher:
        result = lab.cli("k3s.install")
    assert result.code == 0, result.output

    token = lab.token()
    assert len(token) == 64
    assert (lab.tmp / "k3s-token").stat().st_mode & 0o777 == 0o600
    assert token not in result.output
    assert not [line for line in watcher.seen if token in line]

    server = yaml.safe_load(lab.nodes["k3s-server"].path("/etc/rancher/k3s/config.yaml").read_text())
    assert server == {
        "node-name": "k3s-server",
        "node-ip": "127.0.0.11",
        "token-file": "/etc/rancher/k3s/token",
        "write-kubeconfig-mode": "0600",
        "flannel-backend": "vxlan",
        "tls-san": ["127.0.0.11", "k3s-server"],
        "disable": ["traefik", "servicelb"],
    }
    for name, ip in NODES[1:]:
        agent = yaml.safe_load(lab.nodes[name].path("/etc/rancher/k3s/config.yaml").read_text())
        assert agent == {
            "node-name": name,
            "node-ip": ip,
            "token-file": "/etc/rancher/k3s/token",
            "server": "https://127.0.0.11:6443",
        }
    for node in lab.nodes.values():
        token_file = node.path("/etc/rancher/k3s/token")
        assert token_file.read_text().strip() == token
        assert token_file.stat().st_mode & 0o777 == 0o600
        [record] = node.installer_log()
        assert record["version"] == "v1.33.5+k3s1" and record["node"] == node.name
        assert "K3S_TOKEN" not in record["env"]

    server_log = lab.nodes["k3s-server"].installer_log()[0]
    w1, w2 = lab.nodes["k3s-worker-1"].installer_log()[0], lab.nodes["k3s-worker-2"].installer_log()[0]
    assert server_log["exec"] == "server" and w1["exec"] == w2["exec"] == "agent"
    assert server_log["end"] <= min(w1["start"], w2["start"]), "agents joined before the server was installed"
    assert w1["start"] < w2["end"] and w2["start"] < w1["end"], "agents were installed one after the other"
    one_agent = max(w1["end"] - w1["start"], w2["end"] - w2["start"])
    both_agents = max(w1["end"], w2["end"]) - min(w1["start"], w2["start"])
    assert both_agents < 1.5 * one_agent, f"two agents took {both_agents:.1f}s, one takes {one_agent:.1f}s"

    again = lab.cli("k3s.install")
    assert again.code == 0 and "k3s: nothing to do" in again.stdout, again.output
    assert [len(n.installer_log()) for n in lab.nodes.values()] == [1, 1, 1]


def test_changed_option_rewrites_config_and_restarts_only_that_node(lab: Lab) -> None:
    assert lab.cli("k3s.install").code == 0
    lab.data["nodes"][1]["labels"] = {"storage": "fast"}
    lab.save()
    result = lab.cli("k3s.install")
    assert result.code == 0, result.output
    agent = yaml.safe_load(lab.nodes["k3s-worker-1"].path("/etc/rancher/k3s/config.yaml").read_text())
    assert agent["node-label"] == ["storage=fast"]
    restarts = {
        n.name: (n.root / "lib" / "systemctl.log").read_text() if (n.root / "lib" / "systemctl.log").exists() else ""
        for n in lab.nodes.values()
    }
    assert restarts == {"k3s-server": "", "k3s-worker-1": "restart k3s-agent\n", "k3s-worker-2": ""}


def test_version_change_upgrades_server_first_then_workers_one_by_one(lab: Lab) -> None:
    assert lab.cli("k3s.install").code == 0
    lab.data["k3s"]["version"] = "v1.34.1+k3s1"
    lab.save()
    result = lab.cli("k3s.upgrade")
    assert result.code == 0, result.output
    upgrades = sorted((n.installer_log()[-1] for n in lab.nodes.values()), key=lambda r: r["start"])
    assert [r["node"] for r in upgrades] == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]
    assert all(r["version"] == "v1.34.1+k3s1" for r in upgrades)
    assert upgrades[0]["end"] <= upgrades[1]["start"] and upgrades[1]["end"] <= upgrades[2]["start"]
    status = lab.cli("k3s.status")
    assert status.code == 0 and status.stdout.count("v1.34.1+k3s1") == 3, status.output
    assert "nothing to do" in lab.cli("k3s.upgrade").stdout


def test_upgrade_blocked_by_a_pdb_names_it_and_touches_nothing(lab: Lab, kube: Kube, namespace: str) -> None:
    assert lab.cli("k3s.install").code == 0
    pinned_app_with_pdb(kube, namespace, "vault", "k3s-server", pdb_name="vault-pdb")
    kube.wait_deployments([(namespace, "vault")], timeout=60)
    kube.wait_for(
        "PDB",
        lambda: (
            None
            if (kube.get("policy/v1", "PodDisruptionBudget", "vault-pdb", namespace) or {})
            .get("status", {})
            .get("currentHealthy")
            == 1
            else "pending"
        ),
        timeout=60,
    )
    lab.data["k3s"]["version"] = "v1.34.1+k3s1"
    lab.save()
    result = lab.cli("k3s.upgrade")
    assert result.code == 1
    assert f"PodDisruptionBudget {namespace}/vault-pdb" in result.stderr
    assert "re-run" in result.stderr
    assert [len(n.installer_log()) for n in lab.nodes.values()] == [1, 1, 1]
    assert not (kube.get("v1", "Node", "k3s-server") or {}).get("spec", {}).get("unschedulable")


def test_merged_kubeconfig_keeps_other_contexts_and_is_private(lab: Lab) -> None:
    assert lab.cli("k3s.install").code == 0
    target = lab.tmp / "kubeconfig"
    other = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "work",
        "clusters": [{"name": "work", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "work", "user": {"token": "x"}}],
        "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work"}}],
    }
    target.write_text(yaml.safe_dump(other))
    result = lab.cli("k3s.kubeconfig", "--path", str(target))
    assert result.code == 0, result.output
    merged = yaml.safe_load(target.read_text())
    assert sorted(c["name"] for c in merged["contexts"]) == ["itest", "work"]
    assert merged["current-context"] == "work"
    homelab = next(c for c in merged["clusters"] if c["name"] == "itest")
    assert homelab["cluster"]["server"] == lab.data["k3s"]["api_endpoint"]
    assert target.stat().st_mode & 0o777 == 0o600
    assert Kube(target, "itest").ready()


@pytest.mark.parametrize(
    "fault", ["unreachable", "changed_host_key", "sudo_password", "no_memory_cgroup", "no_sqlite3_nor_apt"]
)
def test_preflight_failure_is_clear_and_no_node_is_touched(lab: Lab, fault: str) -> None:
    expected = {
        "unreachable": "k3s-worker-2: cannot reach",
        "changed_host_key": "k3s-worker-1: host key for",
        "sudo_password": "k3s-worker-2: sudo needs a password",
        "no_memory_cgroup": "k3s-worker-1: the memory cgroup controller is off",
        "no_sqlite3_nor_apt": "k3s-server: sqlite3 is missing and there is no apt-get to install it",
    }[fault]
    if fault == "unreachable":
        lab.nodes["k3s-worker-2"].stop()
    elif fault == "changed_host_key":
        lab.pin_wrong_key(1)
    elif fault == "sudo_password":
        subprocess.run(["useradd", "--create-home", "hlnosudo"], capture_output=True)
        subprocess.run(["usermod", "-p", "*", "hlnosudo"], check=True)  # no password, but not locked for sshd
        ssh_dir = Path("/home/hlnosudo/.ssh")
        ssh_dir.mkdir(exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(Path(f"{lab.key}.pub").read_text())
        subprocess.run(["chown", "-R", "hlnosudo:", str(ssh_dir)], check=True)
        lab.data["nodes"][2]["ssh_user"] = "hlnosudo"
        lab.save()
    elif fault == "no_memory_cgroup":
        lab.restart_node("k3s-worker-1", hide_memory_cgroup=True)
    else:
        lab.restart_node("k3s-server", hide_sqlite3=True, apt_get=False)
    known_before = (lab.tmp / "state" / "known_hosts").read_bytes()
    result = lab.cli("k3s.install")
    assert result.code == 1, result.output
    assert "preflight failed; no node was changed" in result.stderr or "host key" in result.stderr
    assert expected in result.stderr, result.stderr
    assert not lab.touched()
    assert (lab.tmp / "state" / "known_hosts").read_bytes() == known_before


def test_a_node_without_sqlite3_gets_it_from_apt_before_k3s_and_only_once(lab: Lab) -> None:
    """Ubuntu's cloud images (Lima's on the Mac) lack sqlite3; the backups run it on the nodes."""
    server = lab.restart_node("k3s-server", hide_sqlite3=True)
    apt_log = server.root / "lib" / "apt-get.log"
    preflight = lab.cli("k3s.preflight")
    assert preflight.code == 0, preflight.output
    assert "k3s-server: ok (" in preflight.stdout and "sqlite3 missing: k3s.install installs it" in preflight.stdout
    assert "k3s-worker-1: ok (" in preflight.stdout and preflight.stdout.count("sqlite3 missing") == 1

    dry = lab.cli("k3s.install", "--dry-run")
    assert dry.code == 0, dry.output
    assert "[k3s-server] run: sudo -n -- sh -c 'apt-get update -qq && " in dry.stdout, dry.stdout
    assert dry.stdout.count("apt-get install -y -qq sqlite3") == 1
    assert not apt_log.exists() and not lab.touched()

    result = lab.cli("k3s.install")  # the stand-in installer itself runs sqlite3 on the server: tools come first
    assert result.code == 0, result.output
    assert apt_log.read_text().splitlines() == ["update -qq", "install -y -qq sqlite3"]
    assert lab.cli("k3s.snapshot").code == 0
    again = lab.cli("k3s.install")
    assert again.code == 0 and "k3s: nothing to do" in again.stdout, again.output
    assert len(apt_log.read_text().splitlines()) == 2


def test_snapshot_saves_a_consistent_sqlite_copy_and_the_token(lab: Lab) -> None:
    assert lab.cli("k3s.install").code == 0
    result = lab.cli("k3s.snapshot")
    assert result.code == 0, result.output
    [snapshot] = (lab.tmp / "state" / "snapshots").iterdir()
    assert f"VACUUM INTO '\"'\"'/var/tmp/homelab-snapshot-{snapshot.name}'" in result.stdout, "one stamp names both"
    assert f"-> {snapshot / 'datastore'} (mode 0600)" in result.stdout
    db = snapshot / "datastore"
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert sqlite3.connect(db).execute("SELECT name FROM kine").fetchall() == [("/registry/ns/default",)]
    assert (snapshot / "token").read_text().strip() == lab.token()
    assert {p.stat().st_mode & 0o777 for p in snapshot.iterdir()} == {0o600}
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert set(manifest["files"]) == {"datastore", "token"}


def test_up_dry_run_for_lima_plans_vms_and_k3s_without_secrets(lab: Lab) -> None:
    token = "0123456789abcdef" * 4
    (lab.tmp / "k3s-token").write_text(token + "\n")
    (lab.tmp / "k3s-token").chmod(0o600)
    for entry in lab.data["nodes"]:
        entry["provider"] = "lima"
    # The backup layer refuses secrets a scheduled run could not read (a missing file, an env: reference).
    for name, value in (("restic-password", "correct horse battery staple"), ("bot-token", "123456789:" + "Ab" * 17)):
        (lab.tmp / name).write_text(value + "\n")
        (lab.tmp / name).chmod(0o600)
    lab.data["backup"]["password"] = {"file": str(lab.tmp / "restic-password")}
    lab.data["monitoring"]["telegram"]["bot_token"] = {"file": str(lab.tmp / "bot-token")}
    lab.save()
    env = {
        "HOMELAB_CONFIG": str(lab.config),
        "PATH": f"{FAKES}:{os.environ['PATH']}",
        "FAKE_LIMA_STATE": str(lab.tmp / "lima"),
        "FAKE_RECORD": str(lab.tmp / "record.jsonl"),
        "FAKE_CRONTAB": str(lab.tmp / "crontab"),
        "HOMELAB_SCHEDULER": "cron",
    }
    result = run_cli(["up", "--target", "lima", "--dry-run"], env)
    assert result.code == 0, result.output
    out = result.stdout
    assert out.index("[1/4] vm") < out.index("[2/4] k3s") < out.index("[3/4] gitops") < out.index("[4/4] backup")
    assert "install the cron entry for backup.run" in out
    assert "bootstrap ArgoCD v" in out
    assert "k3s-server.yaml" in out and "apply -input=false" in out
    assert "write /etc/rancher/k3s/token (secret, mode 0600" in out
    assert "INSTALL_K3S_VERSION=v1.33.5+k3s1" in out
    assert token not in result.output
    assert not lab.touched()
    record = lab.tmp / "record.jsonl"
    calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    looking = (["-l"], ["list", "--json"])  # crontab -l; limactl list (can limactl run at all?)
    assert [c for c in calls if c["argv"] not in looking] == [], "the dry run called a fake tool to change something"
    assert not (lab.tmp / "crontab").exists()


def test_allow_downtime_lifts_a_single_replica_pdb_for_the_drain_and_restores_it(
    lab: Lab, kube: Kube, namespace: str
) -> None:
    assert lab.cli("k3s.install").code == 0
    pinned_app_with_pdb(kube, namespace, "solo", "k3s-worker-1", pdb_labels={"homelab.dev/single-replica-pdb": "true"})
    kube.wait_deployments([(namespace, "solo")], timeout=60)
    lab.data["k3s"]["version"] = "v1.34.1+k3s1"
    lab.save()
    blocked = lab.cli("k3s.upgrade")
    assert blocked.code == 1 and f"{namespace}/solo" in blocked.stderr and "--allow-downtime" in blocked.stderr
    result = lab.cli("k3s.upgrade", "--allow-downtime")
    assert result.code == 0, result.output
    assert all(n.installer_log()[-1]["version"] == "v1.34.1+k3s1" for n in lab.nodes.values())
    assert kube.get("policy/v1", "PodDisruptionBudget", "solo", namespace)["spec"]["minAvailable"] == 1


def test_airgap_install_uploads_the_supplied_binary_and_images(lab: Lab) -> None:
    binary, images = lab.tmp / "k3s-binary", lab.tmp / "images.tar"
    binary.write_bytes(b"\x7fELF" + bytes(range(256)) * 64)
    images.write_bytes(bytes(reversed(range(256))) * 128)
    lab.data["k3s"].update({"install_method": "airgap", "airgap_binary": str(binary), "airgap_images": str(images)})
    lab.save()
    result = lab.cli("k3s.install")
    assert result.code == 0, result.output
    for node in lab.nodes.values():
        [record] = node.installer_log()
        assert "INSTALL_K3S_SKIP_DOWNLOAD=true" in record["env"]
        uploaded = node.path("/var/lib/rancher/k3s/agent/images/k3s-airgap-images.tar")
        assert uploaded.read_bytes() == images.read_bytes()


def test_an_installer_that_does_not_download_stops_preflight_saying_why_and_what_to_set(lab: Lab) -> None:
    """A node that cannot download get.k3s.io (no route, no DNS): preflight stops, with curl's reason."""
    del lab.data["k3s"]["installer_file"]
    closed = free_port("127.0.0.1")  # nothing listens there
    lab.data["k3s"]["installer_url"] = f"http://127.0.0.1:{closed}/install.sh"
    lab.save()
    result = lab.cli("k3s.install")
    assert result.code == 1, result.output
    assert "preflight failed; no node was changed" in result.stderr, result.stderr
    for node in lab.nodes:  # every node tries, and each says so: each may have its own way out
        assert f"{node}: cannot download the k3s installer from http://127.0.0.1:{closed}/install.sh (curl: (7)" in (
            result.stderr
        )
    assert "without the internet set k3s.installer_file" in result.stderr, result.stderr
    assert not lab.touched()
    doctor = run_cli(["doctor"], {"HOMELAB_CONFIG": str(lab.config)})
    assert "node k3s-worker-1 installer" in doctor.stdout and "fix: The node must reach" in doctor.stdout


def test_uninstall_asks_then_removes_agents_before_the_server(lab: Lab) -> None:
    assert lab.cli("k3s.install").code == 0
    refused = lab.cli("k3s.uninstall")
    assert refused.code == 2 and "--yes" in refused.stderr
    assert all(n.path("/etc/rancher/k3s/config.yaml").exists() for n in lab.nodes.values())
    removed = lab.cli("k3s.uninstall", "--yes")
    assert removed.code == 0, removed.output
    assert not any(n.path("/etc/rancher/k3s/config.yaml").exists() for n in lab.nodes.values())
    out = removed.stdout
    assert out.index("uninstall k3s agents") < out.index("uninstall k3s server")


NEW_VERSION = "v1.34.1+k3s1"


def node_state(kube: Kube, name: str) -> tuple[bool, str | None]:
    """Whether the node is cordoned, and the upgrade mark on it."""
    node = kube.get("v1", "Node", name) or {}
    annotations = node.get("metadata", {}).get("annotations") or {}
    return bool(node.get("spec", {}).get("unschedulable")), annotations.get(UPGRADING_ANNOTATION)


def pdb_state(kube: Kube, namespace: str, name: str) -> tuple[object, str | None]:
    """A PDB's minAvailable and the value a lift kept on it."""
    pdb = kube.get("policy/v1", "PodDisruptionBudget", name, namespace) or {}
    return pdb["spec"].get("minAvailable"), (pdb["metadata"].get("annotations") or {}).get(LIFTED_ANNOTATION)


def files_of(root: Path) -> dict[str, str]:
    """Every file under ``root`` (or ``root`` itself) with its mode and content digest."""
    if not root.exists():
        return {}
    if root.is_file():
        return {root.name: f"{root.stat().st_mode & 0o7777:o}:{hashlib.sha256(root.read_bytes()).hexdigest()}"}
    return {
        str(p.relative_to(root)): f"{p.stat().st_mode & 0o7777:o}:{hashlib.sha256(p.read_bytes()).hexdigest()}"
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "sshd.pid"
    }


def picture(lab: Lab, kube: Kube) -> dict[str, object]:
    """What a k3s task could change: node files (installer log included), state dir, token, nodes in the cluster."""
    return {
        "nodes": {name: files_of(node.root) for name, node in lab.nodes.items()},
        "state": files_of(lab.tmp / "state"),
        "token": files_of(lab.tmp / "k3s-token"),
        "cluster": {name: node_state(kube, name) for name in lab.nodes},
        "staged": sorted(str(p) for p in Path("/var/tmp").glob("homelab-snapshot-*")),
    }


def solo_app_on_worker_1(lab: Lab, kube: Kube, namespace: str) -> None:
    """K3S installed, and a single-replica app on k3s-worker-1 guarded by a liftable PDB (minAvailable 1)."""
    assert lab.cli("k3s.install").code == 0
    pinned_app_with_pdb(kube, namespace, "solo", "k3s-worker-1", pdb_labels={SINGLE_REPLICA_LABEL: "true"})
    kube.wait_deployments([(namespace, "solo")], timeout=180)


def upgrade_with_a_fault_on_worker_1(lab: Lab, kube: Kube, namespace: str, marker: str, text: str) -> CliResult:
    """Upgrade with --allow-downtime while ``marker`` makes the fake installer misbehave on k3s-worker-1."""
    solo_app_on_worker_1(lab, kube, namespace)
    (lab.nodes["k3s-worker-1"].root / "lib" / marker).write_text(text)
    lab.data["k3s"].update({"version": NEW_VERSION, "ready_timeout": 5})
    lab.save()
    return lab.cli("k3s.upgrade", "--allow-downtime")


def assert_worker_1_put_back_and_worker_2_untouched(
    result: CliResult, kube: Kube, lab: Lab, namespace: str, worker_1_installs: int
) -> None:
    """The server upgraded; k3s-worker-1 schedulable, unmarked, its PDB back at 1; k3s-worker-2 never touched."""
    assert result.code == 1, result.output
    assert "lift single-replica PodDisruptionBudgets of pods on k3s-worker-1" in result.stdout
    assert node_state(kube, "k3s-worker-1") == (False, None), "cordoned or still marked"
    assert pdb_state(kube, namespace, "solo") == (1, None), "the PDB is still lifted"
    assert [len(n.installer_log()) for n in lab.nodes.values()] == [2, worker_1_installs, 1]
    assert lab.nodes["k3s-server"].installer_log()[-1]["version"] == NEW_VERSION
    assert node_state(kube, "k3s-server") == node_state(kube, "k3s-worker-2") == (False, None)
    assert f"upgrade of k3s-worker-1 to k3s {NEW_VERSION} failed" in result.stderr
    restored = f"Restored: k3s-worker-1 uncordoned; PodDisruptionBudgets back at their old minAvailable: {namespace}/"
    assert f"{restored}solo" in result.stderr
    assert "Nodes after k3s-worker-1 were not touched: k3s-worker-2" in result.stderr


def test_failed_installer_puts_the_node_back_and_stops_before_the_next(lab: Lab, kube: Kube, namespace: str) -> None:
    result = upgrade_with_a_fault_on_worker_1(lab, kube, namespace, "fake-install-fail", "broken on purpose")
    assert "fake installer: broken on purpose" in result.stderr, result.output
    assert_worker_1_put_back_and_worker_2_untouched(result, kube, lab, namespace, worker_1_installs=1)


def test_node_not_ready_on_the_new_version_is_put_back_after_the_ready_timeout(
    lab: Lab, kube: Kube, namespace: str
) -> None:
    result = upgrade_with_a_fault_on_worker_1(lab, kube, namespace, "fake-k3s-version", "v1.33.5+k3s1")
    assert f"timed out after 5s waiting for k3s-worker-1 to be Ready on {NEW_VERSION}" in result.stderr, result.output
    assert lab.nodes["k3s-worker-1"].installer_log()[-1]["version"] == NEW_VERSION, "the installer did run"
    assert_worker_1_put_back_and_worker_2_untouched(result, kube, lab, namespace, worker_1_installs=2)


def test_a_rerun_after_a_crash_mid_upgrade_puts_back_the_node_and_the_lifted_pdb(
    lab: Lab, kube: Kube, namespace: str
) -> None:
    solo_app_on_worker_1(lab, kube, namespace)
    # What a run killed between the lift and the restore leaves: the node marked and cordoned, the PDB lifted.
    kube.merge_patch(
        "v1", "Node", "k3s-worker-1", None, {"metadata": {"annotations": {UPGRADING_ANNOTATION: NEW_VERSION}}}
    )
    kube.cordon("k3s-worker-1")
    lifted = {"metadata": {"annotations": {LIFTED_ANNOTATION: "1"}}, "spec": {"minAvailable": 0}}
    kube.merge_patch("policy/v1", "PodDisruptionBudget", "solo", namespace, lifted)

    dry = lab.cli("k3s.upgrade", "--dry-run")
    assert dry.code == 0, dry.output
    assert "restore lifted PodDisruptionBudgets" in dry.stdout and "uncordon node k3s-worker-1" in dry.stdout
    assert f"PodDisruptionBudgets {namespace}/solo still lifted" in dry.stdout
    assert pdb_state(kube, namespace, "solo") == (0, "1") and node_state(kube, "k3s-worker-1") == (True, NEW_VERSION)

    result = lab.cli("k3s.upgrade")
    assert result.code == 0, result.output
    assert pdb_state(kube, namespace, "solo") == (1, None)
    assert node_state(kube, "k3s-worker-1") == (False, None)
    assert [len(n.installer_log()) for n in lab.nodes.values()] == [1, 1, 1]
    again = lab.cli("k3s.upgrade")
    assert again.code == 0 and "nothing to do" in again.stdout and "restore" not in again.stdout, again.output


def test_install_that_does_not_converge_exits_1_naming_what_is_pending(lab: Lab) -> None:
    (lab.nodes["k3s-worker-2"].root / "lib" / "fake-k3s-version").write_text("v1.32.0+k3s1")
    result = lab.cli("k3s.install")
    assert result.code == 1, result.output
    assert "k3s did not converge" in result.stderr
    assert "k3s-worker-2: runs k3s v1.32.0+k3s1, the config wants v1.33.5+k3s1" in result.stderr
    assert "k3s-server" not in result.stderr.split("still pending:")[1]
    assert "converged" not in result.stdout


def test_install_dry_run_plans_every_node_and_changes_nothing(lab: Lab, kube: Kube) -> None:
    before = picture(lab, kube)
    result = lab.cli("k3s.install", "--dry-run")
    assert result.code == 0, result.output
    assert picture(lab, kube) == before
    out = result.stdout
    assert f"[local] write {lab.tmp / 'k3s-token'} (secret, mode 0600" in out
    for name in lab.nodes:
        assert f"[{name}] write /etc/rancher/k3s/token (secret, mode 0600" in out
        assert f"[{name}] write /etc/rancher/k3s/config.yaml" in out
    assert "INSTALL_K3S_EXEC=server" in out and out.count("INSTALL_K3S_EXEC=agent") == 2
    assert "planned once K3S runs on k3s-server" in out
    assert "converged" not in out and "nothing to do" not in out


def test_upgrade_dry_run_plans_each_node_in_order_and_changes_nothing(lab: Lab, kube: Kube, namespace: str) -> None:
    solo_app_on_worker_1(lab, kube, namespace)
    lab.data["k3s"]["version"] = NEW_VERSION
    lab.save()
    before = picture(lab, kube)
    result = lab.cli("k3s.upgrade", "--dry-run", "--allow-downtime")
    assert result.code == 0, result.output
    assert picture(lab, kube) == before
    assert pdb_state(kube, namespace, "solo") == (1, None)
    out = result.stdout
    titles = [out.index(f"plan: upgrade {name} to k3s {NEW_VERSION}") for name in lab.nodes]
    assert titles == sorted(titles), "server first, then the workers in config order"
    worker_1 = out[titles[1] : titles[2]]
    steps = [
        "cordon node k3s-worker-1",
        "lift single-replica PodDisruptionBudgets of pods on k3s-worker-1",
        "drain node k3s-worker-1",
        f"INSTALL_K3S_VERSION={NEW_VERSION}",
        f"wait for k3s-worker-1 to be Ready on {NEW_VERSION}",
        "uncordon node k3s-worker-1",
        "restore lifted PodDisruptionBudgets",
    ]
    positions = [worker_1.index(step) for step in steps]
    assert positions == sorted(positions), worker_1


def test_kubeconfig_dry_run_writes_nothing_and_a_current_file_is_left_alone(lab: Lab) -> None:
    assert lab.cli("k3s.install").code == 0
    target = lab.tmp / "other-kubeconfig"
    target.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "contexts": [], "clusters": []}))
    target.chmod(0o600)
    before = target.read_bytes()
    dry = lab.cli("k3s.kubeconfig", "--path", str(target), "--dry-run")
    assert dry.code == 0, dry.output
    assert f"[local] write {target} (secret, mode 0600" in dry.stdout
    assert target.read_bytes() == before
    absent = lab.tmp / "absent-kubeconfig"
    assert lab.cli("k3s.kubeconfig", "--path", str(absent), "--dry-run").code == 0
    assert not absent.exists()

    assert lab.cli("k3s.kubeconfig", "--path", str(target)).code == 0
    written = target.read_bytes()
    assert written != before and target.stat().st_mode & 0o777 == 0o600
    again = lab.cli("k3s.kubeconfig", "--path", str(target))
    assert again.code == 0 and "nothing to do" in again.stdout and "is current" in again.stdout, again.output
    assert target.read_bytes() == written


def test_snapshot_dry_run_names_what_a_real_run_takes_and_changes_nothing(lab: Lab, kube: Kube) -> None:
    assert lab.cli("k3s.install").code == 0
    before = picture(lab, kube)
    result = lab.cli("k3s.snapshot", "--dry-run")
    assert result.code == 0, result.output
    assert picture(lab, kube) == before
    staged = re.findall(r"/var/tmp/homelab-snapshot-(\w+)", result.stdout)
    local = re.findall(r"snapshots/(\w+)/datastore", result.stdout)
    assert staged and local and set(staged) == set(local), result.stdout
    assert f"{lab.tmp / 'state' / 'snapshots' / local[0] / 'token'} (secret, mode 0600" in result.stdout
    assert "saved in" not in result.stdout


def test_uninstall_dry_run_plans_every_node_and_removes_nothing(lab: Lab, kube: Kube) -> None:
    assert lab.cli("k3s.install").code == 0
    before = picture(lab, kube)
    result = lab.cli("k3s.uninstall", "--dry-run")
    assert result.code == 0, result.output
    assert picture(lab, kube) == before
    lines = result.stdout.splitlines()
    for name, script in [("k3s-worker-1", "k3s-agent"), ("k3s-worker-2", "k3s-agent"), ("k3s-server", "k3s")]:
        assert any(f"[{name}] run: " in line and f"/usr/local/bin/{script}-uninstall.sh" in line for line in lines)


def test_a_lost_token_file_on_a_running_cluster_stops_naming_where_the_token_is(lab: Lab) -> None:
    """A new token would lock K3S out of its data: with nodes running K3S, a missing token file is never regenerated."""
    installed = lab.cli("k3s.install")
    assert installed.code == 0, installed.output
    token_file = lab.tmp / "k3s-token"
    token = lab.token()
    configs = {n.name: n.path("/etc/rancher/k3s/config.yaml").read_text() for n in lab.nodes.values()}
    logs = {n.name: n.installer_log() for n in lab.nodes.values()}
    token_file.unlink()
    try:
        for args in (["k3s.install"], ["k3s.install", "--dry-run"]):
            refused = lab.cli(*args)
            assert refused.code == 1, refused.output
            assert f"k3s.token: {token_file} does not exist, but k3s-server" in refused.stderr, refused.stderr
            assert "Nothing was changed" in refused.stderr
            assert "sudo cat /var/lib/rancher/k3s/server/token" in refused.stderr
            assert not token_file.exists(), "no new token was written"
        assert {n.name: n.path("/etc/rancher/k3s/config.yaml").read_text() for n in lab.nodes.values()} == configs
        assert {n.name: n.installer_log() for n in lab.nodes.values()} == logs
    finally:
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
