"""Putting a backup back: into a directory, or into the cluster and onto the nodes.

The snapshot is first read into a private scratch folder (a read of the
repository, so it happens under ``--dry-run`` too); every change after that is
an action in a plan the executor runs, or only prints under ``--dry-run``:

- ``datastore``: refused unless the snapshot's cluster token matches the
  configured one, and that check comes before anything is stopped. A SQLite
  snapshot replaces ``state.db`` while k3s is stopped; an etcd snapshot is
  restored the way K3S documents it, ``k3s server --cluster-reset
  --cluster-reset-restore-path=<file>`` with the token, and is never written
  as ``state.db``.
- ``sealed-keys``: the Sealed Secrets controller keys, applied.
- ``cluster``: the objects missing from the cluster, stripped of what the API
  server assigned to the originals and created in dependency order
  (``homelab.backup.objects``); then re-checked.
- ``volumes``: each app is stopped (its Deployment scaled to 0, every pod
  gone) before its files are replaced, and brought back to its replica count
  afterwards, also when the restore fails. Argo CD's self-heal would put the
  replicas back within seconds, so automated sync of the app's Application and
  of its parents is paused for the app's restore and resumed after it, also on
  failure; a killed run's pause is resumed by the next run (``gitops.hold``).

The steps run in that order, each planned just before it runs, because each
step's plan depends on what the one before it did.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from homelab.apps.volume_data import ENGINES
from homelab.backup import objects as restoring
from homelab.backup.restic import Restic, restic_for
from homelab.backup.verify import check_manifest, check_sealed_keys, choose, open_artifacts, sealed_secrets_in_repo
from homelab.core.errors import HomelabError, UsageError
from homelab.core.kube import load_manifests
from homelab.core.paths import resolve_in_project
from homelab.core.plan import LOCAL, Action, Apply, Note, Obj, Patch, Plan, Run, Upload, Wait, WriteFile, object_ref
from homelab.core.secret_refs import Secret
from homelab.gitops import hold

# Runs on the node as: sh -c WRITE_VOLUME write-volume DEST STAGED [DB...]; values are arguments, never code.
# The archive is unpacked beside the volume first, so a damaged one fails before anything is removed;
# then the volume's contents are replaced, so files written after the backup do not survive it.
# Each database copy (STAGED/databases/DB, DB relative to the volume's top) replaces the file and any
# stale -wal/-shm/-journal beside it, owned like its directory (the app's user; cp runs as root).
WRITE_VOLUME = r"""
set -e
dest=$1; staged=$2; shift 2
mkdir -p "$staged/new" "$dest"
tar -C "$staged/new" -xpf "$staged/files.tar"
for db in "$@"; do
  to="$staged/new/$db"; mkdir -p "$(dirname "$to")"
  rm -f "$to-wal" "$to-shm" "$to-journal"; cp "$staged/databases/$db" "$to"
  chown "$(stat -c %u:%g "$(dirname "$to")")" "$to"
done
find "$dest" -mindepth 1 -delete
cp -a "$staged/new/." "$dest/"
rm -rf "$staged"
"""
COMPONENTS = ("config", "cluster", "sealed-keys", "datastore", "volumes")
ORDER = ("datastore", "sealed-keys", "cluster", "volumes")  # the config is never restored in place
SQLITE_MAGIC = b"SQLite format 3\x00"
SERVER_DIR = "/var/lib/rancher/k3s/server"
APPLY_CHUNK = 6  # objects per Apply action: each plan line then names every object it creates
NAMESPACE_GONE_TIMEOUT = 180.0
AVAILABLE_TIMEOUT = 300.0
API_TIMEOUT = 300.0


def check_token(session: Any, folder: Path) -> Secret:
    """The snapshot's cluster token, when it is the configured one; refuse before anything stops otherwise."""
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
    return Secret(token.strip() + "\n", current.describe())


def datastore_kind(folder: Path, configured: str) -> str:
    """``sqlite`` or ``etcd``: what the snapshot says it is, checked against its bytes and the config."""
    data = folder / "datastore"
    if not data.is_file():
        raise HomelabError("datastore restore refused: the snapshot has no datastore file; nothing was stopped")
    with data.open("rb") as handle:
        looks_sqlite = handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    manifest = folder / "manifest.json"
    recorded = json.loads(manifest.read_text()).get("datastore") if manifest.is_file() else None
    kind = recorded or ("sqlite" if looks_sqlite else "etcd")
    if looks_sqlite != (kind == "sqlite"):
        raise HomelabError(
            f"datastore restore refused: the snapshot says it is {kind} but its file "
            f"{'is' if looks_sqlite else 'is not'} a SQLite database; nothing was stopped"
        )
    if kind != configured:
        raise HomelabError(
            f"datastore restore refused: the snapshot is a {kind} snapshot but k3s.datastore is {configured}; "
            f"restore it into a cluster configured with k3s.datastore: {kind}; nothing was stopped"
        )
    return kind


def restore(
    session: Any, snapshot: str | None, components: list[str], target: Path | None, source: str = "local"
) -> list[str]:
    """Restore into ``target`` or in place from ``source`` (local or offsite); the lines to print when done."""
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise UsageError(f"unknown component {unknown[0]!r}; choose from {', '.join(COMPONENTS)}")
    restic = restic_for(session, source)
    chosen = choose(restic.snapshots(), snapshot)
    includes = [f"/{c}" for c in components]
    if target is not None:
        args = restic.restore_args(chosen.id, target, includes or None)
        restic.execute(Plan(f"restore snapshot {chosen.id} into {target}", [restic.action(*args, why="restore")]))
        return [] if session.dry_run else [f"snapshot {chosen.id} restored into {target}"]
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="homelab-restore-") as scratch:
        folder = Path(scratch)
        restic.restore_into_scratch(chosen.id, folder, includes)
        wanted = [c for c in ORDER if (not components or c in components) and (folder / c).is_dir()]
        lines += [f"{c}: not in snapshot {chosen.id}" for c in components if c in ORDER and c not in wanted]
        token = None
        if "datastore" in wanted:
            datastore_kind(folder / "datastore", session.cfg.k3s.datastore)
            token = check_token(session, folder)
        for component in wanted:
            if component == "datastore" and token is not None:
                lines += restore_datastore(session, folder / "datastore", token, chosen.id)
            elif component == "sealed-keys":
                lines += restore_sealed_keys(session, folder / "sealed-keys")
            elif component == "cluster":
                lines += restore_cluster(session, folder / "cluster", chosen.id)
            elif component == "volumes":
                lines += restore_volumes(session, folder / "volumes")
        if "config" in components:
            lines.append("config: restore it with --to DIR and compare; the live config is never overwritten")
    return [] if session.dry_run else lines


# --- sealed keys ---------------------------------------------------------------------------------


def restore_sealed_keys(session: Any, folder: Path) -> list[str]:
    """Apply the backed-up keys, then restart the controller: it reads its keys only when it starts."""
    keys = load_manifests([(folder / "keys.yaml").read_text()]) if (folder / "keys.yaml").is_file() else []
    plan = Plan("restore the Sealed Secrets controller keys")
    if not keys:
        plan.add(Note("the snapshot holds no controller key"))
    else:
        plan.add(Apply(tuple(keys), why="controller keys"))
        plan.extend(controller_restart(session))
    session.executor.execute(plan)
    return [f"sealed-keys: {len(keys)} controller key(s) restored, controller restarted to load them"]


def controller_restart(session: Any) -> list[Action]:
    """Restart the Sealed Secrets controller: a rollout restart on a cluster, the process on the sandbox."""
    cfg = session.cfg
    if cfg.target == "sandbox":
        from homelab.sandbox import controllers

        return controllers.restart_actions(session, "sealed-secrets-controller")
    name, ns = cfg.secrets.controller_name, cfg.secrets.controller_namespace
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
    client = session.executor.kube
    return [
        Patch("apps/v1", "Deployment", name, ns, body, why="the controller reads its keys only at start"),
        Wait(f"Deployment {ns}/{name} to roll out", lambda: client().deployments_pending([(ns, name)]), 300),
    ]


# --- cluster objects -----------------------------------------------------------------------------


def backed_up_objects(folder: Path) -> list[Obj]:
    return load_manifests(p.read_text() for p in sorted(folder.glob("*.yaml")))


def observe_live(kube: Any, objects: list[Obj]) -> restoring.Live:
    """Which backed-up objects exist now, with their uids (one LIST per kind), and which namespaces are going."""
    uids: dict[restoring.ObjectKey, str] = {}
    for item in kube.live_index(objects).values():
        uids[restoring.key_of(item)] = item["metadata"].get("uid", "")
    terminating = frozenset(
        ns["metadata"]["name"]
        for ns in kube.list_objects("v1", "Namespace")
        if ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating"
    )
    return restoring.Live(uids, terminating)


def cluster_plan(session: Any, kube: Any, backed_up: list[Obj], snapshot: str) -> tuple[Plan, restoring.Prepared]:
    """Create what is missing, tier by tier, with the waits each tier needs before the next."""
    from homelab.gitops import tree

    live = observe_live(kube, backed_up)
    pinned = restoring.pinned_node_ports(tree.objects_in_apply_order(tree.render(session.cfg)))
    prepared = restoring.prepare(backed_up, live, pinned)
    plan = Plan(f"restore the cluster objects of snapshot {snapshot} that are missing")
    if prepared.present:
        plan.add(Note(f"{len(prepared.present)} backed-up objects exist and are kept as they are"))
    if prepared.left_to_controllers:
        plan.add(Note(f"{len(prepared.left_to_controllers)} objects are left to the controllers that make them"))
    rebind = restoring.claims_to_rebind(prepared, kube.list_objects("v1", "PersistentVolume"))
    for tier, objects in prepared.tiers:
        if tier == "namespaces":
            going = sorted(o["metadata"]["name"] for o in objects if o["metadata"]["name"] in live.terminating)
            if going:
                plan.add(
                    Wait(
                        f"namespaces still being deleted to be gone: {', '.join(going)}",
                        namespaces_gone(kube, going),
                        NAMESPACE_GONE_TIMEOUT,
                    )
                )
        if tier == "configuration and storage":
            plan.extend(
                Patch(
                    "v1",
                    "PersistentVolume",
                    volume,
                    None,
                    {"spec": {"claimRef": {"uid": None, "resourceVersion": None}}},
                    why=f"free it for the restored claim {claim}",
                )
                for volume, claim in rebind
            )
        for start in range(0, len(objects), APPLY_CHUNK):
            plan.add(Apply(tuple(objects[start : start + APPLY_CHUNK]), why=tier))
        crds = [o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"]
        if crds:
            plan.add(Wait(f"{len(crds)} CustomResourceDefinitions to be established", crds_established(kube, crds)))
    deployments = [
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in prepared.objects if o["kind"] == "Deployment"
    ]
    if deployments:
        shown = ", ".join(f"{ns}/{name}" for ns, name in deployments[:6])
        plan.add(
            Wait(
                f"restored Deployments to be Available: {shown}",
                lambda: kube.deployments_pending(deployments),
                AVAILABLE_TIMEOUT,
            )
        )
    return plan, prepared


def namespaces_gone(kube: Any, names: list[str]) -> Any:
    def check() -> str | None:
        left = [n for n in names if kube.get("v1", "Namespace", n) is not None]
        return f"{', '.join(left)} terminating" if left else None

    return check


def crds_established(kube: Any, names: list[str]) -> Any:
    def check() -> str | None:
        for name in names:
            crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name) or {}
            conditions = (crd.get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                return f"{name} not established"
        return None

    return check


def restore_cluster(session: Any, folder: Path, snapshot: str) -> list[str]:
    """Create the missing objects, then look again: anything still missing is named and fails the task."""
    kube = session.executor.kube()
    backed_up = backed_up_objects(folder)
    plan, prepared = cluster_plan(session, kube, backed_up, snapshot)
    session.executor.execute(plan)
    if session.dry_run:
        return []
    again = restoring.prepare(backed_up, observe_live(kube, backed_up))
    if again.objects:
        missing = ", ".join(object_ref(o) for o in again.objects[:10])
        raise HomelabError(f"cluster restore not converged: still missing after the restore: {missing}")
    return [f"cluster: {len(prepared.objects)} objects restored, {len(prepared.present)} already present; converged"]


# --- volumes -------------------------------------------------------------------------------------


def pods_gone(kube: Any, namespace: str, selector: str) -> Any:
    def check() -> str | None:
        pods = kube.list_objects("v1", "Pod", namespace, label_selector=selector)
        return f"{len(pods)} pod(s) still there" if pods else None

    return check


def volume_plan(
    session: Any, kube: Any, name: str, app_dir: Path, left: list[hold.Paused] | None = None
) -> tuple[Plan, list[Action]]:
    """Stop the app, replace its files on its node, start it again; and the actions that bring it back on failure.

    ``left``: what a killed run left paused (``hold.holding``), adopted rather than resumed first.
    """
    from homelab.backup.components import volume_location

    node, path = volume_location(kube, name, f"{name}-data", session)
    here = node == LOCAL  # the sandbox's volume: a directory of this user's, staged in the state directory
    remote = str(session.state_dir / f"volume-restore-{name}") if here else f"/var/tmp/homelab-restore-{name}"
    sudo = not here
    deployment = kube.get("apps/v1", "Deployment", name, name)
    replicas = int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
    plan = Plan(f"restore {name}'s volume onto {node}:{path}")
    held = hold.observe(kube, [deployment] if deployment else [], left or [])
    plan.extend(held.pause(session.state_dir, f"the restore of {name}'s volume"))
    back: list[Action] = []
    if replicas:
        labels = (deployment or {}).get("spec", {}).get("selector", {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        plan.add(
            Patch(
                "apps/v1",
                "Deployment",
                name,
                name,
                {"spec": {"replicas": 0}},
                why=f"scale to 0 (from {replicas}): stop {name} before its files are replaced",
            ),
            Wait(f"every pod of {name} to stop", pods_gone(kube, name, selector)),
        )
        back = [
            Patch(
                "apps/v1",
                "Deployment",
                name,
                name,
                {"spec": {"replicas": replicas}},
                why=f"scale back to {replicas}: start {name} again",
            )
        ]
    else:
        plan.add(Note(f"{name}: no running Deployment to stop"))
    plan.add(Run(("rm", "-rf", remote), host=node, sudo=sudo, why="clear leftovers of an earlier restore"))
    plan.add(Upload(str(app_dir / "files.tar"), f"{remote}/files.tar", host=node, why=f"{name}'s files"))
    databases = []
    for engine in ENGINES:  # the copies taken consistently by the backup (homelab.backup.volume_read)
        for copy in sorted(p for p in (app_dir / engine).rglob("*") if p.is_file()):
            db = str(copy.relative_to(app_dir / engine))
            databases.append(db)
            plan.add(Upload(str(copy), f"{remote}/databases/{db}", host=node, why=f"{name}'s {engine} database"))
    write = ("sh", "-c", WRITE_VOLUME, "write-volume", path, remote, *databases)
    plan.add(Run(write, host=node, sudo=sudo, why=f"replace {name}'s files", timeout=3600))
    plan.extend(back)
    if replicas:
        plan.add(Wait(f"{name} to be Available again", lambda: kube.deployment_waiting(name, name), AVAILABLE_TIMEOUT))
    resume = held.resume(session.state_dir)
    plan.extend(resume)
    cleanup = Run(("rm", "-rf", remote), host=node, sudo=sudo, why="remove the staged files")
    return plan, [*back, cleanup, *resume]


def restore_volumes(session: Any, folder: Path) -> list[str]:
    """Each app's volume in turn, Argo CD held back from each app while its volume is replaced (``hold``)."""
    with hold.holding(session) as left:
        return _restore_volumes(session, folder, left)


def _restore_volumes(session: Any, folder: Path, left: list[hold.Paused]) -> list[str]:
    kube = session.executor.kube()
    lines = []
    for app_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = app_dir.name
        if kube.get("v1", "PersistentVolumeClaim", f"{name}-data", name) is None:
            session.executor.execute(
                Plan(f"restore {name}'s volume", [Note(f"planned once the claim {name}/{name}-data exists")])
            )
            continue
        plan, recovery = volume_plan(session, kube, name, app_dir, left)
        execute_or_recover(session, plan, Plan(f"bring {name} back after the failed volume restore", recovery))
        lines.append(f"volumes: {name} restored ({plan.title.split(' onto ')[-1]})")
    return lines


def execute_or_recover(session: Any, plan: Plan, recovery: Plan) -> None:
    """Run ``plan``; if it fails at any step, run ``recovery`` and say so in the error."""
    try:
        session.executor.execute(plan)
    except BaseException as err:
        try:
            session.executor.execute(recovery)
        except HomelabError as again:
            raise HomelabError(f"{err}; putting things back failed too: {again}") from None
        if isinstance(err, HomelabError):
            done = "; ".join(a.display().split("] ", 1)[-1] for a in recovery.changes())
            raise HomelabError(f"{err}. Put back: {done}") from None
        raise


# --- datastore -----------------------------------------------------------------------------------


def datastore_plan(session: Any, folder: Path, token: Secret, snapshot: str) -> tuple[Plan, list[Action]]:
    """Replace the server's datastore from ``folder``; and the actions that restart k3s if that fails."""
    from homelab.k3s.snapshot import STATE_DB

    server = session.cfg.server.name
    kind = datastore_kind(folder, session.cfg.k3s.datastore)
    stop = Run(("systemctl", "stop", "k3s"), host=server, sudo=True, why="stop k3s")
    start = Run(("systemctl", "start", "k3s"), host=server, sudo=True, why="start k3s")
    kube = session.executor.kube
    api = Wait("the API server to answer", lambda: None if kube().ready() else "not answering", API_TIMEOUT)
    if kind == "sqlite":
        staged = "/var/tmp/homelab-restore-state.db"
        plan = Plan(
            f"restore the SQLite datastore of {server} from snapshot {snapshot}",
            [
                Upload(str(folder / "datastore"), staged, host=server, why="stage state.db before stopping k3s"),
                stop,
                Run(("rm", "-f", f"{STATE_DB}-wal", f"{STATE_DB}-shm"), host=server, sudo=True, why="old WAL"),
                Run(("install", "-m", "0600", staged, STATE_DB), host=server, sudo=True, why="replace state.db"),
                Run(("rm", "-f", staged), host=server, sudo=True),
                start,
                api,
            ],
        )
        return plan, [start, Run(("rm", "-f", staged), host=server, sudo=True)]
    staged = f"{SERVER_DIR}/homelab-restore-etcd-snapshot"
    token_file = f"{SERVER_DIR}/homelab-restore-token"
    reset = (
        "k3s",
        "server",
        "--cluster-reset",
        f"--cluster-reset-restore-path={staged}",
        f"--token-file={token_file}",
    )
    cleanup = Run(("rm", "-f", staged, token_file), host=server, sudo=True, why="remove the staged snapshot and token")
    plan = Plan(
        f"restore the etcd datastore of {server} from snapshot {snapshot} (k3s cluster-reset)",
        [
            Upload(str(folder / "datastore"), staged, host=server, sudo=True, why="stage the etcd snapshot"),
            WriteFile(token_file, token, 0o600, host=server, sudo=True, why="the snapshot's cluster token"),
            stop,
            Run(reset, host=server, sudo=True, why="reset etcd to the snapshot", timeout=900),
            cleanup,
            start,
            api,
        ],
    )
    return plan, [start, cleanup]


def restore_datastore(session: Any, folder: Path, token: Secret, snapshot: str) -> list[str]:
    plan, recovery = datastore_plan(session, folder, token, snapshot)
    execute_or_recover(session, plan, Plan(f"start k3s again on {session.cfg.server.name}", recovery))
    return [f"datastore: restored onto {session.cfg.server.name}"]


# --- drill ---------------------------------------------------------------------------------------


def drill(session: Any, snapshot: str | None) -> tuple[list[str], bool]:
    """Restore into scratch, check every artifact, and dry-run the objects against the cluster."""
    restic: Restic = restic_for(session)
    chosen = choose(restic.snapshots(), snapshot)
    lines = [f"drill: snapshot {chosen.id} ({chosen.time[:19]})"]
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="homelab-drill-") as scratch:
        folder = Path(scratch)
        restic.restore_into_scratch(chosen.id, folder)
        sealed = sealed_secrets_in_repo(resolve_in_project(session.cfg.secrets.sealed_dir))
        for checked, found in (check_manifest(folder), open_artifacts(folder), check_sealed_keys(folder, sealed)):
            lines += [f"ok    {c}" for c in checked]
            problems += found
        if (folder / "cluster").is_dir():
            try:
                kube = session.executor.kube()
                backed_up = backed_up_objects(folder / "cluster")
                prepared = restoring.prepare(backed_up, restoring.Live())
                applied = kube.apply(prepared.objects, dry_run=True)
                lines.append(f"ok    cluster: {len(applied)} objects accepted by a server-side dry run")
            except HomelabError as err:
                problems.append(f"cluster: objects would not restore: {err}")
    lines += [f"FAIL  {p}" for p in problems]
    return lines, not problems
