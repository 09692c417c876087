"""scripts/get-binaries.sh: each build's output goes to its own log; only a failing build's tail is shown.

A fake ``go`` stands in for the toolchain (no module is fetched, nothing is built) and the
cache is a temp dir, so the developer's own cache is never touched.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import REPO

FAILING_GO = """#!/bin/sh
i=0; while [ $i -lt 40 ]; do echo "go: downloading example.com/mod$i v1.0.$i"; i=$((i+1)); done
echo "compile: undefined: Frobnicate" >&2
exit 2
"""
PASSING_GO = """#!/bin/sh
echo "go: downloading example.com/ok v1.0.0"
echo "a compiler note on stderr" >&2
"""


def get_restic(tmp_path: Path, go: str) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "go").write_text(go)
    (fake / "go").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "HOMELAB_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "get-binaries.sh"), "restic"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def the_log(tmp_path: Path) -> Path:
    [log] = (tmp_path / "cache" / "logs").glob("restic-*.log")
    return log


def test_a_passing_build_shows_its_steps_and_none_of_its_output(tmp_path: Path) -> None:
    done = get_restic(tmp_path, PASSING_GO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "cache" / "bin")
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and "building from Go modules" in lines[0], lines
    assert re.fullmatch(r"\[get-binaries\] restic \S+: built in \d+s", lines[1]), lines
    assert "downloading" not in done.stderr and "compiler note" not in done.stderr
    assert the_log(tmp_path).read_text() == "go: downloading example.com/ok v1.0.0\na compiler note on stderr\n"


def test_a_failing_build_shows_the_tail_of_its_log_and_exits_non_zero(tmp_path: Path) -> None:
    done = get_restic(tmp_path, FAILING_GO)
    assert done.returncode != 0
    log = the_log(tmp_path)
    assert re.search(rf"build failed \(exit 2\) after \d+s; the last 25 lines of {re.escape(str(log))}:", done.stderr)
    shown = [line for line in done.stderr.splitlines() if line.startswith("    | ")]
    assert len(shown) == 25 and shown[-1] == "    | compile: undefined: Frobnicate"
    assert "mod15 " not in done.stderr and "mod16 " in done.stderr  # the head stays in the log only
    assert len(log.read_text().splitlines()) == 41
    assert not list((tmp_path / "cache" / "stamps").glob("restic-*")), "a failed build is not stamped"
    assert done.stdout == ""


def test_a_built_component_is_cached_the_second_time(tmp_path: Path) -> None:
    assert get_restic(tmp_path, PASSING_GO).returncode == 0
    fake = tmp_path / "fake-bin"
    fake.rename(tmp_path / "first")
    again = get_restic(tmp_path, FAILING_GO)  # go is not run again: a failing one would show
    assert again.returncode == 0 and again.stderr.strip().endswith(": cached"), again.stderr


def test_a_long_build_says_it_is_still_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMELAB_BUILD_HEARTBEAT", "1")
    done = get_restic(tmp_path, "#!/bin/sh\nsleep 3\n")
    assert done.returncode == 0, done.stderr
    assert ": still building (" in done.stderr, done.stderr
