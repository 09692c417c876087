"""scripts/macos-check.sh: what the Mac lacks, each with how to get it (run here with stand-in tools)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = pytest.mark.integration

BREW_TOOLS = ("brew", "limactl", "tofu", "kubectl", "kubeseal", "restic", "cloudflared")
# What a Mac set up as a server prints (pmset(1)'s listing: one "name value" per line, value may be annotated).
SERVER_PMSET = "System-wide power settings:\nCurrently in use:\n sleep                0\n autorestart          1\n"
READY_PLIST = "<string>--vmnet-gateway=192.168.105.1</string><string>--vmnet-dhcp-end=192.168.105.9</string>"


def run_check(
    tmp_path: Path,
    tools: tuple[str, ...],
    plist: str | None,
    said: dict[str, str] | None = None,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the script with stand-ins: each of ``tools`` exits 0; each of ``said`` prints its text (an
    "exit N" first line makes it exit N instead)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    for tool, text in (said or {}).items():
        code = text.split()[1] if text.startswith("exit ") else "0"
        body = text.split("\n", 1)[1] if text.startswith("exit ") else text
        (bin_dir / tool).write_text(f"#!/bin/sh\ncat <<'EOF'\n{body}EOF\nexit {code}\n")
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
    for tool in ("grep", "cat"):
        if not (system / tool).exists():
            (system / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    env = {
        **(env_extra or {}),
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
    args = READY_PLIST
    ready = run_check(tmp_path, (*BREW_TOOLS, "socket_vmnet", "nc"), args, {"pmset": SERVER_PMSET})
    assert ready.returncode == 0, ready.stderr
    assert "the Mac is ready" in ready.stderr

    assert "ok: system sleep is off" in ready.stderr and "ok: LM Studio answers on 192.168.105.1:1234" in ready.stderr

    wrong = run_check(tmp_path, (*BREW_TOOLS, "socket_vmnet"), "<string>--vmnet-gateway=192.168.105.1</string>")
    assert wrong.returncode == 1
    assert "must pass --vmnet-gateway=192.168.105.1 --vmnet-dhcp-end=192.168.105.9" in wrong.stderr


def test_a_mac_that_sleeps_or_stays_off_after_a_power_cut_is_not_ready_and_is_told_the_pmset_fix(
    tmp_path: Path,
) -> None:
    pmset = "Currently in use:\n sleep                1 (sleep prevented by powerd)\n autorestart          0\n"
    done = run_check(tmp_path, (*BREW_TOOLS, "socket_vmnet"), READY_PLIST, {"pmset": pmset})
    assert done.returncode == 1
    assert "system sleep is on" in done.stderr and "sudo pmset -a sleep 0" in done.stderr
    assert "stays off after a power failure" in done.stderr and "sudo pmset -a autorestart 1" in done.stderr


def test_filevault_and_automatic_updates_are_said_plainly_and_do_not_fail_the_check(tmp_path: Path) -> None:
    said = {"pmset": SERVER_PMSET, "fdesetup": "FileVault is On.\n", "defaults": "1\n"}
    done = run_check(tmp_path, (*BREW_TOOLS, "socket_vmnet"), READY_PLIST, said)
    assert done.returncode == 0, done.stderr
    assert "waits at the unlock screen" in done.stderr and "sudo fdesetup authrestart" in done.stderr
    assert "installs updates and restarts by itself" in done.stderr
    assert "nothing answers on 192.168.105.1:1234" in done.stderr  # no nc stand-in: LM Studio not reached


def test_cloudflared_is_needed_only_with_the_tunnel(tmp_path: Path) -> None:
    tools = tuple(t for t in BREW_TOOLS if t != "cloudflared")
    with_tunnel = run_check(tmp_path, (*tools, "socket_vmnet"), READY_PLIST, {"pmset": SERVER_PMSET})
    assert with_tunnel.returncode == 1 and "missing: cloudflared; install it with: brew install cloudflared" in (
        with_tunnel.stderr
    )
    without = run_check(
        tmp_path, (*tools, "socket_vmnet"), READY_PLIST, {"pmset": SERVER_PMSET}, {"CLOUDFLARE_TUNNEL": "0"}
    )
    assert without.returncode == 0, without.stderr
