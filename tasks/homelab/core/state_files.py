"""The files the toolkit keeps between runs, and how each is read back.

Runs leave records behind (which snapshots were verified, which Applications a
day-2 task paused, the ports the sandbox's controllers listen on, the pinned
SSH host keys, caches of file hashes and version checks). Each is read through
``homelab.core.reading`` like the config and the secret files, so a file
replaced by a FIFO, a directory, a huge or a binary file is named instead of
blocking the run, filling memory or crashing it.

Two kinds, because a broken file means different things:

- a **record** decides what the run does (what to keep, what to resume, which
  key a host must present): a broken one stops the task with exit 1 and a
  message that names the file and what to do about it, never a guess;
- a **cache** only saves work: a broken one is ignored (the run recomputes it
  and writes it again), so it can never stop a backup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab.core import reading
from homelab.core.errors import HomelabError

MiB = 1 << 20


@dataclass(frozen=True)
class StateFile:
    """One kind of file the toolkit writes and reads back."""

    what: str  # how the message names it: "backup verification record"
    fix: str  # what the owner does when it is broken
    max_bytes: int = 16 * MiB
    cache: bool = False  # True: a broken file is ignored and rebuilt


class StateFileError(HomelabError):
    """A record the toolkit wrote cannot be read back; the message names the file and the fix."""


VERIFIED = StateFile(
    "backup verification record",
    "it lists the snapshots `inv backup.verify` restored; move it away and run `inv backup.verify` "
    "(retention keeps every snapshot it cannot prove was verified)",
)
ARGOCD_PAUSE = StateFile(
    "record of the Argo CD Applications a stopped run paused",
    "the Applications it paused cannot be named from it: run `inv gitops.apply` (the root Application's "
    "automated sync comes back from the tree and restores the others from Git), then delete this file",
    max_bytes=1 * MiB,
)
REBUILD = StateFile(
    "record of an interrupted `inv up --restore`",
    "it names the snapshot being restored and the steps already done: move it away only if the target "
    "is to be rebuilt from scratch (inv down, then inv up --restore again)",
    max_bytes=1 * MiB,
)
KNOWN_HOSTS = StateFile(
    "pinned SSH host keys",
    "it holds the host key each node must present; restore it from a backup (`inv backup.restore` brings "
    "back the state dir), or move it away and pin the nodes' keys again with `inv vm.apply`",
    max_bytes=4 * MiB,
)
KUBECONFIG = StateFile(
    "kubeconfig",
    "fix the file by hand or move it away; the toolkit merges its context into it and keeps the others",
    max_bytes=16 * MiB,
)
HASH_CACHE = StateFile("cache of backup file hashes", "", cache=True)
VERSIONS_CACHE = StateFile("cache of passed version checks", "", cache=True)
SANDBOX_RECORD = StateFile("sandbox process record", "", max_bytes=1 * MiB, cache=True)


def read_text(path: Path, kind: StateFile) -> str | None:
    """The file's text; None when it does not exist (or, for a cache, cannot be read).

    A record that exists but is not a readable text file raises ``StateFileError``.
    """
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return reading.read_text(path, kind.what, kind.max_bytes)
    except reading.ReadProblem as problem:
        if kind.cache:
            return None
        raise broken(path, kind, problem.message) from None


def read_json(path: Path, kind: StateFile, shape: type = dict) -> Any:
    """The file's JSON value of type ``shape``; None when absent (or a cache that is broken)."""
    text = read_text(path, kind)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as err:
        if kind.cache:
            return None
        line = getattr(err, "lineno", None)
        where = f" (line {line})" if line else ""
        raise broken(path, kind, f"not valid JSON{where}: it was cut short or edited") from None
    if not isinstance(value, shape):
        if kind.cache:
            return None
        raise broken(path, kind, f"holds a JSON {type(value).__name__}, not the {shape.__name__} the toolkit writes")
    return value


def broken(path: Path, kind: StateFile, why: str) -> StateFileError:
    """The one message for a record that cannot be used: the file, what it is, why, and the fix."""
    return StateFileError(f"{path}: the {kind.what} cannot be read: {why}. {kind.fix}")
