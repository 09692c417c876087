"""The launchd agent that runs backup.run unattended on macOS, planned against the user's gui domain.

Why launchd and not cron on a Mac: cron there has no Full Disk Access and no
Homebrew on its PATH, and it skips a run while the machine sleeps; launchd is the
platform's scheduler and starts a missed calendar job on wake.

The agent is one property list, ``~/Library/LaunchAgents/<LABEL>.plist``, with the
keys launchd.plist(5) documents (https://keith.github.io/xcode-man-pages/launchd.plist.5.html):
``Label``, ``ProgramArguments``, ``WorkingDirectory``, ``EnvironmentVariables``,
``StandardOutPath``/``StandardErrorPath`` and ``StartCalendarInterval`` (a dictionary
of Minute, Hour, Day, Weekday, Month, or an array of them; a missing key is a
wildcard; "if both Day and Weekday are specified, the job starts if either
matches"). No shell runs: the program and its arguments are an argv, so nothing
is quoted. It is loaded with ``launchctl bootstrap gui/<uid>`` and removed with
``launchctl bootout gui/<uid>/<label>``; ``launchctl print`` is the observation.
"""

from __future__ import annotations

import itertools
import os
import plistlib
from pathlib import Path
from typing import Any

from homelab.config import cron
from homelab.core.errors import ConfigError, Problem
from homelab.core.plan import Note, Plan, Run, WriteFile

LABEL = "org.homelab.backup-run"
# The keys every toolkit job writes (this one, the LAN forwarder's, the boot job's), as launchd.plist(5)
# spells them; each module adds its own and its unit test holds the plist to the whole set.
COMMON_KEYS = frozenset(
    {
        "Label",
        "ProgramArguments",
        "WorkingDirectory",
        "EnvironmentVariables",
        "StandardOutPath",
        "StandardErrorPath",
        "RunAtLoad",
    }
)
DOCUMENTED_KEYS = COMMON_KEYS | {"StartCalendarInterval"}
KEYS = ("Minute", "Hour", "Day", "Month", "Weekday")  # StartCalendarInterval's keys, in cron's field order
SPANS = (range(60), range(24), range(1, 32), range(1, 13), range(7))  # each key's whole range (launchd's wildcard)
# One dictionary per combination of listed values: past this many the plist stops being something
# a person can review, and a schedule that busy is a mistake for a nightly backup.
MAX_INTERVALS = 200
SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Homebrew's prefix per CPU (docs.brew.sh/Installation): where scripts/macos-check.sh has restic installed.
HOMEBREW_BIN = {"arm64": "/opt/homebrew/bin", "x86_64": "/usr/local/bin"}


class Unexpressible(ValueError):
    """A cron schedule launchd's calendar intervals cannot state."""


def calendar(expression: str) -> list[dict[str, int]]:
    """``StartCalendarInterval`` for a cron schedule: the dictionaries whose union fires when cron would.

    A field that covers its whole range is left out (launchd's wildcard); every
    other field is listed value by value. When both day fields are restricted,
    cron fires if either matches; one dictionary set per day field says exactly
    that. Vixie cron (Debian's, macOS's) reads a day field that starts with ``*``
    (``*/2``) as unrestricted and then needs both to match, which no launchd
    dictionary can state (it ORs Day and Weekday): that is refused.
    """
    expression = SHORTHANDS.get(expression, expression)
    parsed = cron.parse(expression)
    assert parsed is not None  # shorthands were expanded above
    fields = expression.split()
    sets = [*parsed[:4], {0 if day == 7 else day for day in parsed[4]}]  # 7 and 0 are both Sunday
    listed = [None if values == set(span) else sorted(values) for values, span in zip(sets, SPANS, strict=True)]
    minute, hour, day, month, weekday = listed
    either = not fields[2].startswith("*") and not fields[4].startswith("*")
    if either and day is not None and weekday is not None:
        groups = [[minute, hour, day, month, None], [minute, hour, None, month, weekday]]
    elif either:  # one of them is the whole range: any day matches
        groups = [[minute, hour, None, month, None]]
    elif day is not None and weekday is not None:
        raise Unexpressible(
            f"day of month {fields[2]!r} and day of week {fields[4]!r} must both match (cron's rule when one "
            "starts with '*'), and launchd starts a job when either matches"
        )
    else:
        groups = [listed]
    intervals: list[dict[str, int]] = []
    for group in groups:
        choices = [
            [None] if values is None else [(key, v) for v in values] for key, values in zip(KEYS, group, strict=True)
        ]
        for combo in itertools.product(*choices):
            intervals.append(dict(pair for pair in combo if pair is not None))
            if len(intervals) > MAX_INTERVALS:
                raise Unexpressible(
                    f"launchd needs one calendar interval per combination of listed values, and this schedule "
                    f"needs more than {MAX_INTERVALS}"
                )
    return intervals


def calendar_for(expression: str) -> list[dict[str, int]]:
    """``calendar``, with a refusal that names ``backup.schedule`` and what to change (exit 2)."""
    try:
        return calendar(expression)
    except Unexpressible as err:
        message = f"{expression!r} cannot be a launchd schedule: {err}; write one launchd can state (e.g. '0 3 * * *')"
        raise ConfigError([Problem("backup.schedule", message)]) from None


def search_path(program_dir: Path, cache_bin: Path, machine: str, found: list[Path]) -> str:
    """The agent's PATH: the toolkit's venv, its binary cache, where the tools are now, Homebrew, the system."""
    entries = [str(program_dir), str(cache_bin), *(str(p) for p in found)]
    entries.append(HOMEBREW_BIN.get(machine, HOMEBREW_BIN["arm64"]))
    entries += ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    return ":".join(dict.fromkeys(entries))


def agent(
    *,
    program: Path,
    workdir: Path,
    config: Path,
    path: str,
    log: Path,
    schedule: str,
) -> dict[str, Any]:
    """The agent's property list as a value: what ``plistlib`` writes and the tests read back."""
    return {
        "Label": LABEL,
        "ProgramArguments": [str(program), "backup.run"],
        "WorkingDirectory": str(workdir),
        # The whole environment the run gets besides launchd's own: never the installer's.
        "EnvironmentVariables": {"PATH": path, "HOMELAB_CONFIG": str(config)},
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
        "StartCalendarInterval": calendar_for(schedule),
        "RunAtLoad": False,  # installing is not a reason to back up now
    }


def plist_path(home: Path) -> Path:
    """Where launchd looks for the user's agents: ``~/Library/LaunchAgents/<Label>.plist``."""
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def render(value: dict[str, Any]) -> bytes:
    """The XML property list, keys sorted, so the same config gives the same bytes (the idempotence check)."""
    return plistlib.dumps(value, fmt=plistlib.FMT_XML, sort_keys=True)


def domain(uid: int) -> str:
    return f"gui/{uid}"


def plan(
    executor: Any,
    launchctl: str,
    wanted: dict[str, Any],
    home: Path,
    log_dir: Path,
    remove: bool,
    uid: int | None = None,
) -> Plan:
    """The writes and ``launchctl`` calls that install or remove the agent; empty when in place.

    Loaded-ness is observed with ``launchctl print gui/<uid>/<label>``: a changed
    plist is booted out and bootstrapped again (launchd keeps the copy it loaded,
    so rewriting the file alone changes nothing that runs).
    """
    uid = os.getuid() if uid is None else uid
    target = plist_path(home)
    service = f"{domain(uid)}/{LABEL}"
    probe = executor.observe(Run((launchctl, "print", service), why="is the agent loaded"), check=False)
    loaded = probe.exited == 0
    data = render(wanted)
    current = target.read_bytes() if target.is_file() else None
    verb = "remove" if remove else "install"
    result = Plan(f"backup.schedule: {verb} the launchd agent {LABEL} for backup.run")
    if remove:
        if not loaded and current is None:
            return result.add(Note(f"launchd: the agent {LABEL} is already absent"))
        if loaded:
            result.add(Run((launchctl, "bootout", service), why="stop scheduling backup.run"))
        if target.exists():
            result.add(Run(("rm", "-f", str(target)), why="the agent's property list"))
        return result
    if loaded and current == data:
        return result.add(Note(f"launchd: the agent {LABEL} is already loaded as configured"))
    if loaded:
        result.add(Run((launchctl, "bootout", service), why="launchd keeps the copy it loaded: unload it first"))
    if not log_dir.is_dir():
        result.add(Run(("mkdir", "-p", str(log_dir)), why="the agent's log is there"))
    if current != data:
        result.add(WriteFile(str(target), data, 0o644, why="the agent's property list"))
    result.add(Run((launchctl, "bootstrap", domain(uid), str(target)), why="load the agent"))
    return result
