"""Whether the secrets a scheduled backup.run reads can be read where the scheduler starts it.

cron and launchd start a job with their own small environment, never the
installer's shell: an ``env:`` reference that works in a terminal is unset there,
so the run fails (the restic password) or fails without telling anyone (the
Telegram bot token, read only to report). ``backup.schedule`` therefore refuses
to install an entry that cannot work, naming the key and the fix. A ``file:``
reference is read now, as the user the job runs as, with the same checks the run
applies (exists, not readable by others); a ``keychain:`` item exists only on
macOS, where launchd runs the job in the user's login session and can read it.
"""

from __future__ import annotations

from typing import Any

from homelab.core.errors import ConfigError, Problem, SecretError


def needed(cfg: Any) -> list[tuple[str, Any]]:
    """(config key, secret reference) for every secret backup.run reads.

    The restic password opens the repository; the bot token sends the report
    (on failure always, on success with ``backup.notify_on_success``). The
    dead-man URL is a plain config value, read with the config.
    """
    return [
        ("backup.password", cfg.backup.password),
        ("monitoring.telegram.bot_token", cfg.monitoring.telegram.bot_token),
    ]


def problems(cfg: Any, scheduler: str) -> list[Problem]:
    """One problem per needed secret the scheduled run could not read, with the fix."""
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
    return found


def check(cfg: Any, scheduler: str) -> None:
    """Raise ``ConfigError`` (exit 2) naming every secret the scheduled run could not read."""
    found = problems(cfg, scheduler)
    if found:
        raise ConfigError(found)
