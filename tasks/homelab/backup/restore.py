"""Putting a backup back: into a directory, or into the cluster and onto the nodes.

A datastore restore is refused unless the snapshot's cluster token matches the
configured one, and that check comes before anything is stopped or written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from homelab.backup.restic import Restic
from homelab.backup.verify import check_manifest, check_sealed_keys, choose, open_artifacts, sealed_secrets_in_repo
from homelab.core.errors import HomelabError, UsageError
from homelab.core.kube import load_manifests
from homelab.core.paths import resolve_in_project

# Runs on the node as: sh -c WRITE_VOLUME write-volume DEST STAGED; values are arguments, never code.
WRITE_VOLUME = r"""
set -e
dest=$1; staged=$2
mkdir -p "$dest"
tar -C "$dest" -xpf "$staged/files.tar"
for f in "$staged"/sqlite/*; do
  [ -e "$f" ] || continue
  b=$(basename "$f"); rm -f "$dest/$b-wal" "$dest/$b-shm"; cp "$f" "$dest/$b"
done
rm -rf "$staged"
"""
COMPONENTS = ("config", "cluster", "sealed-keys", "datastore", "volumes")


def _restic(session: Any) -> Restic:
    return Restic(session.cfg.backup.repository, session.cfg.backup.password.location())


def cluster_objects(folder: Path) -> list[dict[str, Any]]:
    """Backed-up objects in restore order: namespaces first; controller-owned objects left to controllers."""
    objects = load_manifests(p.read_text() for p in sorted(folder.glob("*.yaml")))
    keep = [o for o in objects if not o["metadata"].get("ownerReferences")]
    keep = [o for o in keep if not (o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kube-root-ca.crt")]
    return [o for o in keep if o["kind"] == "Namespace"] + [o for o in keep if o["kind"] != "Namespace"]


def check_token(session: Any, folder: Path) -> None:
    saved = folder / "datastore" / "token"
    if not saved.is_file():
        raise HomelabError("datastore restore refused: the snapshot holds no cluster token; nothing was stopped")
    current = session.cfg.k3s.token.location()
    try:
        token = current.resolve().reveal()
    except HomelabError as err:
        raise HomelabError(f"datastore restore refused: {err}; nothing was stopped") from None
    if saved.read_text().strip() != token.strip():
        raise HomelabError(
            f"datastore restore refused: the snapshot's cluster token differs from {current.describe()}; "
            "a datastore is unusable without its own token. Put the snapshot's token there first; nothing was stopped"
        )


def restore(session: Any, snapshot: str | None, components: list[str], target: Path | None) -> list[str]:
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise UsageError(f"unknown component {unknown[0]!r}; choose from {', '.join(COMPONENTS)}")
    restic = _restic(session)
    chosen = choose(restic.snapshots(), snapshot)
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        restic.restore(chosen.id, target, [f"/{c}" for c in components] or None)
        return [f"snapshot {chosen.id} restored into {target}"]
    lines = []
    with tempfile.TemporaryDirectory(prefix="homelab-restore-") as scratch:
        folder = Path(scratch)
        restic.restore(chosen.id, folder)
        wanted = [c for c in (components or COMPONENTS) if (folder / c).is_dir()]
        if "datastore" in wanted:
            check_token(session, folder)
        if "cluster" in wanted or "sealed-keys" in wanted:
            from homelab.core import cluster

            kube = cluster.connect(session)
            if "sealed-keys" in wanted:
                keys = load_manifests([(folder / "sealed-keys" / "keys.yaml").read_text()])
                kube.apply(keys)
                lines.append(f"sealed-keys: {len(keys)} controller key(s) restored")
            if "cluster" in wanted:
                objects = cluster_objects(folder / "cluster")
                applied = kube.apply(objects)
                lines.append(f"cluster: {len(applied)} objects applied ({sum(a.changed for a in applied)} changed)")
        if "volumes" in wanted:
            lines += restore_volumes(session, folder / "volumes")
        if "datastore" in wanted:
            lines.append(restore_datastore(session, folder / "datastore"))
        if "config" in wanted and components:
            lines.append("config: restore it with --to DIR and compare; the live config is never overwritten")
    return lines


def restore_volumes(session: Any, folder: Path) -> list[str]:
    from homelab.backup.components import volume_location
    from homelab.core import cluster
    from homelab.core.plan import Run

    kube = cluster.connect(session)
    lines = []
    for app_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = app_dir.name
        node, path = volume_location(kube, name, f"{name}-data")
        remote = f"/var/tmp/homelab-restore-{name}"
        conn = session.connection(node)
        session.executor.run(Run(("rm", "-rf", remote), host=node, sudo=True))
        session.executor.run(Run(("mkdir", "-p", f"{remote}/sqlite"), host=node))
        conn.put(str(app_dir / "files.tar"), f"{remote}/files.tar")
        for db in sorted((app_dir / "sqlite").glob("*")):
            conn.put(str(db), f"{remote}/sqlite/{db.name}")
        argv = ("sh", "-c", WRITE_VOLUME, "write-volume", path, remote)
        session.executor.run(Run(argv, host=node, sudo=True, why=f"restore {name}'s volume"))
        lines.append(f"volumes: {name} restored to {node}:{path}")
    return lines


def restore_datastore(session: Any, folder: Path) -> str:
    from homelab.core.plan import Plan, Run
    from homelab.k3s.snapshot import STATE_DB

    server = session.cfg.server
    remote = "/var/tmp/homelab-restore-state.db"
    session.connection(server.name).put(str(folder / "datastore"), remote)
    session.executor.execute(
        Plan(
            "restore the K3S datastore",
            [
                Run(("systemctl", "stop", "k3s"), host=server.name, sudo=True),
                Run(
                    (
                        "sh",
                        "-c",
                        f"rm -f {STATE_DB}-wal {STATE_DB}-shm && install -m 0600 {remote} {STATE_DB} && rm -f {remote}",
                    ),
                    host=server.name,
                    sudo=True,
                ),
                Run(("systemctl", "start", "k3s"), host=server.name, sudo=True),
            ],
        )
    )
    return f"datastore: restored onto {server.name}"


def drill(session: Any, snapshot: str | None) -> tuple[list[str], bool]:
    """Restore into scratch, check every artifact, and dry-run the objects against the cluster."""
    restic = _restic(session)
    chosen = choose(restic.snapshots(), snapshot)
    lines = [f"drill: snapshot {chosen.id} ({chosen.time[:19]})"]
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="homelab-drill-") as scratch:
        folder = Path(scratch)
        restic.restore(chosen.id, folder)
        sealed = sealed_secrets_in_repo(resolve_in_project(session.cfg.secrets.sealed_dir))
        for checked, found in (check_manifest(folder), open_artifacts(folder), check_sealed_keys(folder, sealed)):
            lines += [f"ok    {c}" for c in checked]
            problems += found
        if (folder / "cluster").is_dir():
            from homelab.core import cluster

            try:
                applied = cluster.connect(session).apply(cluster_objects(folder / "cluster"), dry_run=True)
                lines.append(f"ok    cluster: {len(applied)} objects accepted by a server-side dry run")
            except HomelabError as err:
                problems.append(f"cluster: objects would not restore: {err}")
    lines += [f"FAIL  {p}" for p in problems]
    return lines, not problems
