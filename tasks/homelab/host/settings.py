"""The Mac's own settings that decide whether the homelab survives a night: checked, and where allowed, set.

What each setting means, from the man pages (pmset(1), fdesetup(8)):
- ``pmset -g`` lists ``sleep`` (system sleep timer, minutes; 0 never) and, where
  the hardware has it, ``autorestart`` (1: power on again after a power failure).
  A sleeping Mac pauses every VM; one that stays off after a power cut is down
  until someone presses the button.
- ``fdesetup status`` says ``FileVault is On.`` or ``Off.``. With FileVault on, a
  boot stops at the unlock screen until someone types a password, and nothing of
  the homelab starts: after a power cut the Mac stays locked. ``sudo fdesetup
  authrestart`` is a planned restart that unlocks once by itself (the key is kept
  for that one boot). This is said, never changed here: it is the owner's trade.
- ``com.apple.SoftwareUpdate AutomaticallyInstallMacOSUpdates`` (a managed-preference
  key documented in Apple's Platform Deployment guide) set to 1 lets macOS install
  an update and restart at night; the boot jobs (``host.autostart``) bring the
  homelab back then.
- Full Disk Access cannot be read for another program: it is granted per program
  in System Settings. What can be known is whether the backup's files sit in a
  folder macOS guards (Desktop, Documents, Downloads, iCloud Drive), where a
  launchd job without that access is refused.
- LM Studio must answer on ``lm_studio.host:lm_studio.port`` (its "Serve on
  Local Network" setting), the address the pods use; ``cloudflared`` must be on
  PATH when the tunnel is on.

Only ``pmset`` is changed by ``host.prepare`` (with sudo); the rest are steps.
"""

from __future__ import annotations

import platform
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from homelab.config.schema import HomelabConfig
from homelab.core.paths import project_root, resolve_in_project
from homelab.core.plan import Note, Plan, Run
from homelab.core.tools import find
from homelab.root.doctor import Check, fail, ok, warn

GUARDED = ("Desktop", "Documents", "Downloads", "Library/Mobile Documents")  # TCC-protected folders under ~
SOFTWARE_UPDATE = "/Library/Preferences/com.apple.SoftwareUpdate"


@dataclass(frozen=True)
class MacFacts:
    """What the Mac's commands said; None where a command could not say (not run, not listed)."""

    pmset: str | None
    fdesetup: str | None
    auto_update: str | None  # AutomaticallyInstallMacOSUpdates: "1", "0", or None when unset
    cloudflared: bool
    lm_studio_answers: bool


def _output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether something accepts a TCP connection at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def gather(cfg: HomelabConfig) -> MacFacts:
    """Ask this Mac (read-only commands and one TCP connection to LM Studio)."""
    update = _output(["defaults", "read", SOFTWARE_UPDATE, "AutomaticallyInstallMacOSUpdates"])
    return MacFacts(
        pmset=_output(["pmset", "-g"]),
        fdesetup=_output(["fdesetup", "status"]),
        auto_update=update.strip() if update is not None else None,
        cloudflared=find("cloudflared") is not None,
        lm_studio_answers=answers(cfg.lm_studio.host, cfg.lm_studio.port),
    )


def pmset_value(text: str, key: str) -> int | None:
    """A setting's number in ``pmset -g``'s listing (`` sleep  0 (sleep prevented by ...)``); None if absent."""
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == key and words[1].isdigit():
            return int(words[1])
    return None


def guarded(path: Path, home: Path) -> str | None:
    """The macOS-guarded folder ``path`` is in, if any."""
    for folder in GUARDED:
        if path.is_relative_to(home / folder):
            return folder
    return None


def checks(cfg: HomelabConfig, facts: MacFacts | None, home: Path | None = None) -> list[Check]:
    """The doctor's rows for the Mac's settings; one "not macOS" row elsewhere."""
    if facts is None:
        return [ok("host settings", f"not macOS ({platform.system()}): the Mac's settings are not checked")]
    home = home or Path.home()
    rows: list[Check] = []
    sleep = pmset_value(facts.pmset or "", "sleep")
    if sleep == 0:
        rows.append(ok("host sleep", "system sleep is off (pmset sleep 0)"))
    else:
        now = "unknown" if sleep is None else f"{sleep} min"
        rows.append(fail("host sleep", f"system sleep is {now}: a sleeping Mac pauses every VM", "inv host.prepare"))
    restart = pmset_value(facts.pmset or "", "autorestart")
    if restart == 1:
        rows.append(ok("host autorestart", "powers on again after a power failure"))
    elif restart is None:
        rows.append(warn("host autorestart", "pmset -g does not list autorestart", "check Energy settings by hand"))
    else:
        rows.append(fail("host autorestart", "stays off after a power failure", "inv host.prepare"))
    status = (facts.fdesetup or "").strip()
    if "FileVault is On" in status:
        rows.append(
            warn(
                "host filevault",
                "on: after a power cut the Mac waits at the unlock screen and nothing of the homelab starts "
                "until someone types a password",
                "for a planned restart use `sudo fdesetup authrestart` (unlocks that one boot); keep it on or "
                "turn it off knowingly",
            )
        )
    elif "FileVault is Off" in status:
        rows.append(ok("host filevault", "off: an unattended boot reaches the boot jobs"))
    else:
        rows.append(warn("host filevault", "fdesetup status did not say", "run `fdesetup status`"))
    if facts.auto_update == "1":
        rows.append(ok("host updates", "macOS installs updates and restarts by itself; host.autostart brings it back"))
    else:
        rows.append(ok("host updates", "macOS waits for you to install updates (restarts only when you choose)"))
    places = {"the toolkit": project_root(), "state_dir": resolve_in_project(cfg.state_dir)}
    if cfg.backup.repository.startswith("/"):
        places["backup.repository"] = Path(cfg.backup.repository)
    hit = [f"{what} in ~/{folder}" for what, path in places.items() if (folder := guarded(path, home))]
    if hit:
        rows.append(
            warn(
                "host full disk access",
                f"{', '.join(hit)}: the scheduled backup is refused there without Full Disk Access",
                "grant Full Disk Access to the venv's python in System Settings > Privacy & Security, or move it",
            )
        )
    else:
        rows.append(ok("host full disk access", "not needed: nothing the backup reads sits in a guarded folder"))
    where = f"{cfg.lm_studio.host}:{cfg.lm_studio.port}"
    rows.append(
        ok("host lm studio", f"answers on {where}")
        if facts.lm_studio_answers
        else fail(
            "host lm studio",
            f"nothing answers on {where}",
            "LM Studio > Developer: start the server with 'Serve on Local Network', port lm_studio.port",
        )
    )
    if cfg.cloudflare.tunnel_enabled:
        rows.append(
            ok("host cloudflared", "installed")
            if facts.cloudflared
            else fail("host cloudflared", "not installed (the tunnel is on)", "brew install cloudflared")
        )
    return rows


def prepare_plan(facts: MacFacts | None) -> Plan:
    """pmset changes (sudo) for what is off; every other setting as a step for the owner."""
    result = Plan("host.prepare: the Mac's settings for a server")
    if facts is None:
        return result.add(Note(f"not macOS ({platform.system()}): nothing to prepare"))
    if pmset_value(facts.pmset or "", "sleep") != 0:
        result.add(Run(("pmset", "-a", "sleep", "0"), sudo=True, why="never sleep: a sleeping Mac pauses the VMs"))
    if pmset_value(facts.pmset or "", "autorestart") != 1:
        result.add(Run(("pmset", "-a", "autorestart", "1"), sudo=True, why="power on again after a power failure"))
    if "FileVault is On" in (facts.fdesetup or ""):
        result.add(
            Note(
                "step: FileVault is on, so an unattended boot waits at the unlock screen; restart with "
                "`sudo fdesetup authrestart` when you plan one (not changed here)"
            )
        )
    if not facts.lm_studio_answers:
        result.add(Note("step: in LM Studio start the server with 'Serve on Local Network' on lm_studio.port"))
    if not facts.cloudflared:
        result.add(Note("step: brew install cloudflared (when cloudflare.tunnel_enabled)"))
    result.add(Note("step: inv host.autostart, so the VMs start at boot without a login"))
    return result


def facts_here(cfg: HomelabConfig) -> MacFacts | None:
    """This Mac's facts; None when the toolkit does not run on macOS."""
    return gather(cfg) if platform.system() == "Darwin" else None
