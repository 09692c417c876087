"""The machine under the VMs: start the homelab at boot, check and set the Mac's settings, size the nodes for it.

Exit codes: 0 ok, 1 the post-boot check found something still down, 2 usage or config
(nodes that do not fit this host, a wrong --root).
"""

from __future__ import annotations

import getpass
import os
import platform
import sys
from pathlib import Path
from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import confirm, session, task


def _boot_spec(s: Any) -> Any:
    from homelab.core.paths import project_root
    from homelab.core.tools import find
    from homelab.host import boot
    from homelab.vm import accel

    program_dir = Path(sys.executable).parent
    home = Path.home()
    limactl = find("limactl") or "/usr/local/bin/limactl"
    path = ":".join(dict.fromkeys([str(program_dir), str(Path(limactl).parent), *boot.Boot.path.split(":")]))
    return boot.Boot(
        owner=os.environ.get("SUDO_USER") or getpass.getuser(),
        home=home,
        program=program_dir / "homelab",
        workdir=project_root(),
        config=Path(s.loaded.files[0]),
        limactl=Path(limactl),
        lima_home=Path(os.environ.get("LIMA_HOME") or home / ".lima"),
        vms=boot.start_order(s.cfg),
        log=s.state_dir / "boot.log",
        socket_vmnet=boot.socket_vmnet_argv(s.cfg),
        path=path,
        env=accel.detect(s.cfg).env if s.cfg.host.kind == "linux" else (),
    )


def autostart_plan(s: Any, remove: bool, root: str | None) -> Any:
    """The boot files' plan for this config: systemd on a Linux host, launchd on the Mac."""
    from homelab.core.errors import UsageError
    from homelab.host import boot

    kind = s.cfg.host.kind
    default = boot.SYSTEMD_ROOT if kind == "linux" else boot.LAUNCH_DAEMONS
    chosen = Path(root).expanduser() if root else default
    if root and not chosen.is_absolute():
        raise UsageError(f"--root {root!r} must be an absolute directory (default {default})")
    system = chosen == default and platform.system() == ("Linux" if kind == "linux" else "Darwin")
    if s.cfg.target != "lima":
        raise UsageError(f"host.autostart starts Lima VMs; target is {s.cfg.target} (use --target lima)")
    return boot.plan(kind, _boot_spec(s), chosen, remove, system)


@task(
    default=True,
    help={
        "remove": "Remove the boot files (and disable them) instead of installing them.",
        "dry_run": "Print the files and service-manager calls; change nothing.",
        "root": "Write under this directory instead of /etc/systemd/system (Linux) or /Library/LaunchDaemons "
        "(macOS); nothing is enabled there.",
    },
)
def autostart(c: Any, remove: bool = False, dry_run: bool = False, root: str | None = None) -> None:
    """Install (or remove) what starts the VMs at boot in order (server, then agents), then the post-boot check."""
    s = session(c, dry_run)
    s.executor.execute(autostart_plan(s, remove, root))


@task(help={"timeout": "Seconds to wait for every node and Application (default 1800).", "interval": "Poll every N s."})
def after_boot(c: Any, timeout: float = 1800.0, interval: float = 10.0) -> None:
    """Wait (bounded) for K3S Ready and every Application Synced and Healthy; send one Telegram message."""
    from invoke.exceptions import Exit

    from homelab.host import after_boot as checking

    with session(c) as s:
        back, text = checking.report(s, timeout, interval)
    print(text)
    if not back:
        raise Exit(code=1)


@task(help={"dry_run": "Print the limactl calls in order; start nothing."})
def boot(c: Any, dry_run: bool = False) -> None:
    """Start the VMs in order (server, then agents), then run the post-boot check: what the boot job runs."""
    from homelab.core.plan import LOCAL, Plan, Run, Wait
    from homelab.host import boot as booting

    s = session(c, dry_run)
    spec = _boot_spec(s)
    plan = Plan("host.boot: the VMs in start order")
    if s.cfg.host.kind == "macos" and s.cfg.lima.network == "socket_vmnet":
        socket = Path(s.cfg.lima.socket)  # socket_vmnet's daemon starts at boot too, in no set order
        plan.add(
            Wait(f"socket_vmnet's socket {socket}", lambda: None if socket.is_socket() else "absent", 300, 2, LOCAL)
        )
    for name, _role in spec.vms:
        plan.add(
            Run((str(spec.limactl), "start", "--tty=false", name), why="start the VM", timeout=booting.START_TIMEOUT)
        )
    s.executor.execute(plan)
    if not dry_run:
        after_boot(c)


@task(help={"yes": "Apply the pmset changes without asking.", "dry_run": "Print the commands; change nothing."})
def prepare(c: Any, yes: bool = False, dry_run: bool = False) -> None:
    """Set what may be set on the Mac (pmset sleep 0, autorestart 1, with sudo); print the rest as steps."""
    from homelab.host import settings

    s = session(c, dry_run)
    planned = settings.prepare_plan(settings.facts_here(s.cfg))
    if not dry_run and not planned.empty and not confirm("Change the Mac's power settings with sudo pmset?", yes):
        print("nothing changed")
        return
    s.executor.execute(planned)


@task
def check(c: Any) -> None:
    """Compare the nodes' memory and CPUs with this host's, less host.reserved_*; exit 2 when they do not fit."""
    from homelab.host import sizing

    print(sizing.check(session(c).cfg))


def autostart_said(cfg: Any, root: Path | None = None) -> str:
    """One line for ``inv up``'s plan: whether the boot files are in the system's directory, and how to add them."""
    from homelab.host import boot

    root = root or (boot.SYSTEMD_ROOT if cfg.host.kind == "linux" else boot.LAUNCH_DAEMONS)
    wanted = list(boot.systemd_units_names(cfg)) if cfg.host.kind == "linux" else [f"{boot.BOOT_LABEL}.plist"]
    if all((root / name).exists() for name in wanted):
        return f"boot: the VMs start at boot in order ({root})"
    return f"boot: nothing starts the VMs after a power cut or an update; inv host.autostart installs that ({root})"


def doctor_checks(s: Any) -> list[Any]:
    """The doctor's host rows: the Mac's settings (or "not macOS") and the nodes' sizing."""
    from homelab.core.errors import ConfigError
    from homelab.host import settings, sizing
    from homelab.root.doctor import fail, ok

    if s.cfg.target != "lima":
        return []  # the Mac's settings and sizing matter where it runs the VMs
    rows = settings.checks(s.cfg, settings.facts_here(s.cfg))
    try:
        rows.append(ok("host sizing", sizing.check(s.cfg).removeprefix("host sizing: ")))
    except ConfigError as err:
        rows.append(fail("host sizing", str(err.problems[0]), "see inv host.check"))
    return rows


ns = Collection("host", autostart, after_boot, boot, prepare, check)
