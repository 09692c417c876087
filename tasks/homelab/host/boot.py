"""What starts the homelab when the machine boots: systemd units on Linux, launchd daemons on macOS.

The order is the point: the node network first (socket_vmnet on the Mac), then
the K3S server's VM, then each agent's, one at a time, then the post-boot check
(``host.after-boot``) that waits for the cluster and reports once by Telegram.

Linux: one unit per VM under ``/etc/systemd/system`` (systemd.unit(5),
systemd.service(5): https://www.freedesktop.org/software/systemd/man/systemd.service.html).
Each is ``Type=oneshot`` with ``RemainAfterExit=yes`` (``limactl start`` returns
once the VM runs; the unit stays active so its ``ExecStop`` stops the VM at
shutdown, in reverse order), ``User=`` the owner (Lima's instances live in the
owner's ``LIMA_HOME``; limactl refuses to run as root), and ``After=`` the unit
before it: After= orders, it does not pull in, so each also ``Wants=`` it.
``WantedBy=multi-user.target`` in ``[Install]`` is what ``systemctl enable`` links.
The post-boot unit is ``Type=simple``: its wait must not hold back multi-user.target.

macOS: launchd has no "after that job" key (launchd.plist(5):
https://keith.github.io/xcode-man-pages/launchd.plist.5.html), so ordering is
done by one job that runs ``host.boot``: it waits for socket_vmnet's socket, then
runs ``limactl start`` for each VM in order, then the post-boot check. Lima's own
``limactl start-at-login`` writes a LaunchAgent (``~/Library/LaunchAgents/
io.lima-vm.autostart.<instance>.plist``, lima-vm/lima pkg/autostart/launchd),
which runs only once the owner logs in; after a power cut nobody does. A
LaunchDaemon in ``/Library/LaunchDaemons`` runs at boot, and its ``UserName``
key runs it as the owner. socket_vmnet's daemon is the one its README installs
(``io.github.lima-vm.socket_vmnet``, run as root, ``RunAtLoad`` and ``KeepAlive``),
with the gateway and DHCP end the config names.

Everything here is a value; ``plan`` turns it into writes and service-manager calls.
A root other than the system's (tests, a review copy) gets the files only: nothing
is enabled or loaded there.
"""

from __future__ import annotations

import os
import plistlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab.backup import launchd
from homelab.config.schema import HomelabConfig
from homelab.core.plan import Note, Plan, Run, WriteFile

SYSTEMD_ROOT = Path("/etc/systemd/system")
LAUNCH_DAEMONS = Path("/Library/LaunchDaemons")
BOOT_LABEL = "org.homelab.boot"
SOCKET_VMNET_LABEL = "io.github.lima-vm.socket_vmnet"  # the label socket_vmnet's own launchd plist uses
AFTER_BOOT_UNIT = "homelab-after-boot.service"
# The keys this module writes, each as launchd.plist(5) spells it; the unit test holds the plists to them.
DOCUMENTED_KEYS = launchd.COMMON_KEYS | {"UserName", "GroupName", "KeepAlive"}
START_TIMEOUT = 900  # seconds for one VM's `limactl start` (QEMU without KVM boots in minutes)


@dataclass(frozen=True)
class Boot:
    """Who and what the boot jobs run: the owner, the toolkit's program, Lima, the VMs in start order."""

    owner: str
    home: Path
    program: Path  # the toolkit's `homelab` console script
    workdir: Path
    config: Path
    limactl: Path
    lima_home: Path
    vms: tuple[tuple[str, str], ...]  # (name, role), server first
    log: Path
    socket_vmnet: tuple[str, ...] = ()  # socket_vmnet's argv (macOS shared mode); empty: not managed here
    path: str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    # What every limactl the toolkit starts gets besides its own environment (vm.accel: QEMU_SYSTEM_<ARCH>
    # selecting TCG where KVM is unusable); a VM unit without it boots QEMU with KVM, which exits at once.
    env: tuple[tuple[str, str], ...] = ()


def start_order(cfg: HomelabConfig) -> tuple[tuple[str, str], ...]:
    """The Lima VMs in the order they start: the server, then every agent as listed."""
    lima = [n for n in cfg.nodes if n.provider == "lima"]
    return tuple((n.name, n.role) for n in sorted(lima, key=lambda n: n.role != "server"))


def socket_vmnet_argv(cfg: HomelabConfig) -> tuple[str, ...]:
    """socket_vmnet as its README runs it under launchd, with this config's gateway and DHCP end (shared mode)."""
    if cfg.host.kind != "macos" or cfg.lima.network != "socket_vmnet" or cfg.lima.mode != "shared":
        return ()
    argv = [cfg.host.socket_vmnet_path, f"--vmnet-gateway={cfg.network.gateway}"]
    if cfg.network.dhcp_end:
        argv.append(f"--vmnet-dhcp-end={cfg.network.dhcp_end}")
    return (*argv, cfg.lima.socket)


# --- systemd -------------------------------------------------------------------------------------


def vm_unit_name(name: str) -> str:
    return f"homelab-vm-{name}.service"


def exec_arg(arg: str) -> str:
    """One ExecStart word: ``%`` and ``$`` doubled (specifiers, variables), quoted when it holds a space.

    systemd.service(5), "Command lines": words split on whitespace, double quotes
    wrap one word with C-style escapes, ``%%`` is a literal %, ``$$`` a literal $.
    """
    text = arg.replace("%", "%%").replace("$", "$$")
    if any(ch.isspace() or ch in "\"'\\;" for ch in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def exec_line(argv: tuple[str, ...] | list[str]) -> str:
    return " ".join(exec_arg(a) for a in argv)


def _env(key: str, value: str) -> str:
    """One ``Environment=`` assignment, quoted as an ExecStart word is."""
    return exec_arg(f"{key}={value}")


def vm_unit(boot: Boot, index: int) -> str:
    """The unit that starts VM ``index`` of the start order, after the one before it."""
    name, role = boot.vms[index]
    unit = ["[Unit]", f"Description=homelab: start the Lima VM {name} (K3S {role})", "Documentation=man:limactl"]
    before = ["network-online.target"] + ([vm_unit_name(boot.vms[index - 1][0])] if index else [])
    unit += [f"Wants={' '.join(before)}", f"After={' '.join(before)}"]
    env = [f"Environment={_env('LIMA_HOME', str(boot.lima_home))}", f"Environment={_env('HOME', str(boot.home))}"]
    env += [f"Environment={_env(key, value)}" for key, value in boot.env]
    service = [
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"User={boot.owner}",
        *env,
        f"ExecStart={exec_line([str(boot.limactl), 'start', '--tty=false', name])}",
        f"ExecStop={exec_line([str(boot.limactl), 'stop', name])}",
        f"TimeoutStartSec={START_TIMEOUT}",
        "TimeoutStopSec=300",
    ]
    return "\n".join([*unit, *service, "", "[Install]", "WantedBy=multi-user.target", ""])


def after_boot_unit(boot: Boot) -> str:
    """The post-boot check, after every VM unit: waits (bounded) for the cluster and sends one message."""
    vms = " ".join(vm_unit_name(name) for name, _ in boot.vms)
    lines = [
        "[Unit]",
        "Description=homelab: wait for K3S and Argo CD after boot, then report by Telegram",
        f"Wants={vms}",
        f"After={vms}",
        "",
        "[Service]",
        "Type=simple",
        f"User={boot.owner}",
        f"WorkingDirectory={exec_arg(str(boot.workdir))}",
        f"Environment={_env('HOME', str(boot.home))}",
        f"Environment={_env('HOMELAB_CONFIG', str(boot.config))}",
        f"Environment={_env('PATH', boot.path)}",
        f"ExecStart={exec_line([str(boot.program), 'host.after-boot'])}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def systemd_units(boot: Boot) -> dict[str, str]:
    """Every unit file, by name, in start order."""
    units = {vm_unit_name(name): vm_unit(boot, i) for i, (name, _) in enumerate(boot.vms)}
    units[AFTER_BOOT_UNIT] = after_boot_unit(boot)
    return units


def systemd_units_names(cfg: HomelabConfig) -> list[str]:
    """The unit files ``host.autostart`` writes for this config, in start order."""
    return [*(vm_unit_name(name) for name, _ in start_order(cfg)), AFTER_BOOT_UNIT]


def unit_environment(unit_text: str) -> dict[str, str]:
    """The ``Environment=`` assignments of a unit, unquoted (the quoting ``exec_arg`` writes)."""
    import shlex

    found: dict[str, str] = {}
    for line in unit_text.splitlines():
        if line.startswith("Environment="):
            for word in shlex.split(line.split("=", 1)[1].replace("%%", "%").replace("$$", "$")):
                key, _, value = word.partition("=")
                found[key] = value
    return found


def exec_starts(unit_text: str) -> list[str]:
    """The ExecStart lines of a unit, as written (what the boot test runs in order)."""
    return [line.split("=", 1)[1] for line in unit_text.splitlines() if line.startswith("ExecStart=")]


# --- launchd -------------------------------------------------------------------------------------


def boot_daemon(boot: Boot) -> dict[str, Any]:
    """The LaunchDaemon that runs ``host.boot`` at boot as the owner: VMs in order, then the post-boot check."""
    return {
        "Label": BOOT_LABEL,
        "ProgramArguments": [str(boot.program), "host.boot"],
        "UserName": boot.owner,
        "GroupName": "staff",  # the owner's primary group on macOS
        "WorkingDirectory": str(boot.workdir),
        "EnvironmentVariables": {
            "HOME": str(boot.home),
            "LIMA_HOME": str(boot.lima_home),
            "HOMELAB_CONFIG": str(boot.config),
            "PATH": boot.path,
        },
        "StandardOutPath": str(boot.log),
        "StandardErrorPath": str(boot.log),
        "RunAtLoad": True,  # a daemon in /Library/LaunchDaemons is loaded at boot: run then
        "KeepAlive": False,  # one pass per boot; a failed start is reported, not retried in a loop
    }


def socket_vmnet_daemon(argv: tuple[str, ...]) -> dict[str, Any]:
    """socket_vmnet's LaunchDaemon (root, started at load, restarted when it exits), as its README installs it."""
    return {
        "Label": SOCKET_VMNET_LABEL,
        "ProgramArguments": list(argv),
        "UserName": "root",
        "StandardOutPath": "/var/log/socket_vmnet/stdout",
        "StandardErrorPath": "/var/log/socket_vmnet/stderr",
        "RunAtLoad": True,
        "KeepAlive": True,
    }


def render_plist(value: dict[str, Any]) -> bytes:
    """XML, keys sorted: the same config gives the same bytes (the idempotence check)."""
    return plistlib.dumps(value, fmt=plistlib.FMT_XML, sort_keys=True)


def launchd_files(boot: Boot) -> dict[str, bytes]:
    """Every property list, by file name: socket_vmnet's first (when managed here), then the boot job."""
    files = {}
    if boot.socket_vmnet:
        files[f"{SOCKET_VMNET_LABEL}.plist"] = render_plist(socket_vmnet_daemon(boot.socket_vmnet))
    files[f"{BOOT_LABEL}.plist"] = render_plist(boot_daemon(boot))
    return files


# --- the plan ------------------------------------------------------------------------------------


def _needs_root(root: Path) -> bool:
    """Whether writing under ``root`` needs sudo: its nearest existing ancestor is not ours to write."""
    here = root
    while not here.exists() and here != here.parent:
        here = here.parent
    return not os.access(here, os.W_OK)


def plan(kind: str, boot: Boot, root: Path, remove: bool, system: bool) -> Plan:
    """Writes (or removals) under ``root`` and, when ``system``, the service manager's calls."""
    files: dict[str, bytes] = (
        {name: text.encode() for name, text in systemd_units(boot).items()} if kind == "linux" else launchd_files(boot)
    )
    sudo = _needs_root(root)
    verb = "remove" if remove else "install"
    manager = "systemd units" if kind == "linux" else "launchd daemons"
    result = Plan(f"host.autostart: {verb} the {manager} that start the homelab at boot, under {root}")
    if remove:
        present = [name for name in files if (root / name).exists()]
        if not present:
            return result.add(Note(f"nothing to remove: no homelab boot files under {root}"))
        for name in present:
            if system and kind == "linux":
                result.add(Run(("systemctl", "disable", name), sudo=True, why="no longer started at boot"))
            if system and kind == "macos":
                label = name.removesuffix(".plist")
                result.add(Run(("launchctl", "bootout", f"system/{label}"), sudo=True, why="unload the daemon"))
            result.add(Run(("rm", "-f", str(root / name)), sudo=sudo, why="the boot file"))
        if system and kind == "linux":
            result.add(Run(("systemctl", "daemon-reload"), sudo=True, why="forget the removed units"))
        return result
    changed = [name for name, data in files.items() if not _same(root / name, data)]
    if not changed:
        return result.add(Note(f"the boot files under {root} are already as configured"))
    for name in changed:
        mode = 0o644
        result.add(WriteFile(str(root / name), files[name], mode, sudo=sudo, why="started at boot"))
    if not system:
        return result.add(Note(f"{root} is not the system's directory: written only, nothing enabled or loaded"))
    if kind == "linux":
        result.add(Run(("systemctl", "daemon-reload"), sudo=True, why="read the new units"))
        result.add(Run(("systemctl", "enable", *files), sudo=True, why="link them into multi-user.target"))
    else:
        for name in changed:
            label = name.removesuffix(".plist")
            result.add(Run(("launchctl", "enable", f"system/{label}"), sudo=True, why="allowed to start at boot"))
        result.add(Note("launchd loads /Library/LaunchDaemons at the next boot; nothing is started now"))
    return result


def _same(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return False
