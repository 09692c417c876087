"""Preflight on given node output: what each fact means, every problem of every node reported at once.

The nodes are invoke ``MockContext`` objects answering the one read-only script,
so gathering, parsing and judging run exactly as against real nodes.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from invoke import MockContext, Result

from helpers import LOOPBACK_CONFIG
from homelab.config import loader
from homelab.core.errors import HomelabError, UnreachableHost
from homelab.core.executor import Executor
from homelab.core.plan import Run
from homelab.k3s import preflight

HEALTHY = (
    "hostname={name}\nsudo=ok\ncgroup_memory=yes\nlistening=127.0.0.53:53 0.0.0.0:22 \ndisk_kib=52428800\nk3s=no\n"
    "sqlite3=yes\napt=yes\n"
)


@pytest.fixture
def cfg() -> Any:
    return loader.load(LOOPBACK_CONFIG, environ={}).config


@dataclass
class Lab:
    cfg: Any
    executor: Executor


def lab(cfg: Any, outputs: dict[str, str | Exception]) -> Lab:
    script_line = Run(("sh", "-c", preflight.script_for(cfg))).shell_line()

    def connect(host: str) -> MockContext:
        answer = outputs[host]
        if isinstance(answer, Exception):
            raise answer
        return MockContext(run={script_line: Result(stdout=answer)})

    return Lab(cfg, Executor(MockContext(), connect=connect, dry_run=True, out=lambda _: None))


def test_the_script_output_parses_into_facts() -> None:
    facts = preflight.parse(
        "hostname= node-1 \nsudo=sudo: a password is required\ncgroup_memory=no\n"
        "listening=0.0.0.0:6443 [::]:10250 \ndisk_kib=1024\nk3s=yes\nnot a fact\nsqlite3=no\napt=yes\n"
    )
    assert facts == preflight.Facts(
        "node-1", "sudo: a password is required", False, ("0.0.0.0:6443", "[::]:10250"), 1024, True, False, True
    )
    assert preflight.parse("") == preflight.Facts("", "", False, (), 0, False, False, False)
    assert preflight.parse("sqlite3=yes\napt=no").has_sqlite3 is True
    assert preflight.parse("disk_kib=\nk3s=no\ncgroup_memory=yes").memory_cgroup is True


def test_a_port_is_taken_only_on_an_address_the_node_listens_on(cfg: Any) -> None:
    server = cfg.server
    assert preflight.port_taken(("0.0.0.0:6443",), server, 6443)
    assert preflight.port_taken(("*:6443",), server, 6443)
    assert preflight.port_taken(("[::]:6443",), server, 6443)
    assert preflight.port_taken((f"{server.ip}:6443",), server, 6443)
    assert not preflight.port_taken(("127.0.0.99:6443",), server, 6443)
    assert not preflight.port_taken(("0.0.0.0:16443", "0.0.0.0:644"), server, 6443)
    assert not preflight.port_taken((), server, 6443)


def test_healthy_nodes_pass_and_their_facts_are_returned(cfg: Any) -> None:
    outputs: dict[str, str | Exception] = {n.name: HEALTHY.format(name=n.name) for n in cfg.nodes}
    facts = preflight.check(lab(cfg, outputs))
    assert sorted(facts) == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]
    assert facts["k3s-worker-2"].hostname == "k3s-worker-2" and facts["k3s-worker-2"].disk_kib == 52428800


def test_every_problem_of_every_node_is_reported_in_one_error(cfg: Any) -> None:
    outputs: dict[str, str | Exception] = {
        "k3s-server": HEALTHY.format(name="twin").replace("0.0.0.0:22", "0.0.0.0:22 0.0.0.0:6443 [::]:10250"),
        "k3s-worker-1": HEALTHY.format(name="twin")
        .replace("sudo=ok", "sudo=sudo: a password is required")
        .replace("cgroup_memory=yes", "cgroup_memory=no")
        .replace("disk_kib=52428800", "disk_kib=2048"),
        "k3s-worker-2": UnreachableHost("connection refused"),
    }
    with pytest.raises(HomelabError) as caught:
        preflight.check(lab(cfg, outputs))
    lines = str(caught.value).splitlines()
    assert lines[0] == "preflight failed; no node was changed:"
    assert [line.strip() for line in lines[1:]] == [
        "k3s-server: port 6443 is already in use; stop what listens there",
        "k3s-server: port 10250 is already in use; stop what listens there",
        f"k3s-worker-1: sudo needs a password (sudo: a password is required); allow NOPASSWD sudo for {cfg.ssh.user}",
        "k3s-worker-1: the memory cgroup controller is off; add cgroup_enable=memory cgroup_memory=1 "
        "to the kernel command line (Raspberry Pi: /boot/firmware/cmdline.txt) and reboot",
        f"k3s-worker-1: only 2 MiB free under /var/lib; need {cfg.k3s.min_free_disk}",
        "k3s-worker-2: connection refused",
        "k3s-server, k3s-worker-1: the same hostname 'twin'; K3S needs unique hostnames",
    ]


def test_ports_k3s_already_holds_and_agent_only_ports_are_not_conflicts(cfg: Any) -> None:
    busy = HEALTHY.replace("0.0.0.0:22", "0.0.0.0:6443 0.0.0.0:10250")
    facts: dict[str, Any] = {n.name: preflight.parse(busy.format(name=n.name)) for n in cfg.nodes}
    assert preflight.problems_for(cfg, facts) == [
        "k3s-server: port 6443 is already in use; stop what listens there",
        "k3s-server: port 10250 is already in use; stop what listens there",
        "k3s-worker-1: port 10250 is already in use; stop what listens there",
        "k3s-worker-2: port 10250 is already in use; stop what listens there",
    ]
    installed = {n: preflight.parse(busy.replace("k3s=no", "k3s=yes").format(name=n)) for n in facts}
    assert preflight.problems_for(cfg, dict(installed)) == []


def test_disk_exactly_at_the_minimum_is_enough(cfg: Any) -> None:
    need = preflight.size_kib(cfg.k3s.min_free_disk)
    at = {n.name: preflight.parse(HEALTHY.replace("52428800", str(need)).format(name=n.name)) for n in cfg.nodes}
    assert preflight.problems_for(cfg, dict(at)) == []
    below = dict(at, **{"k3s-server": preflight.parse(HEALTHY.replace("52428800", str(need - 1)).format(name="s"))})
    assert preflight.problems_for(cfg, below) == [
        f"k3s-server: only {(need - 1) // 1024} MiB free under /var/lib; need {cfg.k3s.min_free_disk}"
    ]


def test_an_error_that_already_names_its_node_is_not_named_twice(cfg: Any) -> None:
    facts: dict[str, Any] = {n.name: preflight.parse(HEALTHY.format(name=n.name)) for n in cfg.nodes}
    facts["k3s-worker-1"] = HomelabError("k3s-worker-1: host key not pinned")
    assert preflight.problems_for(cfg, facts) == ["k3s-worker-1: host key not pinned"]


def test_a_node_that_could_not_be_asked_does_not_hide_the_others(cfg: Any) -> None:
    facts: dict[str, Any] = {n.name: preflight.parse(HEALTHY.format(name=n.name)) for n in cfg.nodes}
    facts["k3s-server"] = HomelabError("connection refused")
    facts["k3s-worker-2"] = preflight.parse(HEALTHY.format(name="w2").replace("sudo=ok", "sudo=no"))
    assert preflight.problems_for(cfg, facts) == [
        "k3s-server: connection refused",
        f"k3s-worker-2: sudo needs a password (no); allow NOPASSWD sudo for {cfg.ssh.user}",
    ]


def test_a_value_may_itself_contain_an_equals_sign() -> None:
    facts = preflight.parse("hostname=a\nsudo=sudo: option a=b is not allowed\ncgroup_memory=yes\n")
    assert facts.sudo == "sudo: option a=b is not allowed" and facts.hostname == "a"


def test_sqlite3_is_installed_with_apt_where_missing_and_its_absence_without_apt_stops_preflight(cfg: Any) -> None:
    outputs: dict[str, str | Exception] = {n.name: HEALTHY.format(name=n.name) for n in cfg.nodes}
    outputs["k3s-worker-1"] = outputs["k3s-worker-1"].replace("sqlite3=yes", "sqlite3=no")
    facts = preflight.check(lab(cfg, outputs))
    plan = preflight.install_missing_tools(facts)
    assert [(a.host, a.sudo, a.argv) for a in plan.actions] == [
        ("k3s-worker-1", True, ("sh", "-c", preflight.INSTALL_SQLITE3))
    ]
    assert preflight.install_missing_tools({n: f for n, f in facts.items() if n != "k3s-worker-1"}).empty
    outputs["k3s-worker-2"] = outputs["k3s-worker-2"].replace("sqlite3=yes", "sqlite3=no").replace("apt=yes", "apt=no")
    with pytest.raises(HomelabError) as caught:
        preflight.check(lab(cfg, outputs))
    assert str(caught.value).splitlines()[1:] == [
        "  k3s-worker-2: sqlite3 is missing and there is no apt-get to install it; install sqlite3 "
        "(the backups snapshot the K3S datastore and app databases with it)"
    ]


def installer_check(url: str, path: str) -> str:
    """Run the installer part of the preflight script in a real shell; PATH decides whether k3s is there."""
    script = preflight.INSTALLER_CHECK.format(url=shlex.quote(url))
    done = subprocess.run(["/bin/sh", "-c", script], env={"PATH": path}, capture_output=True, text=True, check=True)
    return preflight.parse(done.stdout).installer


def test_the_installer_check_downloads_only_where_k3s_is_missing_and_keeps_curls_reason(tmp_path: Path) -> None:
    (tmp_path / "install.sh").write_text("#!/bin/sh\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "curl").symlink_to(shutil.which("curl") or "/usr/bin/curl")
    plain = f"{tools}:/usr/bin:/bin"
    assert installer_check(f"file://{tmp_path}/install.sh", plain) == "ok"
    missing = installer_check(f"file://{tmp_path}/gone.sh", plain)
    assert missing.startswith("curl: (37)"), missing  # curl's own reason, one line
    (tools / "k3s").write_text("#!/bin/sh\n")
    (tools / "k3s").chmod(0o755)
    assert installer_check(f"file://{tmp_path}/gone.sh", plain) == "skip"  # installed: no download, no failure
    (tools / "k3s").unlink()
    (tools / "curl").unlink()
    assert installer_check(f"file://{tmp_path}/install.sh", str(tools)) == "curl is missing"


def test_an_uploaded_installer_is_not_downloaded_and_a_failed_download_stops_preflight(cfg: Any) -> None:
    assert "curl" in preflight.script_for(cfg) and shlex.quote(cfg.k3s.installer_url) in preflight.script_for(cfg)
    uploaded = cfg.model_copy(update={"k3s": cfg.k3s.model_copy(update={"installer_file": "install.sh"})})
    assert preflight.script_for(uploaded) == preflight.SCRIPT
    outputs: dict[str, str | Exception] = {n.name: HEALTHY.format(name=n.name) + "installer=ok\n" for n in cfg.nodes}
    preflight.check(lab(cfg, outputs))
    outputs["k3s-worker-1"] = HEALTHY.format(name="w1") + "installer=curl: (6) Could not resolve host: get.k3s.io\n"
    with pytest.raises(HomelabError) as caught:
        preflight.check(lab(cfg, outputs))
    [line] = str(caught.value).splitlines()[1:]
    assert line.startswith(
        f"  k3s-worker-1: cannot download the k3s installer from {cfg.k3s.installer_url} "
        "(curl: (6) Could not resolve host: get.k3s.io). The node must reach k3s.installer_url"
    )
