"""Retention, bucket by bucket: the newest complete run of each day, ISO week and month; verified runs kept;
partial runs never counted; refusals when nothing restorable would be left. Plus the snapshot and manifest rules
a restore relies on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from homelab.backup import prune
from homelab.backup.restic import Snapshot
from homelab.backup.verify import check_manifest, choose, datastore_kind
from homelab.config.schema import Retention
from homelab.core.errors import HomelabError


def snap(name: str, when: str, status: str = "complete") -> Snapshot:
    return Snapshot(name, f"{when}.000000000Z", ("homelab", f"status:{status}", f"run:{name}"), ("/x",))


def ids(snapshots: list[Snapshot]) -> list[str]:
    return sorted(s.id for s in snapshots)


def only(daily: int = 0, weekly: int = 0, monthly: int = 0) -> Retention:
    return Retention(daily=daily, weekly=weekly, monthly=monthly)


DAYS = [snap(f"d{i:02d}", f"2026-03-{i:02d}T03:00:00") for i in range(1, 32)]  # March 2026: Sunday the 1st


def test_daily_keeps_the_newest_run_of_each_of_the_newest_days() -> None:
    runs = [snap("a1", "2026-03-01T01:00:00"), snap("a2", "2026-03-01T23:00:00"), snap("b", "2026-03-02T03:00:00")]
    found = prune.plan(runs, set(), only(daily=2), keep_verified=1)
    assert ids(found.keep) == ["a2", "b"] and ids(found.remove) == ["a1"]
    assert ids(prune.plan(runs, set(), only(daily=1), keep_verified=1).keep) == ["b"]


def test_weekly_buckets_are_iso_weeks() -> None:
    found = prune.plan(DAYS, set(), only(weekly=2), keep_verified=1)
    # ISO weeks of March 2026: the 29th is a Sunday (week 13), the 30th and 31st open week 14.
    assert ids(found.keep) == ["d29", "d31"]
    assert len(found.remove) == 29


def test_the_same_week_number_in_another_year_is_another_week() -> None:
    runs = [snap("w10-2025", "2025-03-05T03:00:00"), snap("w10-2026", "2026-03-04T03:00:00")]
    assert ids(prune.plan(runs, set(), only(weekly=2), keep_verified=1).keep) == ["w10-2025", "w10-2026"]


def test_monthly_buckets_keep_the_newest_run_of_each_month() -> None:
    runs = [*DAYS, snap("feb", "2026-02-27T03:00:00"), snap("jan", "2026-01-15T03:00:00")]
    assert ids(prune.plan(runs, set(), only(monthly=2), keep_verified=1).keep) == ["d31", "feb"]
    assert ids(prune.plan(runs, set(), only(monthly=3), keep_verified=1).keep) == ["d31", "feb", "jan"]


def test_buckets_add_up_and_a_run_in_several_buckets_is_kept_once() -> None:
    found = prune.plan(DAYS, set(), only(daily=3, weekly=2, monthly=1), keep_verified=1)
    assert ids(found.keep) == ["d29", "d30", "d31"]
    assert len(found.keep) + len(found.remove) == len(DAYS)


def test_the_newest_verified_runs_are_kept_whatever_the_policy() -> None:
    verified = {"d02", "d10", "d20", "d30"}
    found = prune.plan(DAYS, verified, only(daily=1), keep_verified=2)
    assert ids(found.keep) == ["d20", "d30", "d31"]
    everything = prune.plan(DAYS, verified, only(), keep_verified=4)
    assert ids(everything.keep) == ["d02", "d10", "d20", "d30"]


def test_a_partial_run_is_kept_only_while_it_is_the_newest() -> None:
    newest_partial = [snap("ok", "2026-03-01T03:00:00"), snap("p1", "2026-03-02T03:00:00", "partial")]
    newest_partial.append(snap("p2", "2026-03-03T03:00:00", "partial"))
    found = prune.plan(newest_partial, set(), only(daily=7), keep_verified=1)
    assert ids(found.keep) == ["ok", "p2"] and ids(found.remove) == ["p1"]
    three = [*newest_partial, snap("p3", "2026-03-04T03:00:00", "partial")]
    assert ids(prune.plan(three, set(), only(daily=7), keep_verified=1).remove) == ["p1", "p2"]
    older_partial = [snap("p", "2026-03-01T03:00:00", "partial"), snap("ok", "2026-03-02T03:00:00")]
    found = prune.plan(older_partial, set(), only(daily=7), keep_verified=1)
    assert ids(found.keep) == ["ok"] and ids(found.remove) == ["p"]
    same_time = [snap("ok", "2026-03-02T03:00:00"), snap("p", "2026-03-02T03:00:00", "partial")]
    assert ids(prune.plan(same_time, set(), only(daily=7), keep_verified=1).remove) == ["p"]


def test_kept_snapshots_stay_in_listing_order() -> None:
    runs = [snap("b", "2026-03-02T03:00:00"), snap("a", "2026-03-01T03:00:00"), snap("c", "2026-03-03T03:00:00")]
    assert [s.id for s in prune.plan(runs, set(), only(daily=7), keep_verified=1).keep] == ["b", "a", "c"]


def test_refusals_say_why_nothing_is_pruned() -> None:
    with pytest.raises(HomelabError) as empty:
        prune.plan([], set(), only(daily=1), keep_verified=1)
    assert str(empty.value) == (
        "prune refused: the repository lists no snapshots (a failing or empty listing is never pruned)"
    )
    with pytest.raises(HomelabError) as partial:
        prune.plan([snap("p", "2026-03-01T03:00:00", "partial")], set(), only(daily=1), keep_verified=1)
    assert str(partial.value) == "prune refused: no complete backup exists; nothing would be left to restore"
    with pytest.raises(HomelabError) as everything:
        prune.plan(DAYS[:3], set(), only(), keep_verified=1)
    assert str(everything.value) == "prune refused: the policy would delete every complete backup"


def test_a_snapshot_is_chosen_by_id_prefix_else_the_newest_complete_run() -> None:
    runs = [snap("abc111", "2026-03-01T03:00:00"), snap("abd222", "2026-03-02T03:00:00")]
    runs.append(snap("abe333", "2026-03-03T03:00:00", "partial"))
    runs.insert(0, snap("abb000", "2026-02-28T03:00:00"))
    assert choose(runs, "abd").id == "abd222"
    assert choose(runs, None).id == "abd222", "the newest complete run, not the newer partial one"
    with pytest.raises(HomelabError) as unknown:
        choose(runs, "zzz")
    assert str(unknown.value) == "no homelab snapshot 'zzz'; see inv backup.list"
    with pytest.raises(HomelabError) as none:
        choose(runs[3:], None)
    assert str(none.value) == "no complete backup in the repository yet; run inv backup.run"


def test_a_manifest_that_is_not_json_is_damaged(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    assert check_manifest(tmp_path) == ([], ["manifest.json is damaged (not JSON)"])
    (tmp_path / "a.yaml").write_text("a: 1\n")
    digest = hashlib.sha256(b"a: 1\n").hexdigest()
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"a.yaml": digest}}))
    assert check_manifest(tmp_path) == (["manifest: 1 files re-hashed"], [])


def test_the_datastore_kind_is_read_from_its_own_manifest(tmp_path: Path) -> None:
    assert datastore_kind(tmp_path) == "sqlite", "older snapshots have no manifest: SQLite"
    (tmp_path / "manifest.json").write_text(json.dumps({"datastore": "etcd"}))
    assert datastore_kind(tmp_path) == "etcd"
    (tmp_path / "manifest.json").write_text(json.dumps({"datastore": None}))
    assert datastore_kind(tmp_path) == "sqlite"
    (tmp_path / "manifest.json").write_text("garbage")
    assert datastore_kind(tmp_path) == "sqlite"
