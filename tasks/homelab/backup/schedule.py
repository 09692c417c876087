"""The scheduled job that runs backup.run unattended: a cron entry on Linux, a launchd agent on macOS.

The host picks the scheduler (``platform.system()``; ``HOMELAB_SCHEDULER=cron|launchd``
overrides it, for tests and odd hosts). Either way the job gets the scheduler's
own small environment, never the installer's: the entry names the working
directory, PATH (the toolkit's venv and binary cache, where restic is found now,
the system's directories) and the config explicitly, and appends to
``backup.log`` in the state directory. Before anything is written,
``unattended.problems`` names the secrets the job could not read there: a real
run refuses (exit 2), ``--dry-run`` shows where the real run would stop.

The crontab is the user's, not ours: every other line is kept as it was. Reading
it is an observation (``crontab -l`` runs under ``--dry-run`` too); the only
write is one ``crontab -`` with the whole new table on stdin. A ``crontab -l``
that fails for any reason but "no crontab for USER" aborts the plan, because
reading the failure as an empty table would overwrite every other entry.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab.backup import launchd, unattended
from homelab.core.converge import require_empty
from homelab.core.errors import ConfigError, HomelabError, UsageError
from homelab.core.executor import Executor
from homelab.core.paths import project_root
from homelab.core.plan import Action, Note, Plan, Run
from homelab.core.secret_refs import Secret
from homelab.core.tools import cached_bin_dir, find, require

MARK = "# homelab backup.run"
SCHEDULER_ENV = "HOMELAB_SCHEDULER"
SCHEDULERS = ("cron", "launchd")


def scheduler() -> str:
    """``launchd`` on macOS, ``cron`` elsewhere; ``$HOMELAB_SCHEDULER`` overrides the host's choice."""
    chosen = os.environ.get(SCHEDULER_ENV) or ("launchd" if platform.system() == "Darwin" else "cron")
    if chosen not in SCHEDULERS:
        raise UsageError(f"{SCHEDULER_ENV}={chosen!r} is not a scheduler; use one of {', '.join(SCHEDULERS)}")
    return chosen


def tool_dirs() -> list[Path]:
    """Where the tools backup.run calls are found now (restic from Homebrew, apt or the cache)."""
    return [Path(found).parent for found in (find("restic"),) if found]


def cron_path() -> str:
    """The entry's PATH: the toolkit's venv and binary cache, where restic is now, the system's directories."""
    entries = [str(Path(sys.executable).parent), str(cached_bin_dir()), *map(str, tool_dirs())]
    return ":".join(dict.fromkeys([*entries, "/usr/local/bin", "/usr/bin", "/bin"]))


def cron_line(session: Any) -> str:
    homelab = Path(sys.executable).parent / "homelab"
    path = cron_path()
    config = session.loaded.files[0]
    log = session.state_dir / "backup.log"
    command = (
        f"cd {shlex.quote(str(project_root()))} && PATH={shlex.quote(path)} "
        f"HOMELAB_CONFIG={shlex.quote(str(config))} {shlex.quote(str(homelab))} backup.run "
        f">> {shlex.quote(str(log))} 2>&1"
    )
    # crontab(5): an unescaped % ends the command (the rest is its stdin), quotes or not.
    return f"{session.cfg.backup.schedule} {command.replace('%', chr(92) + '%')} {MARK}"


def is_no_crontab(code: int, stderr: str) -> bool:
    """The one failure that means "empty": exit 1 with "no crontab for USER" (cronie, Vixie, macOS)."""
    return code == 1 and "no crontab for" in stderr


def read_crontab(executor: Executor, crontab: str) -> str:
    """The user's crontab as ``crontab -l`` prints it; "" when they have none.

    Any other failure (a cron spool it cannot read, a crontab binary that is
    denied or broken) raises, naming the error: nothing may be written then.
    """
    done = executor.observe(Run((crontab, "-l"), why="read the user's crontab"), check=False)
    if done.exited == 0:
        return str(done.stdout)
    if is_no_crontab(done.exited, done.stderr):
        return ""
    detail = (done.stderr or done.stdout).strip() or "no error output"
    raise HomelabError(
        f"`crontab -l` failed with exit code {done.exited}: {detail}; "
        "the crontab was not changed (an unreadable crontab is never treated as empty). Fix that error and re-run"
    )


def current_crontab() -> str:
    """The user's crontab, read outside a task's session (status): same rules as ``read_crontab``."""
    from invoke.context import Context

    return read_crontab(Executor(Context()), require("crontab"))


@dataclass(frozen=True)
class Schedule:
    """The planned crontab change and the line it is about."""

    plan: Plan
    line: str


def launchd_agent(session: Any) -> dict[str, Any]:
    """The agent's property list for this session's config (``launchd.agent``)."""
    program_dir = Path(sys.executable).parent
    return launchd.agent(
        program=program_dir / "homelab",
        workdir=project_root(),
        config=Path(session.loaded.files[0]),
        path=launchd.search_path(program_dir, cached_bin_dir(), platform.machine(), tool_dirs()),
        log=session.state_dir / "backup.log",
        schedule=session.cfg.backup.schedule,
    )


def plan(session: Any, remove: bool) -> Schedule:
    """The change that installs or removes the job with the host's scheduler; empty when in place.

    Installing first checks that the job could read every secret it needs
    (``unattended.problems``) and, for launchd, that it can state the schedule: a
    real run refuses with exit 2; ``--dry-run`` shows each refusal as the note
    "the real run stops here" and the change it would make after the fix.
    Removing checks nothing.
    """
    chosen = scheduler()
    refusals = [] if remove else unattended.problems(session.cfg, chosen)
    if refusals and not session.dry_run:
        raise ConfigError(refusals)
    stops: list[Action] = [Note(f"the real run stops here: {problem}") for problem in refusals]
    if chosen == "launchd":
        home = Path(os.environ.get("HOME") or Path.home())
        try:
            wanted = launchd_agent(session)
        except ConfigError as err:
            if not session.dry_run or remove:
                raise
            stops += [Note(f"the real run stops here: {problem}") for problem in err.problems]
            return Schedule(Plan(f"backup.schedule: install the launchd agent {launchd.LABEL}", stops), "")
        result = launchd.plan(session.executor, require("launchctl"), wanted, home, session.state_dir, remove)
        planned = Schedule(result, str(launchd.plist_path(home)))
    else:
        planned = cron_plan(session, remove)
    planned.plan.actions[:0] = stops
    overrides = sorted(name for name in os.environ if name.startswith("HOMELAB__"))
    if overrides and not remove:
        planned.plan.add(
            Note(
                f"{', '.join(overrides)} set here only: the scheduled run reads the config files alone "
                "(put the value in the config to make it last)"
            )
        )
    return planned


def cron_plan(session: Any, remove: bool) -> Schedule:
    """The crontab (and log directory) change that installs or removes our entry; empty when in place."""
    crontab = require("crontab")
    line = cron_line(session)
    current = read_crontab(session.executor, crontab).splitlines()
    ours = [entry for entry in current if entry.endswith(MARK)]
    kept = [entry for entry in current if not entry.endswith(MARK)]
    wanted = kept if remove else [*kept, line]
    verb = "remove" if remove else "install"
    result = Plan(f"backup.schedule: {verb} the cron entry for backup.run")
    if wanted == current:
        state = "absent" if remove else "installed as configured"
        return Schedule(result.add(Note(f"crontab: the backup.run entry is already {state}")), line)
    for old in ours:
        result.add(Note(f"crontab: drop {old}"))
    if not remove:
        result.add(Note(f"crontab: add {line}"))
        log_dir = session.state_dir
        if not log_dir.is_dir():
            result.add(Run(("mkdir", "-p", str(log_dir)), why="the entry appends its log there"))
    table = "\n".join(wanted) + "\n" if wanted else ""
    others = f"{len(kept)} other {'line' if len(kept) == 1 else 'lines'} kept"
    stdin = Secret(table, f"the new crontab ({others})")  # other lines may hold credentials: never shown
    result.add(Run((crontab, "-"), stdin=stdin, why=f"{verb} the backup.run entry"))
    return Schedule(result, line)


def apply(session: Any, remove: bool) -> str:
    """Execute the plan, re-check, and say what happened in one line (``inv up``'s backup layer uses it)."""
    planned = plan(session, remove)
    session.executor.execute(planned.plan)
    if session.dry_run:
        return (
            f"backup.schedule: dry run, the {'crontab' if scheduler() == 'cron' else 'launchd agent'} was not changed"
        )
    if planned.plan.empty:
        return "backup.schedule: nothing to do"
    require_empty(plan(session, remove).plan)
    return "backup.schedule: entry removed; converged" if remove else "backup.schedule: installed; converged"


def installed() -> bool:
    """Whether the host's scheduler holds our job (``inv status``): our crontab line, or the agent loaded."""
    from invoke.context import Context

    if scheduler() == "launchd":
        probe = Run((require("launchctl"), "print", f"{launchd.domain(os.getuid())}/{launchd.LABEL}"), why="loaded?")
        return bool(Executor(Context()).observe(probe, check=False).exited == 0)
    return any(line.endswith(MARK) for line in current_crontab().splitlines())
