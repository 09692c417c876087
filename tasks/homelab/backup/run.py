"""One cron-safe backup run: lock, collect, manifest last, one restic snapshot, report.

Safety comes from the order. The lock is taken first, without waiting, so a
second run exits at once and touches nothing. Components are staged locally;
the manifest (a SHA-256 per file) is written after them; only then does restic
store the whole staging folder as one snapshot, which restic writes atomically:
a run killed at any point leaves either no snapshot or a complete one.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homelab.backup import components, heartbeat, volume_read
from homelab.backup.offsite import copy, copy_plan, describe_failure, offsite_for
from homelab.backup.restic import restic_for
from homelab.core import locks, signals, state_files
from homelab.core.errors import EXIT_OK, EXIT_PARTIAL, HomelabError
from homelab.core.executor import write_local
from homelab.core.plan import Action, Note, Plan
from homelab.core.secret_refs import REDACTOR

MANIFEST = "manifest.json"
MAX_NOTED = 10  # a summary is one message; the manifest keeps every note


@dataclass
class RunReport:
    run_id: str
    snapshot: str | None = None
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # Files that changed while they were read (a log, resume data): kept as read, and said, never a failure.
    noted: list[str] = field(default_factory=list)
    offsite: str = ""  # what the offsite copy did, when one is configured and it worked

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.failed else EXIT_OK

    def summary(self) -> str:
        state = "partial" if self.failed else "ok"
        text = (
            f"backup {state}: run {self.run_id} snapshot {self.snapshot} in {self.seconds:.1f}s; "
            f"components ok: {', '.join(self.ok) or 'none'}"
        )
        if self.offsite:
            text += f"; {self.offsite}"
        if self.failed:
            text += "; FAILED: " + "; ".join(f"{k}: {v}" for k, v in self.failed.items())
        if self.noted:
            shown = "; ".join(self.noted[:MAX_NOTED])
            more = f" (and {len(self.noted) - MAX_NOTED} more)" if len(self.noted) > MAX_NOTED else ""
            text += f"; changed while read (kept as read): {shown}{more}"
        return REDACTOR.redact(text)


def exclusive_lock(path: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``path`` locked for the run; raise ``Locked`` at once if another run holds it."""
    return locks.exclusive(path, "backup.run")


def lock_path(session: Any) -> Path:
    path: Path = session.state_dir / "backup.lock"
    return path


def staging_root(session: Any) -> Path:
    path: Path = session.state_dir / "backup-staging"
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hashes(staging: Path, cache_file: Path) -> dict[str, str]:
    """SHA-256 of every staged file; unchanged files (same size, mtime, inode) reuse last run's digest."""
    cache = state_files.read_json(cache_file, state_files.HASH_CACHE) or {}
    result, fresh = {}, {}
    for path in sorted(staging.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(staging))
        st = path.stat()
        key = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        digest = cache.get(rel, {}).get(key) or sha256(path)
        result[rel] = digest
        fresh[rel] = {key: digest}
    write_local(cache_file, json.dumps(fresh).encode(), 0o600)
    return result


def write_manifest(staging: Path, report: RunReport, started: float, cache_file: Path) -> None:
    files = hashes(staging, cache_file)
    manifest = {
        "run": report.run_id,
        "started": started,
        "finished": time.time(),
        "status": "partial" if report.failed else "complete",
        "components": {**{c: "ok" for c in report.ok}, **{c: f"failed: {e}" for c, e in report.failed.items()}},
        "changed_while_read": report.noted,
        "files": files,
    }
    write_local(staging / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), 0o600)


def collect(session: Any, staging: Path, report: RunReport) -> None:
    kube = None
    for name in components.applicable(session):
        out = staging / name
        out.mkdir(parents=True, mode=0o700)
        try:
            if name in ("cluster", "sealed-keys", "volumes") and kube is None:
                from homelab.core import cluster

                kube = cluster.connect(session)
            if name == "config":
                components.collect_config(session, out)
            elif name == "cluster":
                components.collect_cluster(session, out, kube)
            elif name == "sealed-keys":
                components.collect_sealed_keys(session, out, kube)
            elif name == "datastore":
                components.collect_datastore(session, out)
            elif name == "volumes":
                report.noted += volume_read.collect_volumes(session, out, kube)
            report.ok.append(name)
        except Exception as err:
            report.failed[name] = REDACTOR.redact(str(err).splitlines()[0] if str(err) else type(err).__name__)
            shutil.rmtree(out, ignore_errors=True)


def dry_run_plan(session: Any) -> Plan:
    """What a run would do, for ``--dry-run``: the node reads it would take and the one restic write.

    The collecting itself reads the cluster and copies files into the state
    directory, so under ``--dry-run`` it is described, not done; the lock,
    the pings and the metrics file are left alone too.
    """
    cfg = session.cfg
    restic = restic_for(session)
    staging = staging_root(session) / "current"
    plan = Plan(f"back up {cfg.name} into {cfg.backup.repository}")
    for name in components.applicable(session):
        plan.add(Note(f"collect {name}: {COLLECTS[name]}"))
        if name == "volumes":
            plan.extend(volume_reads(session, staging / name))
    if not restic.exists():
        plan.add(restic.init_action())
    tags = ["homelab", "run:<time>-<pid>", "status:<complete|partial>"]
    plan.add(restic.action(*restic.backup_args(tags, cfg.name), why="store the staged run", cwd=staging))
    plan.extend(copy_plan(session))
    if cfg.monitoring.enabled:
        plan.add(Note("when complete: renew the Lease monitoring/homelab-backup, the heartbeat Prometheus alerts on"))
    return plan


COLLECTS = {
    "config": "the config files, the inventory and local K3S snapshots",
    "cluster": "every listable object as YAML, Secrets excluded",
    "sealed-keys": "the Sealed Secrets controller keys",
    "datastore": "a snapshot of the K3S datastore with its token (inv k3s.snapshot --dry-run shows its steps)",
    "volumes": "each app's volume files, read on its node",
}


def volume_reads(session: Any, out: Path) -> list[Action]:
    """The node reads of each app volume, or why one cannot be planned now."""
    from homelab.core import cluster

    steps: list[Action] = []
    try:
        kube = cluster.connect(session)
    except HomelabError as err:
        return [Note(f"volumes cannot be planned: {err}")]
    for name, app in sorted(session.cfg.deployed_apps.items()):
        if not app.storage:
            continue
        try:
            plan, cleanup = volume_read.volume_read_plan(session, kube, name, app, out / name)
        except HomelabError as err:
            steps.append(Note(f"{name}: {err}"))
            continue
        steps += [*plan.actions, cleanup]
    return steps


def run(session: Any) -> RunReport:
    """The whole run; raises for fatal errors, returns a report (maybe partial) otherwise."""
    cfg = session.cfg
    if session.dry_run:
        raise HomelabError("a dry run of backup.run prints dry_run_plan(session); it never collects")
    with exclusive_lock(lock_path(session)):
        started = time.time()
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + f"-{os.getpid()}"
        report = RunReport(run_id)
        ping(cfg.backup.deadman_url, "start")
        try:
            restic = restic_for(session)
            restic.action("snapshots")  # a missing or unreadable password fails here, before any work
            root = staging_root(session)
            shutil.rmtree(root, ignore_errors=True)  # leftovers of a killed run
            # A stable path lets restic find the previous snapshot and skip unchanged files.
            staging = root / "current"
            staging.mkdir(parents=True, mode=0o700)
            collect(session, staging, report)
            write_manifest(staging, report, started, session.state_dir / "backup-hashes.json")
            tags = ["homelab", f"run:{run_id}", f"status:{'partial' if report.failed else 'complete'}"]
            report.snapshot = restic.backup_creating(staging, tags, host=cfg.name)[:8]
            shutil.rmtree(root, ignore_errors=True)
            copy_offsite(session, restic, report)
            record_velero(session, report)
        except (HomelabError, KeyboardInterrupt) as err:
            # Ctrl-C or the scheduler's SIGTERM: restic fails in its own words, but what happened is the stop
            if isinstance(err, KeyboardInterrupt) or signals.interrupted_by():
                host = socket.gethostname()
                notify(session, f"backup INTERRUPTED on {host}: nothing stored; the next run starts over")
            else:
                notify(session, f"backup FAILED on {socket.gethostname()}: {err}")
            ping(cfg.backup.deadman_url, "fail")
            raise
        report.seconds = time.time() - started
        write_metrics(session, report)
        if not report.failed:
            missed = heartbeat.record(session, time.time())
            if missed:
                print(f"backup: stored, but the cluster's backup heartbeat was not renewed ({missed})", file=sys.stderr)
        if report.failed:
            notify(session, report.summary())
            ping(cfg.backup.deadman_url, "fail")
        else:
            if cfg.backup.notify_on_success:
                notify(session, report.summary())
            ping(cfg.backup.deadman_url, "")
        return report


def copy_offsite(session: Any, restic: Any, report: RunReport) -> None:
    """The offsite copy of what the local repository holds; a failure makes the run partial, never fatal."""
    offsite = offsite_for(session)
    if offsite is None:
        return
    try:
        report.offsite = copy(session, restic, offsite).line(REDACTOR.redact(offsite.repository))
    except HomelabError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        report.failed["offsite"] = REDACTOR.redact(describe_failure(HomelabError(first)))


def record_velero(session: Any, report: RunReport) -> None:
    """Velero's newest Backup beside this run's result (options.velero): PartiallyFailed or stale makes it partial."""
    from homelab.backup import velero

    try:
        velero.record(session, report)
    except HomelabError as err:
        report.failed["velero"] = REDACTOR.redact(f"not read: {str(err).splitlines()[0] if str(err) else err!r}")


def metrics_path(session: Any) -> Path:
    path: Path = session.state_dir / "backup.prom"
    return path


def write_metrics(session: Any, report: RunReport) -> None:
    """A node-exporter textfile: Prometheus alerts when the last good backup is too old."""
    path = metrics_path(session)
    previous = read_metric(path, "homelab_backup_last_success_timestamp_seconds") or 0
    last_success = time.time() if not report.failed else previous
    lines = [
        "# HELP homelab_backup_last_success_timestamp_seconds End of the last complete backup run.",
        "# TYPE homelab_backup_last_success_timestamp_seconds gauge",
        f"homelab_backup_last_success_timestamp_seconds {last_success:.0f}",
        "# HELP homelab_backup_last_run_partial 1 when the last run missed a component.",
        "# TYPE homelab_backup_last_run_partial gauge",
        f"homelab_backup_last_run_partial {1 if report.failed else 0}",
        f"homelab_backup_last_duration_seconds {report.seconds:.1f}",
    ]
    write_local(path, ("\n".join(lines) + "\n").encode(), 0o644)


def read_metric(path: Path, name: str) -> float | None:
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def notify(session: Any, text: str) -> None:
    """Telegram message; a failure to notify is one redacted line on stderr, never fatal."""
    telegram = session.cfg.monitoring.telegram
    try:
        token = telegram.bot_token.location().resolve().reveal()
    except HomelabError:
        print("notify: no Telegram bot token available; message not sent", flush=True)
        return
    url = f"{session.cfg.backup.notify_api}/bot{token}/sendMessage"
    body = urllib.parse.urlencode({"chat_id": telegram.chat_id, "text": REDACTOR.redact(text)}).encode()
    try:
        with urllib.request.urlopen(url, data=body, timeout=10):  # noqa: S310 - https URL from config
            pass
    except URLOPEN_ERRORS as err:
        not_sent("Telegram message", err)


# What urlopen raises besides OSError (URLError, HTTPError, timeouts): ValueError for a
# malformed URL (http.client.InvalidURL, UnicodeError) and HTTPException for a broken
# reply (BadStatusLine). Their text may quote the URL, and so the token.
URLOPEN_ERRORS = (OSError, ValueError, http.client.HTTPException)


def not_sent(what: str, err: Exception) -> None:
    """One redacted warning line: a failed notification never fails or hides the backup's result."""
    detail = " ".join(str(err).split()) or "no detail"
    print(REDACTOR.redact(f"notify: {what} not sent ({type(err).__name__}): {detail}"), file=sys.stderr, flush=True)


def ping(url: str | None, suffix: str) -> None:
    """Dead-man's-switch ping (healthchecks-style: URL, URL/start, URL/fail); never fatal.

    The URL is itself the credential (anyone holding it can report for this job), so
    it is registered with the redactor and never printed.
    """
    if not url:
        return
    REDACTOR.register(url)
    target = f"{url.rstrip('/')}/{suffix}" if suffix else url
    try:
        urllib.request.urlopen(target, timeout=10).close()  # noqa: S310 - URL from config
    except URLOPEN_ERRORS as err:
        not_sent(f"dead-man's-switch ping{f' /{suffix}' if suffix else ''}", err)
