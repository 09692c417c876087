"""K3S planning rules stated whole: each node's config.yaml, the installer steps, what a re-run changes.

The node config and the steps are what reaches a node, so they are compared as
complete values: a missing option or an extra one is a different node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import LOOPBACK_CONFIG
from homelab.config import loader
from homelab.core.errors import HomelabError
from homelab.core.plan import Cordon, Note, Patch, RestorePdbs, Run, WriteFile
from homelab.core.secret_refs import Secret, SecretLocation
from homelab.k3s import plan as k3s

TOKEN = Secret("a" * 64, "test")
HEADER = "# Written by homelab (inv k3s.install) from config/homelab.yaml; edits are overwritten.\n"


@pytest.fixture
def cfg() -> Any:
    return loader.load(LOOPBACK_CONFIG, environ={}).config


def with_k3s(cfg: Any, **changes: Any) -> Any:
    return cfg.model_copy(update={"k3s": cfg.k3s.model_copy(update=changes)})


def test_sizes_convert_to_kib_and_other_units_are_refused() -> None:
    assert [k3s.size_kib(s) for s in ("512MiB", "2GiB", "1TiB")] == [512 * 1024, 2 * 1024**2, 1024**3]
    with pytest.raises(ValueError, match=r"^5GB$"):
        k3s.size_kib("5GB")


def test_the_api_endpoint_is_the_configured_one_else_the_servers_address(cfg: Any) -> None:
    assert k3s.api_endpoint(cfg) == "https://127.0.0.11:6443"
    assert k3s.api_endpoint(with_k3s(cfg, api_endpoint="https://lab.example:6443")) == "https://lab.example:6443"


def test_an_agents_config_names_itself_its_address_the_token_file_and_the_server(cfg: Any) -> None:
    agent = cfg.nodes[1].model_copy(update={"labels": {"zone": "b", "disk": "ssd"}, "taints": ["gpu=true:NoSchedule"]})
    text = k3s.node_config(cfg, agent)
    assert text.startswith(HEADER)
    assert yaml.safe_load(text) == {
        "node-name": "k3s-worker-1",
        "node-ip": "127.0.0.12",
        "token-file": k3s.TOKEN_PATH,
        "node-label": ["disk=ssd", "zone=b"],
        "node-taint": ["gpu=true:NoSchedule"],
        "server": "https://127.0.0.11:6443",
        "flannel-iface": "lima0",  # a Lima VM has a second NIC (user-mode networking): flannel is told which
    }
    keys = [line.split(":")[0] for line in text.splitlines()[1:] if not line.startswith(("-", " "))]
    assert keys == sorted(keys), "keys are sorted, so the digest of the same options never changes"


def test_the_servers_config_holds_its_options_and_the_extra_ones(cfg: Any) -> None:
    server = k3s.node_config(with_k3s(cfg, extra_server_config={"cluster-cidr": "10.42.0.0/16"}), cfg.server)
    assert yaml.safe_load(server) == {
        "node-name": "k3s-server",
        "node-ip": "127.0.0.11",
        "token-file": k3s.TOKEN_PATH,
        "write-kubeconfig-mode": "0600",
        "flannel-backend": "vxlan",
        "tls-san": ["127.0.0.11", "k3s-server"],
        "disable": ["traefik", "servicelb"],
        "cluster-cidr": "10.42.0.0/16",
        "flannel-iface": "lima0",
    }
    ssh_node = cfg.server.model_copy(update={"provider": "ssh"})  # your own machine: its interface is yours to name
    assert "flannel-iface" not in yaml.safe_load(k3s.node_config(cfg, ssh_node))
    bare = cfg.model_copy(
        update={
            "ingress": cfg.ingress.model_copy(update={"enabled": False}),
            "metallb": cfg.metallb.model_copy(update={"enabled": False}),
        }
    )
    assert yaml.safe_load(k3s.node_config(bare, cfg.server))["disable"] == []


def test_the_probe_is_one_read_only_command_and_its_output_parses(cfg: Any) -> None:
    run = k3s.probe(cfg.nodes[2])
    assert (run.argv, run.host, run.sudo) == (("sh", "-c", k3s.PROBE), "k3s-worker-2", True)
    seen = k3s.parse_probe("version=v1.33.5+k3s1\nconfig=abc123\ntoken=\nnoise\n")
    assert seen == k3s.Observed("v1.33.5+k3s1", "abc123", None) and seen.installed
    bare = k3s.parse_probe("version=\nconfig=\ntoken=x=y\n")
    assert bare == k3s.Observed(None, None, "x=y") and not bare.installed


def test_the_installer_is_downloaded_or_uploaded_and_run_with_the_version_pinned(cfg: Any, tmp_path: Path) -> None:
    node = cfg.nodes[1]
    [download] = k3s.installer_files(cfg, node)
    assert download == Run(
        ("curl", "-sSfL", "-o", k3s.INSTALLER_PATH, "https://get.k3s.io"),
        host="k3s-worker-1",
        sudo=True,
        why="download the k3s installer",
        hint=k3s.NO_INSTALLER_HINT,
    )
    assert "k3s.installer_file" in download.hint
    script = tmp_path / "install.sh"
    script.write_text("#!/bin/sh\necho installer\n")
    [upload] = k3s.installer_files(with_k3s(cfg, installer_file=str(script)), node)
    assert isinstance(upload, WriteFile)
    assert (upload.path, upload.data(), upload.mode, upload.host, upload.sudo) == (
        k3s.INSTALLER_PATH,
        b"#!/bin/sh\necho installer\n",
        0o700,
        "k3s-worker-1",
        True,
    )
    run = k3s.installer_run(cfg, node, "v1.34.1+k3s1")
    assert (run.argv, run.host, run.sudo) == (
        ("env", "INSTALL_K3S_VERSION=v1.34.1+k3s1", "INSTALL_K3S_EXEC=agent", "sh", k3s.INSTALLER_PATH),
        "k3s-worker-1",
        True,
    )


def test_air_gapped_nodes_get_the_binary_and_images_and_skip_the_download(cfg: Any, tmp_path: Path) -> None:
    binary, images = tmp_path / "k3s", tmp_path / "images.tar"
    binary.write_bytes(b"ELF")
    images.write_bytes(b"TAR")
    airgap = with_k3s(cfg, install_method="airgap", airgap_binary=str(binary), airgap_images=str(images))
    steps = k3s.installer_files(airgap, cfg.server)
    assert [(s.path, s.data(), s.mode, s.host, s.sudo) for s in steps if isinstance(s, WriteFile)] == [
        (k3s.AIRGAP_BINARY, b"ELF", 0o755, "k3s-server", True),
        (k3s.AIRGAP_IMAGES, b"TAR", 0o755, "k3s-server", True),
    ]
    assert k3s.installer_run(airgap, cfg.server, "v1").argv == (
        "env",
        "INSTALL_K3S_VERSION=v1",
        "INSTALL_K3S_EXEC=server",
        "INSTALL_K3S_SKIP_DOWNLOAD=true",
        "sh",
        k3s.INSTALLER_PATH,
    )
    with pytest.raises(
        HomelabError, match=r"^k3s\.install_method airgap needs k3s\.airgap_binary and k3s\.airgap_images$"
    ):
        k3s.installer_files(with_k3s(cfg, install_method="airgap", airgap_binary=str(binary)), cfg.server)


def observed(cfg: Any, version: str | None, config: bool = True, token: bool = True) -> dict[str, k3s.Observed]:
    return {
        n.name: k3s.Observed(
            version,
            k3s.digest(k3s.node_config(cfg, n)) if config else "old",
            k3s.digest(TOKEN.reveal() + "\n") if token else None,
        )
        for n in cfg.nodes
    }


def test_a_fresh_node_gets_token_config_installer_and_run_in_that_order(cfg: Any) -> None:
    plans = k3s.plan_nodes(cfg, observed(cfg, None, config=False, token=False), TOKEN)
    assert not plans.reconfigure and not plans.upgrade and not plans.notes and not plans.empty
    worker = plans.install["k3s-worker-1"]
    assert worker.title == f"install k3s {cfg.k3s.version} on k3s-worker-1 (agent)"
    token, config, download, run = worker.actions
    assert isinstance(token, WriteFile) and isinstance(token.content, Secret)
    assert token.content.source == TOKEN.source
    assert (token.path, token.data(), token.mode, token.host, token.sudo) == (
        k3s.TOKEN_PATH,
        (TOKEN.reveal() + "\n").encode(),
        0o600,
        "k3s-worker-1",
        True,
    )
    assert isinstance(config, WriteFile)
    assert (config.path, config.content, config.mode, config.host, config.sudo) == (
        k3s.CONFIG_PATH,
        k3s.node_config(cfg, cfg.nodes[1]),
        0o600,
        "k3s-worker-1",
        True,
    )
    assert download == k3s.installer_files(cfg, cfg.nodes[1])[0]
    assert run == k3s.installer_run(cfg, cfg.nodes[1], cfg.k3s.version)


def test_an_installed_node_whose_files_match_needs_nothing_and_says_so(cfg: Any) -> None:
    plans = k3s.plan_nodes(cfg, observed(cfg, cfg.k3s.version), TOKEN)
    assert plans.empty and not plans.install and not plans.reconfigure and not plans.upgrade
    assert plans.notes == [
        f"{n.name}: k3s {cfg.k3s.version} with the configured options; nothing to do" for n in cfg.nodes
    ]
    done = k3s.done_notes(plans)
    assert done.title == "k3s" and done.actions == [Note(text) for text in plans.notes]


def test_changed_files_rewrite_only_what_differs_then_restart_the_right_service(cfg: Any) -> None:
    plans = k3s.plan_nodes(cfg, observed(cfg, cfg.k3s.version, token=False), TOKEN)
    assert set(plans.reconfigure) == {"k3s-server", "k3s-worker-1", "k3s-worker-2"} and not plans.notes
    server = plans.reconfigure["k3s-server"]
    assert server.title == "reconfigure k3s on k3s-server"
    [token, restart] = server.actions
    assert isinstance(token, WriteFile) and token.path == k3s.TOKEN_PATH
    assert restart == Run(("systemctl", "restart", "k3s"), host="k3s-server", sudo=True, why="apply new options")
    [config, agent_restart] = (
        k3s.plan_nodes(cfg, observed(cfg, cfg.k3s.version, config=False), TOKEN).reconfigure["k3s-worker-2"].actions
    )
    assert isinstance(config, WriteFile) and config.path == k3s.CONFIG_PATH
    assert isinstance(agent_restart, Run) and agent_restart.argv == ("systemctl", "restart", "k3s-agent")


def test_another_version_is_an_upgrade_and_not_a_note(cfg: Any) -> None:
    plans = k3s.plan_nodes(cfg, observed(cfg, "v1.30.0+k3s1"), TOKEN)
    assert plans.upgrade == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]
    assert not plans.install and not plans.reconfigure and not plans.notes and not plans.empty
    lines = k3s.pending(cfg, plans, observed(cfg, "v1.30.0+k3s1"))
    assert lines[0] == f"k3s-server: runs k3s v1.30.0+k3s1, the config wants {cfg.k3s.version}"
    changed = k3s.plan_nodes(cfg, observed(cfg, cfg.k3s.version, config=False), TOKEN)
    assert k3s.pending(cfg, changed, {}) == [
        f"{n.name}: its options or token differ from the config" for n in cfg.nodes
    ]


def test_a_new_token_is_generated_once_and_an_env_token_is_only_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = SecretLocation(file=str(tmp_path / "token"))
    token, [write] = k3s.cluster_token(location)
    assert isinstance(write, WriteFile) and isinstance(write.content, Secret)
    assert (write.path, write.mode, write.host, write.sudo) == (str(tmp_path / "token"), 0o600, "local", False)
    assert token.source == write.content.source == location.describe()
    assert len(token.reveal()) == 64 and int(token.reveal(), 16) >= 0
    assert token != k3s.cluster_token(location)[0], "each new cluster gets its own random token"
    monkeypatch.setenv("HOMELAB_TEST_K3S_TOKEN", "from-the-environment")
    env = SecretLocation(env="HOMELAB_TEST_K3S_TOKEN")
    assert k3s.cluster_token(env) == (Secret("from-the-environment", env.describe()), [])


def test_marking_and_releasing_a_node_are_patches_of_one_annotation() -> None:
    mark = k3s.mark("k3s-worker-1", "v1.34.1+k3s1")
    assert (mark.api_version, mark.kind, mark.name, mark.namespace) == ("v1", "Node", "k3s-worker-1", None)
    assert mark.body == {"metadata": {"annotations": {k3s.UPGRADING_ANNOTATION: "v1.34.1+k3s1"}}}
    assert "mark as being upgraded to v1.34.1+k3s1" in mark.display()
    uncordon, unmark = k3s.release("k3s-worker-1")
    assert uncordon == Cordon("k3s-worker-1", uncordon=True)
    assert isinstance(unmark, Patch)
    assert (unmark.api_version, unmark.kind, unmark.name, unmark.namespace) == ("v1", "Node", "k3s-worker-1", None)
    assert unmark.body == {"metadata": {"annotations": {k3s.UPGRADING_ANNOTATION: None}}}
    assert unmark.display() == "[cluster] patch Node k3s-worker-1: no longer being upgraded"
    assert mark.display() == (
        "[cluster] patch Node k3s-worker-1: mark as being upgraded to v1.34.1+k3s1 "
        "(a re-run puts it back if this run stops)"
    )


def test_recovery_names_what_was_left_and_puts_every_marked_node_back() -> None:
    plan = k3s.recovery_plan(["a", "b"], ["apps/vault", "apps/home"])
    note, *rest = plan.actions
    assert plan.title == "put back what an interrupted k3s upgrade left"
    assert note == Note(
        "an earlier upgrade stopped half-way: a, b still marked as being upgraded; "
        "PodDisruptionBudgets apps/vault, apps/home still lifted"
    )
    assert [a.display() for a in rest] == [a.display() for a in [*k3s.release("a"), *k3s.release("b"), RestorePdbs()]]
    only_pdbs = k3s.recovery_plan([], ["apps/vault"])
    assert only_pdbs.actions == [
        Note("an earlier upgrade stopped half-way: PodDisruptionBudgets apps/vault still lifted"),
        RestorePdbs(),
    ]
    only_nodes = k3s.recovery_plan(["a"], [])
    assert only_nodes.actions[0] == Note("an earlier upgrade stopped half-way: a still marked as being upgraded")
    assert isinstance(only_nodes.actions[-1], RestorePdbs)


def test_an_upgrade_names_its_node_and_version_in_every_step(cfg: Any) -> None:
    plan = k3s.upgrade_plan(cfg, cfg.nodes[2], "v1.34.1+k3s1", lambda: None)
    assert plan.title == "upgrade k3s-worker-2 to k3s v1.34.1+k3s1"
    mark = plan.actions[0]
    assert isinstance(mark, Patch) and mark.name == "k3s-worker-2"
    [wait] = [a for a in plan.actions if type(a).__name__ == "Wait"]
    assert (
        wait.display()
        == f"[cluster] wait for k3s-worker-2 to be Ready on v1.34.1+k3s1 (up to {cfg.k3s.ready_timeout}s)"
    )
