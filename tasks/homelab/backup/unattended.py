"""Whether the secrets a scheduled backup.run reads can be read where the scheduler starts it.

cron and launchd start a job with their own small environment, never the
installer's shell: an ``env:`` reference that works in a terminal is unset there,
so the run fails (the restic password) or fails without telling anyone (the
Telegram bot token, read only to report). ``backup.schedule`` therefore refuses
to install an entry that cannot work, naming the key and the fix. A ``file:``
reference is read now, as the user the job runs as, with the same checks the run
applies (exists, not readable by others); a ``keychain:`` item exists only on
macOS, where launchd runs the job in the user's login session and can read it.

A cloud repository's keys are not in the config at all: restic reads them from
its environment. Its s3 backend falls back to ``~/.aws/credentials`` when
``AWS_ACCESS_KEY_ID`` is unset (as in a scheduled job), so that file must exist;
its b2 backend reads ``B2_ACCOUNT_ID``/``B2_ACCOUNT_KEY`` and nothing else, so a
scheduled run could never open it (B2's S3-compatible endpoint can).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homelab.core.errors import ConfigError, Problem, SecretError


def needed(cfg: Any) -> list[tuple[str, Any]]:
    """(config key, secret reference) for every secret backup.run reads.

    The restic password opens the repository; the bot token sends the report
    (on failure always, on success with ``backup.notify_on_success``). The
    dead-man URL is a plain config value, read with the config.
    """
    found = [
        ("backup.password", cfg.backup.password),
        ("monitoring.telegram.bot_token", cfg.monitoring.telegram.bot_token),
    ]
    offsite = getattr(cfg.backup, "offsite", None)
    if offsite is not None:  # every run copies offsite: its password and keys are read unattended too
        if offsite.password is not None:
            found.append(("backup.offsite.password", offsite.password))
        found += [(f"backup.offsite.credentials.{name}", ref) for name, ref in sorted(offsite.credentials.items())]
    return found


def repository_problems(repository: str, home: Path) -> list[Problem]:
    """Why a scheduled run could not open a cloud ``backup.repository`` with its own environment."""
    backend = repository.partition(":")[0]
    if backend == "s3" and not (home / ".aws" / "credentials").is_file():
        return [
            Problem(
                "backup.repository",
                f"restic's s3 backend reads AWS_ACCESS_KEY_ID, which a scheduled job never has, or "
                f"{home}/.aws/credentials, which does not exist; put the keys there (chmod 600)",
            )
        ]
    if backend == "b2":
        return [
            Problem(
                "backup.repository",
                "restic's b2 backend reads B2_ACCOUNT_ID and B2_ACCOUNT_KEY only from the environment, which a "
                "scheduled job never has; use B2's S3-compatible endpoint (s3:https://s3.<region>.backblazeb2.com/"
                "<bucket>) with the keys in ~/.aws/credentials",
            )
        ]
    return []


def problems(cfg: Any, scheduler: str, home: Path | None = None) -> list[Problem]:
    """One problem per secret the scheduled run could not read (and a cloud repository it could not open)."""
    fix = "use a file: reference (a file only you can read, chmod 600)"
    if scheduler == "launchd":
        fix += " or a keychain: item"
    found = []
    for key, ref in needed(cfg):
        if ref.env:
            found.append(
                Problem(key, f"env: {ref.env} is an environment variable {scheduler} never sets for the job; {fix}")
            )
            continue
        if ref.keychain and scheduler != "launchd":
            found.append(Problem(key, f"keychain: {ref.keychain} cannot be read by cron; {fix}"))
            continue
        try:
            ref.location().resolve()
        except SecretError as err:
            found.append(Problem(key, f"the scheduled run could not read it: {err}; {fix}"))
    return found + repository_problems(cfg.backup.repository, home or Path.home())


def check(cfg: Any, scheduler: str) -> None:
    """Raise ``ConfigError`` (exit 2) naming every secret the scheduled run could not read."""
    found = problems(cfg, scheduler)
    if found:
        raise ConfigError(found)
