"""Offsite copies against a real S3 server (versitygw on 127.0.0.1), faults included.

Each run copies what the offsite repository lacks and checks it there; a copy that
fails (a wrong key, a server that is down or gone quiet, a bucket that vanished)
makes the run partial (exit 3) with one line naming the offsite repository and an
alert, keeps the local snapshot, and the next run copies everything still missing.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import BackupEnv
from s3_server import S3Server

pytestmark = pytest.mark.integration


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "s3").start()
    yield server
    server.stop()


def with_offsite(bk: BackupEnv, s3: S3Server, **extra: object) -> BackupEnv:
    """``bk`` backing up its config only (fast) with an offsite copy in a bucket of ``s3``."""
    bk.data["backup"]["components"] = ["config"]
    bk.data["backup"]["offsite"] = {
        "repository": s3.repository("offsite"),
        "credentials": s3.credential_files(bk.tmp),
        "copy_timeout": 15,
        **extra,
    }
    bk.save()
    return bk


def offsite_snapshots(bk: BackupEnv, s3: S3Server) -> list[dict]:
    import os
    import subprocess

    from homelab.core.tools import require

    env = {
        **os.environ,
        "RESTIC_REPOSITORY": s3.repository("offsite"),
        "RESTIC_PASSWORD_FILE": str(bk.tmp / "pw"),
        "AWS_ACCESS_KEY_ID": s3.access,
        "AWS_SECRET_ACCESS_KEY": s3.secret,
    }
    done = subprocess.run([require("restic"), "snapshots", "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "[]") or []


def local_ids(bk: BackupEnv) -> set[str]:
    return {s["id"] for s in json.loads(bk.restic("snapshots", "--json").stdout or "[]") or []}


def test_every_run_copies_offsite_and_the_offsite_copy_alone_restores(bk: BackupEnv, s3: S3Server) -> None:
    with_offsite(bk, s3)
    for copied in (1, 1):
        result = bk.cli("backup.run")
        assert result.code == 0, result.output
        assert f"offsite s3:{s3.endpoint}/offsite/homelab: {copied} snapshot(s) copied" in result.stdout
    assert {s["original"] for s in offsite_snapshots(bk, s3)} == local_ids(bk)
    assert s3.secret not in result.output and s3.access not in result.output

    listed = bk.cli("backup.list", "--from", "offsite")
    assert listed.code == 0 and listed.stdout.count("complete") == 2, listed.output
    verified = bk.cli("backup.verify")
    assert verified.code == 0, verified.output
    assert "(offsite) verified" in verified.stdout and "ok    offsite: " in verified.stdout

    # The Mac is gone: no local repository, no state. The offsite copy alone brings the config back.
    shutil.rmtree(bk.repo)
    shutil.rmtree(bk.state)
    target = bk.tmp / "restored"
    restored = bk.cli("backup.restore", "--from", "offsite", "--to", str(target), "--yes")
    assert restored.code == 0, restored.output
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["status"] == "complete" and any(f.startswith("config/") for f in manifest["files"])
    assert bk.cli("backup.restore", "--to", str(bk.tmp / "x"), "--yes").code != 0, "no local repository left"


def test_a_wrong_key_makes_the_run_partial_and_the_next_run_copies_what_is_missing(bk: BackupEnv, s3: S3Server) -> None:
    with_offsite(bk, s3)
    bk.data["backup"]["offsite"]["credentials"] = s3.credential_files(bk.tmp, secret="not-the-secret")
    bk.save()
    failed = bk.cli("backup.run")
    assert failed.code == 3, failed.output
    assert "FAILED: offsite: " in failed.stdout, failed.stdout
    assert "the next run copies whatever is missing" in failed.stdout
    assert "not-the-secret" not in failed.output
    assert len(local_ids(bk)) == 1, "the local snapshot is kept"
    assert any("offsite" in m for m in bk.receiver.messages()), "the owner is told"
    assert bk.receiver.pings()[-1] == "/ping/fail"

    bk.data["backup"]["offsite"]["credentials"] = s3.credential_files(bk.tmp)
    bk.save()
    fixed = bk.cli("backup.run")
    assert fixed.code == 0, fixed.output
    assert "2 snapshot(s) copied, all 2 present" in fixed.stdout
    assert {s["original"] for s in offsite_snapshots(bk, s3)} == local_ids(bk)


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_a_server_that_is_down_or_stops_answering_is_bounded_and_the_next_run_completes(
    bk: BackupEnv, s3: S3Server, fault: str
) -> None:
    """restic retries a backend for 15 minutes; the offsite bound (copy_timeout) ends the wait with its name."""
    with_offsite(bk, s3, copy_timeout=10)
    assert bk.cli("backup.run").code == 0
    assert s3.process is not None
    if fault == "stopped":
        s3.stop()
    else:
        s3.process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing: a provider gone quiet
    started = time.monotonic()
    failed = bk.cli("backup.run")
    assert failed.code == 3, failed.output
    assert time.monotonic() - started < 120
    assert "FAILED: offsite: " in failed.stdout and "bound of 10 s" in failed.stdout, failed.stdout
    assert len(local_ids(bk)) == 2

    if fault == "stopped":
        s3.start()
    else:
        s3.process.send_signal(signal.SIGCONT)
    again = bk.cli("backup.run")
    assert again.code == 0, again.output
    assert "all 3 present" in again.stdout
    assert {s["original"] for s in offsite_snapshots(bk, s3)} == local_ids(bk)


def test_a_vanished_bucket_is_made_again_and_filled_from_the_local_history(bk: BackupEnv, s3: S3Server) -> None:
    with_offsite(bk, s3)
    assert bk.cli("backup.run").code == 0
    shutil.rmtree(s3.root / "data" / "offsite")
    result = bk.cli("backup.run")
    assert result.code == 0, result.output
    assert "2 snapshot(s) copied, all 2 present" in result.stdout
    assert {s["original"] for s in offsite_snapshots(bk, s3)} == local_ids(bk)


def test_prune_removes_the_offsite_copies_of_what_it_removes(bk: BackupEnv, s3: S3Server) -> None:
    with_offsite(bk, s3)
    bk.data["backup"]["retention"] = {"daily": 1, "weekly": 0, "monthly": 0}
    bk.data["backup"]["keep_verified"] = 1
    bk.save()
    for _ in range(3):
        assert bk.cli("backup.run").code == 0
    assert bk.cli("backup.verify").code == 0
    pruned = bk.cli("backup.prune", "--yes")
    assert pruned.code == 0, pruned.output
    assert {s["original"] for s in offsite_snapshots(bk, s3)} == local_ids(bk)
    assert len(local_ids(bk)) < 3
