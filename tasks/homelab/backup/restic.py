"""restic, driven with argv lists and JSON output.

The repository password never reaches an argument list: a file reference is
passed as RESTIC_PASSWORD_FILE, any other reference as RESTIC_PASSWORD in the
child's environment only. restic's own exit codes are mapped to ours.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab.core.errors import EXIT_KEY, HomelabError, SecretError
from homelab.core.secret_refs import REDACTOR, SecretLocation
from homelab.core.tools import require

RESTIC_WRONG_PASSWORD = 12
RESTIC_NO_REPOSITORY = 10


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


class Restic:
    """One repository, one password reference."""

    def __init__(self, repository: str, password: SecretLocation) -> None:
        self.repository = repository
        self.password = password
        self.binary = require("restic")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env["RESTIC_REPOSITORY"] = self.repository
        env["RESTIC_CACHE_DIR"] = env.get("HOMELAB_RESTIC_CACHE", str(Path.home() / ".cache" / "restic"))
        if self.password.file:
            path = Path(self.password.file).expanduser()
            self.password.resolve()  # existence and 0600 are checked; the value stays in the file
            env["RESTIC_PASSWORD_FILE"] = str(path)
        else:
            env["RESTIC_PASSWORD"] = self.password.resolve().reveal()
        return env

    def run(self, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        try:
            env = self.env()
        except SecretError as err:
            raise SecretError(f"restic repository password: {err}") from None
        done = subprocess.run(
            [self.binary, *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and done.returncode != 0:
            raise self.error(args[0], done)
        return done

    def error(self, verb: str, done: subprocess.CompletedProcess[str]) -> ResticError:
        lines = (done.stderr + "\n" + done.stdout).strip().splitlines()
        damage = [
            line.strip()[:240]
            for line in lines
            if line.strip().startswith(("pack ", "error", "Load(", "snapshot ")) or "verification failed" in line
        ]
        plain = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
        last = plain[-1] if plain else (lines[-1] if lines else "")
        detail = REDACTOR.redact(" | ".join(damage[:3]) if damage else last)
        if done.returncode == RESTIC_WRONG_PASSWORD:
            return ResticError(
                f"restic: wrong password for {self.repository} (looked in {self.password.describe()})", done.returncode
            )
        if done.returncode == RESTIC_NO_REPOSITORY:
            return ResticError(
                f"restic: no repository at {self.repository}; run inv backup.run once to create it", done.returncode
            )
        return ResticError(f"restic {verb} failed (exit {done.returncode}): {detail}", done.returncode)

    def init(self) -> None:
        self.run("init")

    def backup_creating(self, directory: Path, tags: list[str], host: str) -> str:
        """``backup``, creating the repository first if it does not exist yet."""
        try:
            return self.backup(directory, tags, host)
        except ResticError as err:
            if err.restic_code != RESTIC_NO_REPOSITORY:
                raise
        self.init()
        return self.backup(directory, tags, host)

    def backup(self, directory: Path, tags: list[str], host: str) -> str:
        """Back up ``directory``'s contents; returns the new snapshot id.

        Files are matched to the previous snapshot by path, size and mtime only:
        the staging copy has a new inode and ctime every run.
        """
        args = [
            "backup",
            "--json",
            "--host",
            host,
            "--ignore-inode",
            "--ignore-ctime",
            *[a for t in tags for a in ("--tag", t)],
            ".",
        ]
        done = subprocess.run(
            [self.binary, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            cwd=directory,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise self.error("backup", done)
        for line in reversed(done.stdout.splitlines()):
            item = json.loads(line)
            if item.get("message_type") == "summary":
                return str(item["snapshot_id"])
        raise ResticError("restic backup printed no summary", 1)

    def snapshots(self, tag: str = "homelab") -> list[Snapshot]:
        done = self.run("snapshots", "--json", "--tag", tag)
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

    def unlock_stale(self) -> None:
        """Remove only stale locks (dead processes on this host, or older than 30 minutes)."""
        self.run("unlock", check=False)

    def check(self, read_percent: int) -> None:
        self.unlock_stale()
        self.run("check", f"--read-data-subset={read_percent}%")

    def restore(self, snapshot: str, target: Path, include: list[str] | None = None) -> None:
        args = ["restore", snapshot, "--target", str(target)]
        for pattern in include or []:
            args += ["--include", pattern]
        self.run(*args)

    def forget(self, snapshot_ids: list[str]) -> None:
        if snapshot_ids:
            self.unlock_stale()
            self.run("forget", "--prune", *snapshot_ids)
