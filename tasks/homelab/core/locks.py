"""Locks between runs of the toolkit, and the lock files a killed git leaves behind.

A lock is an ``flock`` on a file under the state directory: the kernel drops it when
the process ends, however it ends (exit, crash, SIGKILL), so a killed run never
leaves a lock that blocks the next one. While a run holds the lock of a git working
copy only the toolkit uses, no git of ours runs there, so any ``*.lock`` file git
left inside it (``index.lock`` after a kill mid-commit) is stale and safe to remove.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from homelab.core.errors import EXIT_LOCKED, HomelabError


class Locked(HomelabError):
    """Another run holds the lock: this one did nothing."""

    exit_code = EXIT_LOCKED


def acquire(path: Path, holder: str) -> int:
    """Lock ``path`` (created 0600) and record this pid in it; returns the descriptor, whose closing releases it.

    ``holder`` says what a run holding it does, for the message when another run holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise Locked(f"another {holder} holds {path} (pid {pid}); wait for it to end, then run this again") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def exclusive(path: Path, holder: str) -> Iterator[None]:
    """Hold ``path`` locked for the block; raise ``Locked`` at once if another run holds it."""
    fd = acquire(path, holder)
    try:
        yield
    finally:
        os.close(fd)


def stale_git_locks(*repositories: Path) -> list[Path]:
    """The ``*.lock`` files git left in these repositories (working copies or bare), sorted.

    Only stale while the caller holds the lock that keeps the toolkit's other runs out.
    """
    found: list[Path] = []
    for repository in repositories:
        git_dir = repository / ".git" if (repository / ".git").is_dir() else repository
        if (git_dir / "HEAD").is_file():
            found += [path for path in git_dir.rglob("*.lock") if path.is_file()]
    return sorted(found)
