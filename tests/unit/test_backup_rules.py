"""Backup rules that need no repository: retention safety, manifest checks, secret scanning."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from homelab.backup import prune
from homelab.backup.restic import Snapshot
from homelab.backup.verify import check_manifest
from homelab.config.schema import Retention
from homelab.core.errors import HomelabError
from homelab.secrets.sealing import scan


def snap(i: int, day: str, status: str = "complete") -> Snapshot:
    return Snapshot(f"s{i:03d}", f"{day}T03:00:00.{i:09d}Z", ("homelab", f"status:{status}"), ("/x",))


def test_prune_refuses_an_empty_listing_and_a_listing_without_complete_runs() -> None:
    with pytest.raises(HomelabError, match="lists no snapshots"):
        prune.plan([], set(), Retention(), 3)
    with pytest.raises(HomelabError, match="no complete backup"):
        prune.plan([snap(1, "2026-11-01", "partial")], set(), Retention(), 3)


def test_the_last_verified_runs_survive_any_policy() -> None:
    snapshots = [snap(i, f"2026-10-{i + 1:02d}") for i in range(10)]
    verified = {"s002", "s005", "s007", "s009"}
    found = prune.plan(snapshots, verified, Retention(daily=0, weekly=0, monthly=0), 3)
    assert sorted(s.id for s in found.keep) == ["s005", "s007", "s009"]


def test_partial_runs_do_not_count_and_old_ones_go() -> None:
    snapshots = [snap(1, "2026-11-01"), snap(2, "2026-11-02", "partial"), snap(3, "2026-11-03", "partial")]
    found = prune.plan(snapshots, set(), Retention(daily=1, weekly=0, monthly=0), 1)
    assert [s.id for s in found.keep] == ["s001", "s003"]  # the newest partial is newer than any complete run
    assert [s.id for s in found.remove] == ["s002"]


def test_daily_buckets_keep_one_per_day() -> None:
    snapshots = [snap(1, "2026-11-01"), snap(2, "2026-11-01"), snap(3, "2026-11-02")]
    found = prune.plan(snapshots, set(), Retention(daily=2, weekly=0, monthly=0), 1)
    assert sorted(s.id for s in found.keep) == ["s002", "s003"]


def test_manifest_names_a_tampered_and_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    (tmp_path / "b.yaml").write_text("b: 2\n")
    import hashlib

    files = {n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.yaml", "b.yaml")}
    (tmp_path / "manifest.json").write_text(json.dumps({"files": files}))
    assert check_manifest(tmp_path)[1] == []
    (tmp_path / "a.yaml").write_text("a: 3\n")
    (tmp_path / "b.yaml").unlink()
    problems = check_manifest(tmp_path)[1]
    assert problems == [
        "a.yaml: content does not match its SHA-256 in the manifest",
        "b.yaml: listed in the manifest but missing",
    ]


def test_a_snapshot_without_manifest_is_not_a_backup(tmp_path: Path) -> None:
    assert check_manifest(tmp_path)[1] == ["manifest.json missing: this snapshot is not a complete backup"]


def test_secret_scan_catches_each_kind_of_key_material(tmp_path: Path) -> None:
    """Key material is generated here at run time; nothing token-shaped is tracked in this repository."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    pem = subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519"], capture_output=True, text=True).stdout
    age = subprocess.run(["age-keygen"], capture_output=True, text=True).stdout
    planted = {
        "key.pem": pem,
        "age.txt": age,
        "token.txt": "K10" + "ab" * 32 + "::server:" + "cd" * 16 + "\n",
        "bot.env": "BOT=" + "987654321" + ":" + "Xy" * 17 + "z\n",
        "secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {password: hunter2}\n",
        "config.txt": "value: my-configured-restic-password\n",
        "sealed.yaml": "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nspec: {encryptedData: {a: AgB}}\n",
    }
    for name, text in planted.items():
        (tmp_path / name).write_text(text)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    findings = scan(tmp_path, ["my-configured-restic-password"])
    assert any(f.startswith("key.pem: PEM private key") for f in findings), findings
    assert any(f.startswith("age.txt: age secret key") for f in findings), findings
    assert "token.txt: K3S token" in findings
    assert "bot.env: Telegram bot token" in findings
    assert any(f.startswith("secret.yaml: plaintext Kubernetes Secret") for f in findings)
    assert "config.txt: contains the value of a configured secret" in findings
    assert not [f for f in findings if f.startswith("sealed.yaml")]
