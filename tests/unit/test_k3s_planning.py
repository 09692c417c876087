"""K3S planning and preflight rules, without any node."""

from __future__ import annotations

import pytest
import yaml

from helpers import LOOPBACK_CONFIG
from homelab.config import loader
from homelab.core.plan import Run, WriteFile
from homelab.core.secret_refs import Secret
from homelab.k3s import plan as k3s
from homelab.k3s import preflight

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
    assert all(TOKEN.reveal() not in line for line in k3s.summarize(plans).lines())


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
