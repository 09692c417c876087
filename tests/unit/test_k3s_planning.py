"""K3S planning and preflight rules, without any node."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import LOOPBACK_CONFIG
from homelab.config import loader
from homelab.core.kubeconfig import merge_action, merged
from homelab.core.plan import Cordon, Download, Drain, LiftPdbs, Note, Patch, RestorePdbs, Run, Wait, WriteFile
from homelab.core.secret_refs import Secret, SecretLocation
from homelab.k3s import plan as k3s
from homelab.k3s import preflight, snapshot

TOKEN = Secret("t" * 64, "test")


@pytest.fixture
def cfg():
    return loader.load(LOOPBACK_CONFIG, environ={}).config


def observed_for(cfg, version=None, same=True):
    out = {}
    for node in cfg.nodes:
        config_sha = k3s.digest(k3s.node_config(cfg, node)) if same else "old"
        out[node.name] = k3s.Observed(version, config_sha, k3s.digest(TOKEN.reveal() + "\n") if same else None)
    return out


def test_server_config_disables_bundled_lb_and_ingress_and_sets_etcd_when_asked(cfg) -> None:
    server = yaml.safe_load(k3s.node_config(cfg, cfg.server))
    assert server["disable"] == ["traefik", "servicelb"] and "cluster-init" not in server
    etcd = cfg.model_copy(
        update={
            "k3s": cfg.k3s.model_copy(update={"datastore": "etcd"}),
            "metallb": cfg.metallb.model_copy(update={"enabled": False}),
        }
    )
    server = yaml.safe_load(k3s.node_config(etcd, etcd.server))
    assert server["cluster-init"] is True and server["disable"] == ["traefik"]


def test_fresh_nodes_get_token_config_installer_in_that_order(cfg) -> None:
    plans = k3s.plan_nodes(cfg, {n.name: k3s.Observed(None, None, None) for n in cfg.nodes}, TOKEN)
    assert list(plans.install) == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]
    actions = plans.install["k3s-server"].actions
    assert [a.path for a in actions if isinstance(a, WriteFile)][:2] == [k3s.TOKEN_PATH, k3s.CONFIG_PATH]
    assert isinstance(actions[-1], Run) and "INSTALL_K3S_EXEC=server" in actions[-1].argv
    assert all(TOKEN.reveal() not in line for plan in plans.install.values() for line in plan.lines())


def test_same_state_is_nothing_to_do(cfg) -> None:
    plans = k3s.plan_nodes(cfg, observed_for(cfg, cfg.k3s.version), TOKEN)
    assert plans.empty and len(plans.notes) == 3


def test_version_change_is_an_upgrade_and_option_change_a_restart(cfg) -> None:
    plans = k3s.plan_nodes(cfg, observed_for(cfg, "v1.30.0+k3s1"), TOKEN)
    assert plans.upgrade == ["k3s-server", "k3s-worker-1", "k3s-worker-2"] and not plans.reconfigure
    plans = k3s.plan_nodes(cfg, observed_for(cfg, cfg.k3s.version, same=False), TOKEN)
    restart = plans.reconfigure["k3s-worker-1"].actions[-1]
    assert restart.argv == ("systemctl", "restart", "k3s-agent") and restart.sudo


def fact(hostname: str, **changes) -> preflight.Facts:
    base = {
        "hostname": hostname,
        "sudo": "ok",
        "memory_cgroup": True,
        "listening": (),
        "disk_kib": 50 * 1024**2,
        "has_k3s": False,
        "has_sqlite3": True,
        "has_apt": True,
    }
    return preflight.Facts(**{**base, **changes})


def test_preflight_reports_every_problem_of_every_node(cfg) -> None:
    facts = {
        "k3s-server": fact("same", listening=("0.0.0.0:6443",)),
        "k3s-worker-1": fact("same", sudo="sudo: a password is required", disk_kib=1024),
        "k3s-worker-2": fact("w2", memory_cgroup=False),
    }
    lines = preflight.problems_for(cfg, facts)
    assert "k3s-server: port 6443 is already in use; stop what listens there" in lines
    assert any(line.startswith("k3s-worker-1: sudo needs a password") for line in lines)
    assert any(line.startswith("k3s-worker-1: only 1 MiB free") for line in lines)
    assert any(line.startswith("k3s-worker-2: the memory cgroup controller is off") for line in lines)
    assert "k3s-server, k3s-worker-1: the same hostname 'same'; K3S needs unique hostnames" in lines


def test_port_on_another_address_is_not_a_conflict(cfg) -> None:
    assert not preflight.port_taken(("127.0.0.99:6443",), cfg.server, 6443)
    assert preflight.port_taken(("[::]:10250",), cfg.server, 10250)


def never_ready() -> str | None:
    return "not yet"


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


def shown(actions) -> list[str]:
    """Actions as the plan prints them (Patch compares by identity, its body being a dict)."""
    return [a.display() for a in actions]


def test_a_node_upgrade_cordons_drains_installs_waits_and_ends_putting_the_node_back(cfg) -> None:
    plan = k3s.upgrade_plan(cfg, cfg.nodes[1], "v1.34.1+k3s1", never_ready)
    actions = plan.actions
    assert kinds(actions) == ["Patch", "Cordon", "Drain", "Run", "Run", "Wait", "Cordon", "Patch", "RestorePdbs"]
    mark, cordon, drain, installer, run, wait = actions[:6]
    assert isinstance(mark, Patch) and mark.body["metadata"]["annotations"] == {
        k3s.UPGRADING_ANNOTATION: "v1.34.1+k3s1"
    }
    assert cordon == Cordon("k3s-worker-1") and drain == Drain("k3s-worker-1", cfg.k3s.drain_timeout)
    assert (
        isinstance(installer, Run) and installer.argv[:2] == ("curl", "-sSfL") and k3s.INSTALLER_PATH in installer.argv
    )
    assert isinstance(run, Run) and "INSTALL_K3S_VERSION=v1.34.1+k3s1" in run.argv and run.host == "k3s-worker-1"
    assert isinstance(wait, Wait) and wait.check is never_ready and wait.timeout == cfg.k3s.ready_timeout
    assert shown(actions[-3:]) == shown(k3s.put_back("k3s-worker-1"))


def test_allow_downtime_lifts_pdbs_after_the_cordon_and_before_the_drain(cfg) -> None:
    actions = k3s.upgrade_plan(cfg, cfg.server, "v1.34.1+k3s1", never_ready, allow_downtime=True).actions
    assert kinds(actions)[:4] == ["Patch", "Cordon", "LiftPdbs", "Drain"] and actions[2] == LiftPdbs("k3s-server")
    assert isinstance(actions[-1], RestorePdbs)
    assert "LiftPdbs" not in kinds(k3s.upgrade_plan(cfg, cfg.server, "v1.34.1+k3s1", never_ready).actions)


def test_putting_a_node_back_uncordons_unmarks_and_restores_pdbs_last() -> None:
    uncordon, unmark, restore = k3s.put_back("k3s-worker-2")
    assert uncordon == Cordon("k3s-worker-2", uncordon=True)
    assert isinstance(unmark, Patch) and unmark.name == "k3s-worker-2" and unmark.kind == "Node"
    assert unmark.body == {"metadata": {"annotations": {k3s.UPGRADING_ANNOTATION: None}}}
    assert restore == RestorePdbs()


def test_recovery_puts_back_marked_nodes_and_lifted_pdbs_and_is_empty_when_nothing_was_left() -> None:
    assert k3s.recovery_plan([], []).empty
    only_pdbs = k3s.recovery_plan([], ["apps/vault"])
    assert kinds(only_pdbs.actions) == ["Note", "RestorePdbs"] and "apps/vault" in only_pdbs.actions[0].text
    both = k3s.recovery_plan(["k3s-worker-1"], ["apps/vault"])
    assert shown(both.actions[1:]) == shown(k3s.put_back("k3s-worker-1"))


def test_a_missing_token_is_a_planned_0600_write_and_an_existing_one_is_only_read(tmp_path: Path) -> None:
    location = SecretLocation(file=str(tmp_path / "token"))
    token, steps = k3s.cluster_token(location)
    [write] = steps
    assert isinstance(write, WriteFile) and write.path == str(tmp_path / "token") and write.mode == 0o600
    assert write.data().decode() == token.reveal() + "\n" and len(token.reveal()) == 64
    assert token.reveal() not in write.display()
    assert not (tmp_path / "token").exists()
    (tmp_path / "token").write_text("kept-token\n")
    (tmp_path / "token").chmod(0o600)
    assert k3s.cluster_token(location) == (Secret("kept-token", location.describe()), [])


def test_pending_names_each_node_that_still_differs(cfg) -> None:
    observed = observed_for(cfg, "v1.30.0+k3s1")
    observed["k3s-worker-2"] = k3s.Observed(None, None, None)
    lines = k3s.pending(cfg, k3s.plan_nodes(cfg, observed, TOKEN), observed)
    assert lines == [
        "k3s-worker-2: k3s is not installed",
        f"k3s-server: runs k3s v1.30.0+k3s1, the config wants {cfg.k3s.version}",
        f"k3s-worker-1: runs k3s v1.30.0+k3s1, the config wants {cfg.k3s.version}",
    ]
    assert k3s.pending(cfg, k3s.plan_nodes(cfg, observed_for(cfg, cfg.k3s.version), TOKEN), {}) == []


K3S_YAML = {
    "clusters": [
        {"name": "default", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="}}
    ],
    "users": [{"name": "default", "user": {"client-key-data": "S0VZ"}}],
}


def test_kubeconfig_merge_is_a_secret_0600_write_then_a_note_once_current(tmp_path: Path) -> None:
    target = tmp_path / "kubeconfig"
    other = {"current-context": "work", "clusters": [{"name": "work", "cluster": {"server": "https://w"}}]}
    target.write_text(yaml.safe_dump(other))
    write = merge_action(target, K3S_YAML, "lab", server="https://10.0.0.1:6443")
    assert isinstance(write, WriteFile) and write.mode == 0o600 and isinstance(write.content, Secret)
    assert "S0VZ" not in write.display()
    doc = yaml.safe_load(write.data())
    assert doc["current-context"] == "work" and [c["name"] for c in doc["clusters"]] == ["work", "lab"]
    assert doc["clusters"][1]["cluster"]["server"] == "https://10.0.0.1:6443"
    assert yaml.safe_load(target.read_text()) == other, "planning wrote the file"
    target.write_bytes(write.data())
    target.chmod(0o644)
    assert isinstance(merge_action(target, K3S_YAML, "lab", server="https://10.0.0.1:6443"), WriteFile)
    target.chmod(0o600)
    assert isinstance(merge_action(target, K3S_YAML, "lab", server="https://10.0.0.1:6443"), Note)
    assert merged(target.read_text(), K3S_YAML, "lab", server="https://10.0.0.1:6443") == target.read_text()


def test_a_snapshot_plan_names_its_staged_copy_and_local_directory_with_one_stamp(cfg, tmp_path: Path) -> None:
    target = tmp_path / "snapshots" / "20260101T000000Z"
    plan = snapshot.snapshot_plan(cfg, "20260101T000000Z", target, TOKEN)
    assert kinds(plan.actions) == ["Run", "Run", "Run", "Download", "Run", "WriteFile", "Note"]
    mkdir, vacuum, chown, download, remove, token = plan.actions[:6]
    staged = "/var/tmp/homelab-snapshot-20260101T000000Z"
    assert mkdir.argv == ("mkdir", "-p", "-m", "0700", str(target)) and mkdir.host == "local"
    assert vacuum.argv[-1] == f"VACUUM INTO '{staged}'" and chown.argv[-1] == staged
    assert isinstance(download, Download) and (download.remote, download.local) == (staged, str(target / "datastore"))
    assert remove.argv == ("rm", "-f", staged)
    assert isinstance(token, WriteFile) and token.path == str(target / "token") and token.mode == 0o600
    assert all(TOKEN.reveal() not in line for line in plan.lines())
