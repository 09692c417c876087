"""Retention that cannot delete the last good backups.

Only complete runs count for the daily/weekly/monthly buckets (a partial run is
kept only while it is the newest run of all); the newest
``keep_verified`` verified runs are always kept; an empty listing, or a policy
that would leave no complete run, is refused rather than applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from homelab.backup.restic import Snapshot, restic_for
from homelab.config.schema import Retention
from homelab.core.errors import HomelabError
from homelab.core.plan import Action, Note, Plan


@dataclass(frozen=True)
class PrunePlan:
    keep: list[Snapshot]
    remove: list[Snapshot]


def _day(snapshot: Snapshot) -> date:
    """The snapshot's calendar day (restic prints RFC 3339 times; buckets need only the date)."""
    return date.fromisoformat(snapshot.time[:10])


def _buckets(snapshots: list[Snapshot], count: int, key: str) -> set[str]:
    kept: set[str] = set()
    seen: set[str] = set()
    for snap in sorted(snapshots, key=lambda s: s.time, reverse=True):
        when = _day(snap)
        bucket = {
            "day": when.strftime("%Y-%m-%d"),
            "week": f"{when.isocalendar()[0]}-{when.isocalendar()[1]}",
            "month": when.strftime("%Y-%m"),
        }[key]
        if bucket not in seen and len(seen) < count:
            seen.add(bucket)
            kept.add(snap.id)
    return kept


def plan(snapshots: list[Snapshot], verified: set[str], retention: Retention, keep_verified: int) -> PrunePlan:
    if not snapshots:
        raise HomelabError(
            "prune refused: the repository lists no snapshots (a failing or empty listing is never pruned)"
        )
    complete = [s for s in snapshots if s.tag_value("status") == "complete"]
    if not complete:
        raise HomelabError("prune refused: no complete backup exists; nothing would be left to restore")
    keep = {s.id for s in sorted((s for s in complete if s.id in verified), key=lambda s: s.time)[-keep_verified:]}
    keep |= _buckets(complete, retention.daily, "day")
    keep |= _buckets(complete, retention.weekly, "week")
    keep |= _buckets(complete, retention.monthly, "month")
    newest_complete = max(s.time for s in complete)
    remove = [s for s in complete if s.id not in keep]
    partial = sorted((s for s in snapshots if s.tag_value("status") != "complete"), key=lambda s: s.time)
    # Partial runs never count; only the newest one is kept, and only while no complete run is newer.
    keep_partial = partial[-1:] if partial and partial[-1].time > newest_complete else []
    remove += [s for s in partial if s not in keep_partial]
    kept = [s for s in snapshots if s not in remove]
    if not any(s.tag_value("status") == "complete" for s in kept):
        raise HomelabError("prune refused: the policy would delete every complete backup")
    return PrunePlan(kept, remove)


def prune_plan(session: Any) -> tuple[Plan, int]:
    """The snapshots the policy removes, as a plan (one restic ``forget --prune``), and how many.

    The offsite copies of the removed snapshots go too: both repositories keep the same runs.
    """
    from homelab.backup.offsite import forget_copies_of
    from homelab.backup.verify import load_verified

    restic = restic_for(session)
    backup = session.cfg.backup
    found = plan(restic.snapshots(), set(load_verified(session)), backup.retention, backup.keep_verified)
    title = f"prune {backup.repository}: remove {len(found.remove)}, keep {len(found.keep)}"
    steps: list[Action] = [
        Note(f"remove {snap.id} {snap.time[:19]} {snap.tag_value('status')}") for snap in found.remove
    ]
    steps += restic.forget_actions([snap.id for snap in found.remove])
    steps += forget_copies_of(session, [snap.id for snap in found.remove])
    return Plan(title, steps), len(found.remove)


def execute(session: Any, planned: Plan) -> None:
    """Run the prune plan, then list again: what should be gone and is not fails the task."""
    restic = restic_for(session)
    restic.execute(planned)
    again, left = prune_plan(session)
    if left:
        raise HomelabError(f"prune not converged: {left} snapshot(s) the policy removes are still listed")
    session.executor.out(f"prune: converged ({again.title.split(': ', 1)[-1]})")
