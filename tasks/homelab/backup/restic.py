"""restic, driven with argv lists and JSON output, every call a ``Run`` action of the executor.

The repository password never reaches an argument list or a plan line: a file
reference is passed as RESTIC_PASSWORD_FILE (a path, not the value), any other
reference on restic's stdin. restic's variables inherited from the caller's
environment are blanked so they cannot point a call at another repository or
password. Calls that only read (listings, restores into scratch) are
observations and run under ``--dry-run`` too, without taking restic's lock;
calls that write the repository are printed instead. restic's own exit codes
are mapped to ours.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab.core import bounds
from homelab.core.errors import EXIT_KEY, CommandFailed, HomelabError, SecretError
from homelab.core.plan import Plan, Run
from homelab.core.secret_refs import REDACTOR, Secret, SecretLocation
from homelab.core.tools import require

RESTIC_WRONG_PASSWORD = 12
RESTIC_NO_REPOSITORY = 10
# restic reads these from the environment; each is set (or blanked) on every call.
RESTIC_VARIABLES = (
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
    "RESTIC_PASSWORD",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
    "RESTIC_KEY_HINT",
    "RESTIC_CACHE_DIR",
    "RESTIC_FROM_REPOSITORY",
    "RESTIC_FROM_REPOSITORY_FILE",
    "RESTIC_FROM_PASSWORD",
    "RESTIC_FROM_PASSWORD_FILE",
    "RESTIC_FROM_PASSWORD_COMMAND",
)


class ResticError(HomelabError):
    """restic failed; carries restic's exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.restic_code = code
        if code == RESTIC_WRONG_PASSWORD:
            self.exit_code = EXIT_KEY


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: str
    tags: tuple[str, ...]
    paths: tuple[str, ...]

    def tag_value(self, key: str) -> str | None:
        prefix = f"{key}:"
        return next((t[len(prefix) :] for t in self.tags if t.startswith(prefix)), None)


@dataclass(frozen=True)
class _Failed:
    """A finished call, as ``error`` reads it (the executor's ``CommandFailed`` keeps only code and message)."""

    exited: int
    stdout: str
    stderr: str


def restic_for(session: Any, source: str = "local") -> Restic:
    """The session's repository (``local``: backup.repository; ``offsite``: backup.offsite), through its executor."""
    if source != "local":
        from homelab.backup.offsite import chosen

        return chosen(session, source)
    return Restic(session.cfg.backup.repository, session.cfg.backup.password.location(), session.executor)


class Restic:
    """One repository, one password reference, one executor."""

    def __init__(
        self,
        repository: str,
        password: SecretLocation,
        executor: Any,
        credentials: dict[str, SecretLocation] | None = None,
        settings: dict[str, str] | None = None,
        key: str = "backup.repository",
        max_seconds: float | None = None,
    ) -> None:
        self.repository = repository
        self.password = password
        self.executor = executor
        self.binary = require("restic")
        self.credentials = credentials or {}  # backend variables (AWS_SECRET_ACCESS_KEY, ...), read at each call
        self.settings = settings or {}  # backend variables that are not secret (AWS_DEFAULT_REGION)
        self.key = key  # the config key that names this repository, for messages
        self.max_seconds = max_seconds  # a cap on every call's bound (an offsite server that stops answering)

    def env(self) -> tuple[tuple[str, str], ...]:
        """restic's variables for every call: the repository, the cache, and where the password is."""
        cache = os.environ.get("HOMELAB_RESTIC_CACHE", str(Path.home() / ".cache" / "restic"))
        wanted = {"RESTIC_REPOSITORY": self.repository, "RESTIC_CACHE_DIR": cache}
        if self.password.file:
            self.password.resolve()  # existence and 0600 are checked; the value stays in the file
            wanted["RESTIC_PASSWORD_FILE"] = str(Path(self.password.file).expanduser())
        for name, location in self.credentials.items():
            try:
                wanted[name] = location.resolve().reveal()  # registered with the redactor: plans show a mask
            except SecretError as err:
                raise SecretError(f"{self.key} credential {name}: {err}") from None
        wanted.update(self.settings)
        inherited = {name: "" for name in RESTIC_VARIABLES if name in os.environ}
        return tuple(sorted({**inherited, **wanted}.items()))

    def stdin(self) -> Secret | None:
        """The password on stdin when it is not a file (restic reads one line per prompt)."""
        if self.password.file:
            return None
        value = self.password.resolve()
        return Secret(f"{value.reveal()}\n" * 2, value.source)  # ``init`` asks twice

    def action(
        self,
        *args: str,
        why: str = "",
        cwd: Path | None = None,
        timeout: float | None = None,
        env: tuple[tuple[str, str], ...] = (),
    ) -> Run:
        """The ``Run`` for one restic call (checks the password reference, never reads it into the argv)."""
        try:
            own, stdin = self.env(), self.stdin()
        except SecretError as err:
            raise SecretError(f"restic repository password: {err}") from None
        return Run(
            (self.binary, *args),
            why=why,
            stdin=stdin,
            env=tuple(sorted({**dict(own), **dict(env)}.items())),
            cwd=str(cwd) if cwd else None,
            timeout=min(timeout or bounds.restic(args), self.max_seconds or float("inf")),
        )

    def observe(self, *args: str, check: bool = True) -> Any:
        """A read-only call: runs under ``--dry-run`` too, and takes no lock in the repository."""
        done = self.executor.observe(self.action("--no-lock", *args), check=False)
        if check and done.exited != 0:
            raise self.error(args[0], done)
        return done

    def require_writable(self) -> None:
        """Refuse a local repository on a read-only filesystem at once.

        restic would try to write its lock there and retry for 15 minutes
        (restic/restic#4784) before failing, holding the run's own lock meanwhile.
        """
        if not self.repository.startswith(("/", "~", "local:")):
            return
        path = Path(self.repository.removeprefix("local:")).expanduser()
        present = [p for p in (path / "locks", path) if p.exists()]
        if present and not os.access(present[0], os.W_OK):
            raise ResticError(
                f"restic: the repository at {path} is read-only here ({present[0]} cannot be written): "
                "remount it read-write or point backup.repository at a writable one",
                1,
            )

    def run(
        self,
        *args: str,
        why: str = "",
        cwd: Path | None = None,
        check: bool = True,
        env: tuple[tuple[str, str], ...] = (),
        timeout: float | None = None,
    ) -> Any:
        """A call that writes the repository: under ``--dry-run`` it is printed, not run."""
        if not self.executor.dry_run:
            self.require_writable()
        done = self.executor.run(self.action(*args, why=why, cwd=cwd, env=env, timeout=timeout), check=False)
        if check and done.exited != 0:
            raise self.error(args[0], done)
        return done

    def error(self, verb: str, done: Any) -> ResticError:
        stdout, stderr = done.stdout or "", done.stderr or ""
        lines = (stderr + "\n" + stdout).strip().splitlines()
        damage = [
            line.strip()[:240]
            for line in lines
            if line.strip().startswith(("pack ", "error", "Load(", "snapshot ")) or "verification failed" in line
        ]
        plain = [line for line in stderr.strip().splitlines() if not line.startswith("{")]
        last = plain[-1] if plain else (lines[-1] if lines else "")
        detail = REDACTOR.redact(" | ".join(damage[:3]) if damage else last)
        if done.exited == RESTIC_WRONG_PASSWORD:
            return ResticError(
                f"restic: wrong password for {self.repository} (looked in {self.password.describe()})", done.exited
            )
        if done.exited == RESTIC_NO_REPOSITORY:
            return ResticError(
                f"restic: no repository at {REDACTOR.redact(self.repository)} ({self.key}); "
                "run inv backup.run once to create it",
                done.exited,
            )
        return ResticError(f"restic {verb} failed (exit {done.exited}): {detail}", done.exited)

    def exists(self) -> bool:
        """Whether the repository has been created (a read of its config file)."""
        done = self.observe("cat", "config", check=False)
        if done.exited == 0:
            return True
        if done.exited == RESTIC_NO_REPOSITORY:
            return False
        raise self.error("cat", done)

    def init_action(self) -> Run:
        return self.action("init", why="create the repository")

    def backup_args(self, tags: list[str], host: str) -> tuple[str, ...]:
        """``backup`` of the working directory's contents.

        Files are matched to the previous snapshot by path, size and mtime only:
        the staging copy has a new inode and ctime every run.
        """
        tagging = [a for t in tags for a in ("--tag", t)]
        return ("backup", "--json", "--host", host, "--ignore-inode", "--ignore-ctime", *tagging, ".")

    def backup_creating(self, directory: Path, tags: list[str], host: str) -> str:
        """``backup``, creating the repository first if it does not exist yet; the new snapshot id."""
        args = self.backup_args(tags, host)
        done = self.run(*args, why="store the staged run as one snapshot", cwd=directory, check=False)
        if done.exited == RESTIC_NO_REPOSITORY:
            self.run("init", why="create the repository")
            done = self.run(*args, why="store the staged run as one snapshot", cwd=directory, check=False)
        if done.exited != 0:
            raise self.error("backup", done)
        for line in reversed(done.stdout.splitlines()):
            item = json.loads(line)
            if item.get("message_type") == "summary":
                return str(item["snapshot_id"])
        raise ResticError("restic backup printed no summary", 1)

    def snapshots(self, tag: str = "homelab") -> list[Snapshot]:
        done = self.observe("snapshots", "--json", "--tag", tag)
        items: list[dict[str, Any]] = json.loads(done.stdout or "[]") or []
        return sorted(
            (
                Snapshot(
                    i["short_id"] if "short_id" in i else i["id"][:8],
                    i["time"],
                    tuple(i.get("tags") or ()),
                    tuple(i.get("paths") or ()),
                )
                for i in items
            ),
            key=lambda s: s.time,
        )

    def unlock_action(self) -> Run:
        """Remove only stale locks (dead processes on this host, or older than 30 minutes)."""
        return self.action("unlock", why="remove stale locks only")

    def check(self, read_percent: int) -> None:
        self.run("unlock", why="remove stale locks only", check=False)
        self.run("check", f"--read-data-subset={read_percent}%", why="verify the repository")

    def restore_args(self, snapshot: str, target: Path, include: list[str] | None = None) -> tuple[str, ...]:
        args = ["restore", snapshot, "--target", str(target)]
        for pattern in include or []:
            args += ["--include", pattern]
        return tuple(args)

    def restore_into_scratch(self, snapshot: str, scratch: Path, include: list[str] | None = None) -> None:
        """Restore into a private scratch folder: a read of the repository, so it runs under ``--dry-run``."""
        self.observe(*self.restore_args(snapshot, scratch, include))

    def execute(self, plan: Plan) -> None:
        """Run a plan of restic calls through the executor, with restic's exit codes mapped to ours."""
        try:
            self.executor.execute(plan)
        except CommandFailed as err:
            raise self.error(plan.title, _Failed(err.code, "", str(err))) from None

    def forget_actions(self, snapshot_ids: list[str]) -> list[Run]:
        if not snapshot_ids:
            return []
        forget = self.action("forget", "--prune", *snapshot_ids, why=f"remove {len(snapshot_ids)} snapshot(s)")
        return [self.unlock_action(), forget]
