"""Locks between runs, and which git lock files count as left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from homelab.core import locks
from homelab.core.errors import EXIT_LOCKED


def git_init(path: Path, *extra: str) -> None:
    subprocess.run(["git", "init", "--quiet", *extra, str(path)], check=True)


def test_stale_git_locks_are_found_in_working_copies_and_bare_repositories(tmp_path: Path) -> None:
    work, bare, plain = tmp_path / "work", tmp_path / "bare.git", tmp_path / "plain"
    git_init(work)
    git_init(bare, "--bare")
    plain.mkdir()
    left = [work / ".git" / "index.lock", bare / "refs" / "heads" / "main.lock", bare / "packed-refs.lock"]
    for path in left:
        path.write_text("")
    (plain / "index.lock").write_text("")  # not a repository: never touched
    (work / "notes.lock").write_text("")  # a file of the working tree, not git's
    assert locks.stale_git_locks(work, bare, plain, tmp_path / "missing") == sorted(left)


def test_a_second_holder_is_refused_naming_the_first_and_the_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "state" / "publish.lock"
    with locks.exclusive(path, "inv run publishing"):
        with pytest.raises(locks.Locked) as refused:
            locks.acquire(path, "inv run publishing")
        assert f"another inv run publishing holds {path} (pid " in str(refused.value)
        assert refused.value.exit_code == EXIT_LOCKED
    assert path.stat().st_mode & 0o777 == 0o600
    os.close(locks.acquire(path, "inv run publishing"))  # released when the block ended
