"""Datastore snapshots with the token that makes them restorable.

SQLite (K3S's default) is copied with ``VACUUM INTO``, never ``cp``: the
database runs in WAL mode and a file copy can be torn, and kine writes so
often that the incremental ``.backup`` would keep restarting. ``VACUUM INTO``
reads one consistent snapshot in a single transaction. Embedded etcd uses
``k3s etcd-snapshot save``. Either way the cluster token is saved beside it,
because a snapshot restored without its token is unusable.

One UTC stamp names everything a snapshot makes (the etcd snapshot, the staged
copy on the server, the local directory), and it is computed once, so the
plan printed under ``--dry-run`` names exactly what a real run would take.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from homelab.core.errors import HomelabError
from homelab.core.plan import Download, Note, Plan, Run, WriteFile
from homelab.core.secret_refs import Secret

STATE_DB = "/var/lib/rancher/k3s/server/db/state.db"
ETCD_SNAPSHOTS = "/var/lib/rancher/k3s/server/db/snapshots"


def stamp_now() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def staged_path(stamp: str) -> str:
    """Where the server stages a snapshot for download."""
    return f"/var/tmp/homelab-snapshot-{stamp}"


def snapshot_steps(cfg: Any, stamp: str, remote: str) -> list[Run]:
    server = cfg.server.name
    if cfg.k3s.datastore == "sqlite":
        return [Run(("sqlite3", STATE_DB, f"VACUUM INTO '{remote}'"), host=server, sudo=True, why="online snapshot")]
    name = f"homelab-{stamp}"
    find = f"ls -t {ETCD_SNAPSHOTS}/{name}* | head -n1 | xargs -I{{}} cp {{}} {remote}"
    return [
        Run(("k3s", "etcd-snapshot", "save", "--name", name), host=server, sudo=True, why="etcd snapshot"),
        Run(("sh", "-c", find), host=server, sudo=True, why="stage the snapshot"),
    ]


def snapshot_plan(cfg: Any, stamp: str, target: Path, token: Secret) -> Plan:
    """Snapshot on the server, download into ``target`` (0700 directory, 0600 files), save the token."""
    server = cfg.server.name
    remote = staged_path(stamp)
    user = cfg.server.ssh_user or cfg.ssh.user
    return Plan(
        f"snapshot the {cfg.k3s.datastore} datastore of {server} into {target}",
        [
            Run(("mkdir", "-p", "-m", "0700", str(target)), why="the snapshot's directory"),
            *snapshot_steps(cfg, stamp, remote),
            Run(("chown", user, remote), host=server, sudo=True, why="let the SSH user download it"),
            Download(remote, str(target / "datastore"), host=server, why="the datastore snapshot"),
            Run(("rm", "-f", remote), host=server, sudo=True, why="remove the staged copy"),
            WriteFile(str(target / "token"), Secret(token.reveal() + "\n", token.source), 0o600, why="cluster token"),
            Note(f"then: {target / 'manifest.json'} with the sha256 of each file (computed from the downloads)"),
        ],
    )


def manifest_plan(cfg: Any, target: Path) -> Plan:
    """The manifest that lets a restore check the files it is given."""
    files = [target / "datastore", target / "token"]
    manifest = {
        "datastore": cfg.k3s.datastore,
        "server": cfg.server.name,
        "version": cfg.k3s.version,
        "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
    }
    text = json.dumps(manifest, indent=2) + "\n"
    return Plan("snapshot manifest", [WriteFile(str(target / "manifest.json"), text, 0o600, why="file digests")])


def take(session: Any) -> Path | None:
    """Snapshot the server's datastore into ``<state_dir>/snapshots/<UTC stamp>/``; None under --dry-run."""
    stamp = stamp_now()
    target: Path = session.state_dir / "snapshots" / stamp
    fetch(session, target, stamp)
    return None if session.dry_run else target


def fetch(session: Any, target: Path, stamp: str | None = None) -> None:
    """Snapshot the datastore and download it, with the token and a manifest, into ``target``."""
    cfg = session.cfg
    stamp = stamp or stamp_now()
    plan = snapshot_plan(cfg, stamp, target, cfg.k3s.token.location().resolve())
    try:
        session.executor.execute(plan)
    except HomelabError:
        cleanup = Run(("rm", "-f", staged_path(stamp)), host=cfg.server.name, sudo=True, why="remove the staged copy")
        with contextlib.suppress(HomelabError):  # the first error is the one to report
            session.executor.execute(Plan("clean up after the failed snapshot", [cleanup]))
        raise
    if not session.dry_run:  # the manifest digests the downloaded files: planned once they exist
        session.executor.execute(manifest_plan(cfg, target))
