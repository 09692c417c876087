"""The toolkit's small exception tree and its documented exit codes.

Library code raises these; the task decorator turns them into invoke's ``Exit``
with the code below, so every task and every cron caller sees the same codes.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 11
EXIT_KEY = 12
EXIT_SOURCES_BROKEN = 13
EXIT_OFFLINE = 14
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report a job a signal ended

# What each code means to whoever ran the task (the manual's exit-code page is generated from this).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: 'success (including "nothing to do")',
    EXIT_FAILURE: "a step failed (command, SSH, API server, host key)",
    EXIT_USAGE: "usage or config error; nothing was executed (also a refused K3S downgrade or skipped minor)",
    EXIT_PARTIAL: "partial (backups): the run stored what it could and names what is missing",
    EXIT_LOCKED: "locked: another run holds the lock (`backup.run`; `inv up` and `gitops.publish` while another "
    "run publishes from the same state directory), named with its pid",
    EXIT_KEY: "key or decrypt error: a secret could not be resolved, a wrong restic password, or backed-up Sealed "
    "Secrets keys that do not decrypt the repository's SealedSecrets",
    EXIT_SOURCES_BROKEN: "an upstream source is broken (`inv versions.check`, `inv up`): a chart, image, K3S release "
    "or manifest moved or lacks its pinned version; one message each, with the key to change",
    EXIT_OFFLINE: "upstream sources could not be checked (no answer: DNS, refused, timeout); `inv up --offline` "
    "goes on",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); re-run the same command to continue",
    EXIT_TERMINATED: "stopped by SIGTERM (a scheduler or service manager); re-run the same command to continue",
}


class HomelabError(Exception):
    """Base of every error the toolkit reports to its user."""

    exit_code = EXIT_FAILURE


class UsageError(HomelabError):
    """A bad flag or argument: the user has to change the command line."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the config, located by its key path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(HomelabError):
    """The config is invalid; carries one problem per bad key."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"config error: {p}" for p in problems)
        super().__init__(lines)


class ToolMissing(HomelabError):
    """An external program the task needs is not installed."""

    def __init__(self, tool: str, how_to_install: str) -> None:
        super().__init__(f"{tool} is not installed or not on PATH; {how_to_install}")
        self.tool = tool


class CommandFailed(HomelabError):
    """An external command exited non-zero."""

    def __init__(self, where: str, argv_display: str, code: int, stderr: str, hint: str = "") -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        advice = f". {hint}" if hint else ""
        super().__init__(f"{where}: `{argv_display}` failed with exit code {code}: {detail}{advice}")
        self.code = code


class HostKeyError(HomelabError):
    """SSH host key unknown or changed: refuse before running anything."""


class UnreachableHost(HomelabError):
    """A node could not be reached over SSH."""


class SecretError(HomelabError):
    """A secret reference could not be resolved (never carries the value)."""

    exit_code = EXIT_KEY


class SourcesBroken(HomelabError):
    """An upstream source answered, and the answer says it moved or lacks the pinned version."""

    exit_code = EXIT_SOURCES_BROKEN


class SourcesUnreachable(HomelabError):
    """Upstream sources could not be asked (DNS, refused, timeout): they could not be checked."""

    exit_code = EXIT_OFFLINE
