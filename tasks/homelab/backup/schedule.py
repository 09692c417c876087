"""The cron entry (or macOS launchd job) that runs backup.run unattended.

Cron starts jobs with almost no environment, so the entry names the working
directory, PATH (with the toolkit's binary cache) and the config explicitly,
and appends to a log in the state directory.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from homelab.core.errors import HomelabError
from homelab.core.paths import project_root
from homelab.core.tools import cached_bin_dir

MARK = "# homelab backup.run"


def cron_line(session: Any) -> str:
    homelab = Path(sys.executable).parent / "homelab"
    path = ":".join([str(Path(sys.executable).parent), str(cached_bin_dir()), "/usr/local/bin", "/usr/bin", "/bin"])
    config = session.loaded.files[0]
    log = session.state_dir / "backup.log"
    command = (
        f"cd {shlex.quote(str(project_root()))} && PATH={shlex.quote(path)} "
        f"HOMELAB_CONFIG={shlex.quote(str(config))} {shlex.quote(str(homelab))} backup.run "
        f">> {shlex.quote(str(log))} 2>&1"
    )
    return f"{session.cfg.backup.schedule} {command} {MARK}"


def current_crontab() -> str:
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def apply(session: Any, remove: bool, dry_run: bool) -> str:
    from homelab.core.tools import require

    line = cron_line(session)
    if dry_run:
        return f"plan: {'remove' if remove else 'install'} crontab entry:\n  {line}"
    require("crontab")
    session.state_dir.mkdir(parents=True, exist_ok=True)  # the entry appends its log there
    existing = [entry for entry in current_crontab().splitlines() if not entry.endswith(MARK)]
    wanted = existing if remove else [*existing, line]
    before = current_crontab()
    text = "\n".join(wanted) + ("\n" if wanted else "")
    if text == before:
        return "backup.schedule: nothing to do"
    done = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True)
    if done.returncode != 0:
        raise HomelabError(f"crontab refused the entry: {done.stderr.strip()}")
    return "backup.schedule: entry removed" if remove else f"backup.schedule: installed\n  {line}"
