"""Datastore snapshots with the token that makes them restorable.

SQLite (K3S's default) is copied with ``VACUUM INTO``, never ``cp``: the
database runs in WAL mode and a file copy can be torn, and kine writes so
often that the incremental ``.backup`` would keep restarting. ``VACUUM INTO``
reads one consistent snapshot in a single transaction. Embedded etcd uses
``k3s etcd-snapshot save``. Either way the cluster token is saved beside it,
because a snapshot restored without its token is unusable.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from homelab.core.executor import write_local
from homelab.core.plan import Plan, Run

STATE_DB = "/var/lib/rancher/k3s/server/db/state.db"
ETCD_SNAPSHOTS = "/var/lib/rancher/k3s/server/db/snapshots"


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


def _plan(cfg: Any, stamp: str, remote: str) -> Plan:
    user = cfg.server.ssh_user or cfg.ssh.user
    steps = [
        *snapshot_steps(cfg, stamp, remote),
        Run(("chown", user, remote), host=cfg.server.name, sudo=True, why="let the SSH user download it"),
    ]
    return Plan(f"snapshot the {cfg.k3s.datastore} datastore of {cfg.server.name}", list(steps))


def take(session: Any) -> Path | None:
    """Snapshot the server's datastore into ``<state_dir>/snapshots/<UTC time>/``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target: Path = session.state_dir / "snapshots" / stamp
    if session.dry_run:
        session.executor.execute(_plan(session.cfg, stamp, f"/var/tmp/homelab-snapshot-{stamp}"))
        print(f"  then: download to {target}/datastore, copy the cluster token beside it (0600), write manifest.json")
        return None
    target.mkdir(parents=True, mode=0o700)
    fetch(session, target)
    return target


def fetch(session: Any, target: Path) -> None:
    """Snapshot the datastore and download it, with the token and a manifest, into ``target``."""
    cfg = session.cfg
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    remote = f"/var/tmp/homelab-snapshot-{stamp}"
    session.executor.execute(_plan(cfg, stamp, remote))
    datastore = target / "datastore"
    try:
        session.connection(cfg.server.name).get(remote, str(datastore))
    finally:
        session.executor.run(Run(("rm", "-f", remote), host=cfg.server.name, sudo=True), check=False)
    datastore.chmod(0o600)
    token = cfg.k3s.token.location().resolve()
    write_local(target / "token", token.reveal().encode() + b"\n", 0o600)
    manifest = {
        "datastore": cfg.k3s.datastore,
        "server": cfg.server.name,
        "version": cfg.k3s.version,
        "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (datastore, target / "token")},
    }
    write_local(target / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode(), 0o600)
