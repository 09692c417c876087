"""k3s.* over SSH against three real sshd test nodes and the sandbox API server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from k3s_nodes import NODES, Lab, start_node

from helpers import FAKES, run_cli
from homelab.core.kube import Kube

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


@pytest.mark.parametrize("fault", ["unreachable", "changed_host_key", "sudo_password", "no_memory_cgroup"])
def test_preflight_failure_is_clear_and_no_node_is_touched(lab: Lab, fault: str) -> None:
    expected = {
        "unreachable": "k3s-worker-2: cannot reach",
        "changed_host_key": "k3s-worker-1: host key for",
        "sudo_password": "k3s-worker-2: sudo needs a password",
        "no_memory_cgroup": "k3s-worker-1: the memory cgroup controller is off",
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
    else:
        node = lab.nodes["k3s-worker-1"]
        node.stop()
        lab.nodes["k3s-worker-1"] = start_node(
            "k3s-worker-1", "127.0.0.12", lab.tmp / "w1b", lab.key, hide_memory_cgroup=True
        )
        new = lab.nodes["k3s-worker-1"]
        lab.data["nodes"][1]["ssh_port"] = new.port
        lab.save()
        pub = (new.root / "host_ed25519.pub").read_text().split()
        with (lab.tmp / "state" / "known_hosts").open("a") as known:
            known.write(f"[{new.ip}]:{new.port} {pub[0]} {pub[1]}\n")
    known_before = (lab.tmp / "state" / "known_hosts").read_bytes()
    result = lab.cli("k3s.install")
    assert result.code == 1, result.output
    assert "preflight failed; no node was changed" in result.stderr or "host key" in result.stderr
    assert expected in result.stderr, result.stderr
    assert not lab.touched()
    assert (lab.tmp / "state" / "known_hosts").read_bytes() == known_before


def test_snapshot_saves_a_consistent_sqlite_copy_and_the_token(lab: Lab) -> None:
    assert lab.cli("k3s.install").code == 0
    result = lab.cli("k3s.snapshot")
    assert result.code == 0, result.output
    [snapshot] = (lab.tmp / "state" / "snapshots").iterdir()
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
    lab.save()
    env = {
        "HOMELAB_CONFIG": str(lab.config),
        "PATH": f"{FAKES}:{os.environ['PATH']}",
        "FAKE_LIMA_STATE": str(lab.tmp / "lima"),
        "FAKE_RECORD": str(lab.tmp / "record.jsonl"),
    }
    result = run_cli(["up", "--target", "lima", "--dry-run"], env)
    assert result.code == 0, result.output
    out = result.stdout
    assert out.index("[1/4] vm") < out.index("[2/4] k3s") < out.index("[3/4] gitops") < out.index("[4/4] backup")
    assert "install crontab entry" in out
    assert "install ArgoCD v3.1.8" in out
    assert "k3s-server.yaml" in out and "apply -input=false" in out
    assert "write /etc/rancher/k3s/token (secret, mode 0600" in out
    assert "INSTALL_K3S_VERSION=v1.33.5+k3s1" in out
    assert token not in result.output
    assert not lab.touched()
    assert not (lab.tmp / "record.jsonl").exists()


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
