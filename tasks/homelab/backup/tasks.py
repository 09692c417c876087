"""Backups with restic, safe to run from cron: run, list, verify, prune, restore, drill, schedule.

Exit codes: 0 ok, 1 fatal, 2 usage or config, 3 partial, 11 locked, 12 key or decrypt error
(wrong or missing restic password; Sealed Secrets keys that do not decrypt the repository's secrets).
"""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import confirm, session, task


@task(default=True, help={"dry_run": "Print the plan (what would be collected, the restic call); store nothing."})
def run(c: Any, dry_run: bool = False) -> None:
    """Take one backup run (cron-safe: locked, tagged, manifest last); one summary line."""
    from invoke.exceptions import Exit

    from homelab.backup import run as backup_run

    with session(c, dry_run) as s:
        if dry_run:
            s.executor.execute(backup_run.dry_run_plan(s))
            return
        report = backup_run.run(s)
    print(report.summary())
    if report.exit_code:
        raise Exit(code=report.exit_code)


def run_rows(snapshots: list[Any], verified: Any) -> list[dict[str, Any]]:
    """One row per backup run (restic snapshot), as ``backup.list --json`` prints it."""
    return [
        {
            "time": snap.time,
            "snapshot": snap.id,
            "status": snap.tag_value("status"),
            "run": snap.tag_value("run"),
            "verified": snap.id in verified,
        }
        for snap in snapshots
    ]


@task(
    name="list",
    help={
        "from": "Which repository: local (the default) or offsite (backup.offsite).",
        "json": 'Print JSON: [{"time", "snapshot", "status", "run", "verified"}] ([] when there is none).',
    },
)
def list_(c: Any, from_: str = "local", json: bool = False) -> None:
    """Every backup run: time, snapshot, complete or partial, verified."""
    import json as jsonlib

    from homelab.backup.restic import restic_for
    from homelab.backup.verify import load_verified

    s = session(c)
    verified = load_verified(s) if from_ == "local" else {}
    rows = run_rows(restic_for(s, from_).snapshots(), verified)
    if json:
        print(jsonlib.dumps(rows, indent=2))
        return
    if not rows:
        print("no backups yet")
    for r in rows:
        mark = "verified" if r["verified"] else ""
        print(f"{r['time'][:19]}  {r['snapshot']}  {r['status'] or '?':<9} {r['run'] or ''}  {mark}")


@task(
    help={
        "snapshot": "Snapshot id (default: the newest complete run).",
        "full": "Read all of the repository's data (not the configured sample) and restore every snapshot's manifest.",
        "from": "Only this repository: local or offsite (default: both, when backup.offsite is set).",
    }
)
def verify(c: Any, snapshot: str | None = None, full: bool = False, from_: str = "") -> None:
    """restic check, re-hash the manifest, open every artifact, decrypt SealedSecrets with the saved keys."""
    from invoke.exceptions import Exit

    from homelab.backup.verify import verify as run_verify

    s = session(c)
    sources = [from_] if from_ else ["local", *(["offsite"] if s.cfg.backup.offsite else [])]
    for source in sources:
        report = run_verify(s, snapshot if source == sources[0] else None, full=full, source=source)
        prefix = "" if source == "local" else f"{source}: "
        for line in report.checked:
            print(f"ok    {prefix}{line}")
        for line in report.problems:
            print(f"FAIL  {prefix}{line}")
        if report.problems:
            from homelab.core.errors import EXIT_KEY

            key_trouble = any(p.startswith("sealed keys:") for p in report.problems)
            first = next((p for p in report.problems if p.startswith("sealed keys:")), report.problems[0])
            code = EXIT_KEY if key_trouble else 1
            raise Exit(f"backup {report.snapshot} ({source}) FAILED verification: {first}", code=code)
        print(report.summary())


@task(
    help={
        "dry_run": "Print the plan (the snapshots to remove, the restic call); remove nothing.",
        "yes": "Do not ask for confirmation.",
    }
)
def prune(c: Any, dry_run: bool = False, yes: bool = False) -> None:
    """Apply the retention policy; refuses empty listings and never removes the last verified runs."""
    from homelab.backup import prune as policy

    s = session(c, dry_run)
    planned, count = policy.prune_plan(s)
    if dry_run or not count:
        s.executor.execute(planned)
        return
    if not confirm(f"Remove {count} snapshots?", yes):
        print("nothing removed")
        return
    policy.execute(s, planned)


@task(
    iterable=["component"],
    help={
        "snapshot": "Snapshot id (default: the newest complete run).",
        "component": "Only this component: config, cluster, sealed-keys, datastore, volumes (repeatable).",
        "to": "Restore into this directory instead of the cluster and nodes.",
        "from": "Which repository: local (backup.repository, the default) or offsite (backup.offsite).",
        "dry_run": "Print the plan (objects to create, files to write on which nodes, apps to stop); change nothing.",
        "yes": "Do not ask for confirmation.",
    },
)
def restore(
    c: Any,
    component: list[str],
    snapshot: str | None = None,
    to: str | None = None,
    from_: str = "local",
    dry_run: bool = False,
    yes: bool = False,
) -> None:
    """Restore what is missing (everything, or some components) into the cluster and nodes, or a directory."""
    from pathlib import Path

    from homelab.backup import restore as restoring

    with session(c, dry_run) as s:
        target = Path(to).expanduser() if to else None
        in_place = target is None and not dry_run
        if in_place and not confirm("Restore into the live cluster and nodes (missing objects are created)?", yes):
            print("nothing restored")
            return
        for line in restoring.restore(s, snapshot, component, target, from_):
            print(line)


@task(help={"snapshot": "Snapshot id (default: the newest complete run)."})
def drill(c: Any, snapshot: str | None = None) -> None:
    """Restore the newest run into a scratch directory, verify it, and dry-run its objects against the cluster."""
    from invoke.exceptions import Exit

    from homelab.backup import restore as restoring

    with session(c) as s:
        lines, ok = restoring.drill(s, snapshot)
    for line in lines:
        print(line)
    if not ok:
        raise Exit("backup drill FAILED", code=1)
    print("backup drill passed")


@task(
    help={
        "remove": "Remove the scheduled job instead of installing it.",
        "dry_run": "Print the change (crontab, or launchd agent on macOS; read, never written); write nothing.",
    }
)
def schedule(c: Any, remove: bool = False, dry_run: bool = False) -> None:
    """Install (or remove) the cron entry (launchd agent on macOS) that runs backup.run on backup.schedule."""
    from homelab.backup import schedule as scheduling

    print(scheduling.apply(session(c, dry_run), remove))


def layer_up(c: Any, dry_run: bool, overrides: dict[str, Any]) -> bool:
    from homelab.backup import schedule as scheduling

    text = scheduling.apply(session(c, dry_run, **overrides), False)
    print(f"  {text}")
    return "installed" in text


def layer_down(c: Any, dry_run: bool, overrides: dict[str, Any]) -> None:
    print("  backup: the repository and the schedule are kept (inv backup.schedule --remove removes the entry)")


def layer_status(c: Any, overrides: dict[str, Any]) -> tuple[bool, str]:
    from homelab.backup.run import metrics_path, read_metric
    from homelab.backup.schedule import installed

    s = session(c, **overrides)
    scheduled = installed()
    last = read_metric(metrics_path(s), "homelab_backup_last_success_timestamp_seconds")
    import time

    age = f"last good backup {(time.time() - last) / 3600:.1f} h ago" if last else "no backup yet"
    fresh = bool(last) and time.time() - (last or 0) < s.cfg.backup.max_age_hours * 3600
    return scheduled and fresh, f"{'scheduled' if scheduled else 'not scheduled'}, {age}"


ns = Collection("backup", run, list_, verify, prune, restore, drill, schedule)
