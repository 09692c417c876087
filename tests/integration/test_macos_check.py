"""scripts/macos-check.sh: what the Mac lacks, each with how to get it (run here with stand-in tools)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = pytest.mark.integration

BREW_TOOLS = ("brew", "limactl", "tofu", "kubectl", "kubeseal", "restic")


def run_check(tmp_path: Path, tools: tuple[str, ...], plist: str | None) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    socket_vmnet = tmp_path / "opt" / "socket_vmnet"
    if "socket_vmnet" in tools:
        socket_vmnet.parent.mkdir(exist_ok=True)
        socket_vmnet.write_text("#!/bin/sh\n")
        socket_vmnet.chmod(0o755)
    plist_path = tmp_path / "io.github.lima-vm.socket_vmnet.plist"
    if plist is not None:
        plist_path.write_text(plist)
    system = tmp_path / "system"  # only what the script runs besides the tools it looks for
    system.mkdir(exist_ok=True)
    if not (system / "grep").exists():
        (system / "grep").symlink_to(shutil.which("grep") or "/bin/grep")
    env = {
        "PATH": f"{bin_dir}:{system}",
        "SOCKET_VMNET": str(socket_vmnet),
        "SOCKET_VMNET_PLIST": str(plist_path),
    }
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(REPO / "scripts" / "macos-check.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_a_bare_mac_gets_every_missing_part_named_with_its_install_command(tmp_path: Path) -> None:
    done = run_check(tmp_path, (), None)
    assert done.returncode == 1
    for line in (
        "missing: limactl; install it with: brew install lima",
        "missing: terraform or tofu; install one with: brew install opentofu",
        "missing: kubectl; install it with: brew install kubernetes-cli",
        "missing: kubeseal; install it with: brew install kubeseal",
        "missing: restic; install it with: brew install restic",
        "sudo tar Cxzvf / socket_vmnet-$VERSION-$(uname -m).tar.gz opt/socket_vmnet",
        "--vmnet-gateway=192.168.105.1 --vmnet-dhcp-end=192.168.105.9 /var/run/socket_vmnet",
        "sudo launchctl bootstrap system",
    ):
        assert line in done.stderr, line


def test_a_ready_mac_passes_and_a_plist_without_the_dhcp_end_does_not(tmp_path: Path) -> None:
    args = "<string>--vmnet-gateway=192.168.105.1</string><string>--vmnet-dhcp-end=192.168.105.9</string>"
    ready = run_check(tmp_path, (*BREW_TOOLS, "socket_vmnet"), args)
    assert ready.returncode == 0, ready.stderr
    assert "the Mac is ready" in ready.stderr

    wrong = run_check(tmp_path, (*BREW_TOOLS, "socket_vmnet"), "<string>--vmnet-gateway=192.168.105.1</string>")
    assert wrong.returncode == 1
    assert "must pass --vmnet-gateway=192.168.105.1 --vmnet-dhcp-end=192.168.105.9" in wrong.stderr
