"""``inv up --restore``: an empty target brought back from a backup, its data in place before its apps start.

The order is what makes the apps come back with their data:

1. the layers below GitOps (the VMs and K3S, or the sandbox): an empty cluster;
2. ``sealed-keys``: the Sealed Secrets controller's keys from the backup, so every
   SealedSecret in Git decrypts again (the controller reads its keys when it
   starts: restarted when it runs already, else it finds them at its first start);
3. ``cluster``: the backed-up objects Git does not hold (none Argo CD tracks, no
   Application, no PersistentVolume: the volume step makes the volumes), created
   where missing (``backup.restore``'s cluster step);
4. ``volume-claims``: the namespace and claim (on the sandbox with its volume) of every
   app whose volume the backup holds, applied from the render, all bound; then
   ``volume:<app>``, one per app: its volume filled from the backup, while no
   Application exists that could start the app;
5. the GitOps layer and the ones after it: the root Application is applied only now,
   so Argo CD syncs every app onto a volume that already holds its data, and the
   layer waits for every Application Synced and Healthy.

On a cluster of K3S nodes a claim gets its volume only once a pod uses it
(local-path's WaitForFirstConsumer), so there the volumes are restored in place
after the sync instead (each app stopped, filled, started: ``backup.restore``).

The plan is these steps, printed by ``--dry-run`` and run by the same loop.
``<state_dir>/rebuild.json`` names the snapshot and the steps done: a re-run
after an interruption finishes the same rebuild (its layers converge, the steps
done are skipped) instead of refusing a target that is no longer empty.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homelab.core import state_files
from homelab.core.errors import HomelabError, UsageError
from homelab.core.plan import Action, Apply, Note, Obj, Plan, Run, Wait, WriteFile
from homelab.gitops.hold import APPLICATION, tracking_owner

MARKER = "rebuild.json"
GITOPS = "gitops"
CLAIM_BOUND_TIMEOUT = 120.0
# Kinds the rebuild leaves to what makes them again: Argo CD's Applications come from the root
# Application (applied last, so no app syncs before its data is back); volumes from the volume step.
LEFT_OUT_KINDS = frozenset({APPLICATION[1], "ApplicationSet", "PersistentVolume"})


@dataclass(frozen=True)
class Contents:
    """What one snapshot holds that a rebuild puts back."""

    snapshot: str
    source: str
    sealed_keys: int
    objects: int  # cluster objects Git does not hold, outside the namespaces Git holds
    later: int  # the ones inside them, restored after the sync
    volumes: tuple[str, ...]  # apps whose volume data it holds


@dataclass(frozen=True)
class Step:
    """One step of a rebuild: ``layer:<name>``, ``sealed-keys``, ``cluster``, ``volume:<app>`` or ``volumes``."""

    name: str
    says: str

    @property
    def recorded(self) -> bool:
        """Done once, then skipped by a re-run; a layer converges and always runs."""
        return not self.name.startswith("layer:")


@dataclass
class Record:
    """``rebuild.json``: the snapshot being restored, from where, and the steps done."""

    snapshot: str
    source: str
    done: list[str] = field(default_factory=list)

    def text(self) -> str:
        body = {"snapshot": self.snapshot, "source": self.source, "done": self.done}
        return json.dumps(body, indent=2, sort_keys=True) + "\n"


def read_record(state_dir: Path) -> Record | None:
    path = state_dir / MARKER
    doc = state_files.read_json(path, state_files.REBUILD)
    if doc is None:
        return None
    try:
        return Record(str(doc["snapshot"]), str(doc["source"]), [str(d) for d in doc.get("done", [])])
    except (KeyError, TypeError):
        raise state_files.broken(path, state_files.REBUILD, "it does not name the snapshot and its source") from None


# --- planning (pure) ------------------------------------------------------------------------------


def restorable(objects: list[Obj], before_sync: bool = True) -> list[Obj]:
    """The backed-up objects a cluster step creates: none that Git holds (Argo CD tracks it), none left out.

    ``before_sync``: nor any in a namespace Git holds (that namespace does not exist before
    Argo CD makes it); those are restored after the sync, where still missing.
    """
    found = [o for o in objects if o.get("kind") not in LEFT_OUT_KINDS and tracking_owner(o) is None]
    if not before_sync:
        return found
    held = {o["metadata"]["name"] for o in objects if o.get("kind") == "Namespace" and tracking_owner(o) is not None}
    return [o for o in found if (o.get("metadata") or {}).get("namespace") not in held]


def refusal(target: str, applications: list[str], app_namespaces: list[str]) -> str | None:
    """Why ``up --restore`` must not run on this target (None: it is empty)."""
    found = []
    if applications:
        found.append(f"{len(applications)} Argo CD Application(s) ({', '.join(sorted(applications)[:3])})")
    if app_namespaces:
        found.append(f"the namespaces of apps {', '.join(sorted(app_namespaces)[:5])}")
    if not found:
        return None
    return (
        f"up --restore rebuilds an empty target, and target {target} already holds {' and '.join(found)}. "
        "To bring back what is missing there, use inv backup.restore; to rebuild it, inv down first"
    )


def plan_steps(
    contents: Contents,
    below: list[str],
    above: list[str],
    done: set[str],
    fill_first: bool,
) -> list[Step]:
    """The rebuild's steps in order, less the ones a stopped run finished.

    ``below``: the layers under GitOps (the empty cluster); ``above``: GitOps and after.
    ``fill_first``: volumes can be filled before their apps exist (the sandbox); else in place after the sync.
    """
    where = f"snapshot {contents.snapshot} ({contents.source})"
    steps = [Step(f"layer:{name}", f"bring up layer {name} (an empty cluster)") for name in below]
    keys = f"{contents.sealed_keys} key(s)" if contents.sealed_keys else "none in the snapshot"
    steps.append(Step("sealed-keys", f"restore the Sealed Secrets controller keys from {where}: {keys}"))
    steps.append(Step("cluster", f"restore the {contents.objects} backed-up objects Git does not hold, where missing"))
    if fill_first and contents.volumes:
        apps = ", ".join(contents.volumes)
        steps.append(Step("volume-claims", f"make the namespaces and claims of {apps}; wait until each is bound"))
    if fill_first:
        steps += [
            Step(f"volume:{app}", f"fill {app}'s volume before Argo CD may start {app}") for app in contents.volumes
        ]
    for name in above:
        says = f"bring up layer {name}"
        if name == GITOPS:
            says += ": the root Application now, every app syncs onto its data; wait for every Application"
        steps.append(Step(f"layer:{name}", says + " Synced and Healthy" if name == GITOPS else says))
    if contents.later:
        steps.append(
            Step(
                "cluster-after-sync",
                f"restore the {contents.later} backed-up objects Git does not hold in the namespaces it holds, "
                "where still missing",
            )
        )
    if contents.volumes and not fill_first:
        apps = ", ".join(contents.volumes)
        steps.append(Step("volumes", f"restore the volumes of {apps} in place (each app stopped while filled)"))
    return [s for s in steps if not (s.recorded and s.name in done)]


def shown(steps: list[Step], contents: Contents, resumed: Record | None) -> Plan:
    """The plan ``--dry-run`` prints (and a real run shows before it starts)."""
    title = f"rebuild from snapshot {contents.snapshot} ({contents.source})"
    plan = Plan(title)
    if resumed is not None and resumed.done:
        plan.add(Note(f"an interrupted rebuild finished {', '.join(resumed.done)}: those steps are skipped"))
    plan.extend(Note(f"{i}. {step.says}") for i, step in enumerate(steps, 1))
    return plan


# --- observing ------------------------------------------------------------------------------------


def read_contents(folder: Path, snapshot: str, source: str) -> Contents:
    """What the scratch copy of a snapshot holds for a rebuild."""
    from homelab.backup.restore import backed_up_objects
    from homelab.core.kube import load_manifests

    keys_file = folder / "sealed-keys" / "keys.yaml"
    keys = load_manifests([keys_file.read_text()]) if keys_file.is_file() else []
    backed_up = backed_up_objects(folder / "cluster") if (folder / "cluster").is_dir() else []
    objects = restorable(backed_up)
    later = len(restorable(backed_up, before_sync=False)) - len(objects)
    volumes_dir = folder / "volumes"
    volumes = tuple(sorted(p.name for p in volumes_dir.iterdir() if p.is_dir())) if volumes_dir.is_dir() else ()
    return Contents(snapshot, source, len(keys), len(objects), later, volumes)


def observed_refusal(session: Any) -> str | None:
    """Look at the target: None when no cluster answers there, or one that holds nothing of the homelab."""
    cfg = session.cfg
    if cfg.target == "sandbox":
        from homelab.sandbox import cluster as sandbox

        paths = sandbox.paths_for(cfg, session.state_dir)
        if not (paths.cluster_dir / sandbox.CREATED_MARKER).is_file():
            return None
    try:
        kube = session.executor.kube()
        if not kube.ready(timeout=5):
            return None
    except Exception:  # no kubeconfig, no context, nothing answering: no cluster there yet
        return None
    try:
        applications = [a["metadata"]["name"] for a in kube.list_objects(*APPLICATION)]
    except HomelabError:
        applications = []  # no Argo CD there
    names = {ns["metadata"]["name"] for ns in kube.list_objects("v1", "Namespace")}
    return refusal(cfg.target, applications, sorted(set(cfg.deployed_apps) & names))


# --- running --------------------------------------------------------------------------------------


def sealed_keys_plan(session: Any, folder: Path) -> Plan:
    """Apply the keys; restart the controller when it runs (on K3S Argo CD installs it later: it finds them)."""
    from homelab.backup.restore import controller_restart
    from homelab.core.kube import load_manifests

    keys_file = folder / "keys.yaml"
    keys = load_manifests([keys_file.read_text()]) if keys_file.is_file() else []
    plan = Plan("restore the Sealed Secrets controller keys")
    if not keys:
        return plan.add(Note("the snapshot holds no controller key: new SealedSecrets must be sealed again"))
    plan.add(Apply(tuple(keys), why="the controller keys every SealedSecret in Git was sealed with"))
    cfg = session.cfg
    running = cfg.target == "sandbox" or session.executor.kube().get(
        "apps/v1", "Deployment", cfg.secrets.controller_name, cfg.secrets.controller_namespace
    )
    if running:
        plan.extend(controller_restart(session))
    else:
        plan.add(Note("the Sealed Secrets controller is not installed yet: it loads these keys when it starts"))
    return plan


def claim_bound(kube: Any, namespace: str, name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        claim = kube.get("v1", "PersistentVolumeClaim", name, namespace) or {}
        phase = (claim.get("status") or {}).get("phase")
        return None if phase == "Bound" else f"{namespace}/{name} is {phase or 'not created'}"

    return check


def volume_home(session: Any, app: str) -> list[Obj]:
    """What an app's volume needs before it is filled: its namespace and claim as rendered (sandbox: its volume)."""
    from homelab.gitops import tree

    rendered = tree.objects_in_apply_order(tree.render(session.cfg))
    claim_name = f"{app}-data"
    found = [
        o
        for o in rendered
        if (o["kind"] == "Namespace" and o["metadata"]["name"] == app)
        or (
            o["kind"] == "PersistentVolumeClaim"
            and o["metadata"].get("namespace") == app
            and o["metadata"]["name"] == claim_name
        )
    ]
    claims = [o for o in found if o["kind"] == "PersistentVolumeClaim"]
    if not claims:
        raise HomelabError(f"the backup holds a volume of {app}, but the config renders no claim {app}/{claim_name}")
    if session.cfg.target == "sandbox":
        from homelab.sandbox.cluster import volumes_for

        found += volumes_for(claims)
    return found


def homes_plan(session: Any, apps: tuple[str, ...]) -> Plan:
    """The apps' namespaces and claims, all bound: each volume exists before its app does.

    One apply and one wait for all of them: the volume controller binds claims on its own
    schedule (seconds apart), so waiting for each in turn would add those seconds up.
    """
    kube = session.executor.kube()
    plan = Plan(f"make the volumes of {', '.join(apps)} before Argo CD starts them")
    for app in apps:
        plan.add(Apply(tuple(volume_home(session, app)), why=f"{app}'s namespace and claim, as rendered"))
    claims = [(app, f"{app}-data") for app in apps]

    def all_bound() -> str | None:
        return next((why for ns, name in claims if (why := claim_bound(kube, ns, name)()) is not None), None)

    return plan.add(Wait(f"{len(claims)} claims to be bound", all_bound, CLAIM_BOUND_TIMEOUT))


def run(
    session: Any,
    layer_up: Callable[[str], bool],
    below: list[str],
    above: list[str],
    wanted: str | None,
    source: str,
) -> list[str]:
    """Rebuild (or under ``--dry-run`` print the plan); the lines to print when done."""
    from homelab.backup.restic import restic_for
    from homelab.backup.verify import choose

    started = time.monotonic()
    record = read_record(session.state_dir)
    if record is not None:
        if wanted and not record.snapshot.startswith(wanted):
            raise UsageError(
                f"an interrupted rebuild from snapshot {record.snapshot} is not finished "
                f"({session.state_dir / MARKER}); run inv up --restore {record.snapshot} to finish it"
            )
        if record.source != source:
            raise UsageError(
                f"an interrupted rebuild from the {record.source} repository is not finished; "
                f"run inv up --restore --restore-from {record.source} to finish it"
            )
        wanted = record.snapshot
    restic = restic_for(session, source)  # --restore-from offsite without backup.offsite: UsageError
    try:
        chosen = choose(restic.snapshots(), wanted)
    except HomelabError as err:
        raise UsageError(f"up --restore: {err}") from None
    if record is None and (why := observed_refusal(session)):
        raise UsageError(why)
    record = record or Record(chosen.id, source)
    fill_first = session.cfg.target == "sandbox"
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="homelab-rebuild-") as scratch:
        folder = Path(scratch)
        restic.restore_into_scratch(chosen.id, folder, ["/sealed-keys", "/cluster", "/volumes"])
        contents = read_contents(folder, chosen.id, source)
        steps = plan_steps(contents, below, above, set(record.done), fill_first)
        session.executor.execute(shown(steps, contents, record))
        if session.dry_run:
            return []

        def mark(done: str | None, why: str) -> None:
            if done is not None:
                record.done.append(done)
            write = WriteFile(str(session.state_dir / MARKER), record.text(), 0o600, why=why)
            session.executor.execute(Plan("record the rebuild's progress", [write]))

        mark(None, "a re-run finishes this rebuild if it is stopped")
        for i, step in enumerate(steps, 1):
            print(f"[{i}/{len(steps)}] {step.says}", flush=True)
            t0 = time.monotonic()
            lines += run_step(session, step, folder, chosen.id, layer_up)
            print(f"[{i}/{len(steps)}] {step.name}: done ({time.monotonic() - t0:.1f}s)", flush=True)
            if step.recorded:
                mark(step.name, f"{step.name} done")
        remove: Action = Run(("rm", "-f", "--", str(session.state_dir / MARKER)), why="the rebuild is finished")
        session.executor.execute(Plan("the rebuild is finished", [remove]))
    lines.append(
        f"up --restore: target {session.cfg.target} rebuilt from snapshot {chosen.id} ({source}) "
        f"in {time.monotonic() - started:.1f}s"
    )
    return lines


def run_step(session: Any, step: Step, folder: Path, snapshot: str, layer_up: Callable[[str], bool]) -> list[str]:
    """Run one step; the lines it reports."""
    from homelab.backup import restore as restoring

    if step.name.startswith("layer:"):
        layer_up(step.name.removeprefix("layer:"))
        return []
    if step.name == "sealed-keys":
        session.executor.execute(sealed_keys_plan(session, folder / "sealed-keys"))
        return []
    if step.name in ("cluster", "cluster-after-sync"):
        if not (folder / "cluster").is_dir():
            return ["cluster: not in the snapshot"]
        kube = session.executor.kube()
        backed_up = restorable(restoring.backed_up_objects(folder / "cluster"), step.name == "cluster")
        plan, prepared = restoring.cluster_plan(session, kube, backed_up, snapshot)
        session.executor.execute(plan)
        return [f"cluster: {len(prepared.objects)} objects restored, {len(prepared.present)} already present"]
    if step.name == "volume-claims":
        apps = tuple(sorted(p.name for p in (folder / "volumes").iterdir() if p.is_dir()))
        session.executor.execute(homes_plan(session, apps))
        return []
    if step.name.startswith("volume:"):
        app = step.name.removeprefix("volume:")
        filled, _ = restoring.volume_plan(session, session.executor.kube(), app, folder / "volumes" / app)
        session.executor.execute(filled)
        return [f"volumes: {app} filled before it started"]
    if step.name == "volumes":
        return restoring.restore_volumes(session, folder / "volumes")
    raise HomelabError(f"unknown rebuild step {step.name}")
