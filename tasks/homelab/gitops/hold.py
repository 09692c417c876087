"""Holding Argo CD back while a day-2 task changes what it manages, and letting it go again.

Every Application the toolkit renders syncs automatically with ``selfHeal``: Argo CD
puts any live change back to what Git says, within seconds (its self-heal backoff
starts at 2 s). A task that must change a managed object for a while (a volume
restore scales the app to 0; an upgrade's drain lifts a PodDisruptionBudget) would be
undone under it. So the task pauses automated sync for exactly as long as it needs:

- Which Applications: the one that manages the object (its
  ``argocd.argoproj.io/tracking-id`` annotation names it) and every Application above
  it (each one's own tracking id names its parent, up to the app-of-apps root).
  The parents matter: the root manages the child Application objects themselves,
  and with its own self-heal it would put the child's ``automated`` back from Git
  within seconds, which re-enables the child's self-heal. So the parents are paused
  first (top down) and resumed last.
- How: a merge patch that removes ``spec.syncPolicy.automated``, the switch Argo CD
  documents for toggling auto-sync of a standalone Application ("toggling auto-sync
  is performed by changing the application's spec.syncPolicy.automated field",
  https://argo-cd.readthedocs.io/en/release-3.0/user-guide/auto_sync/). Removing it
  rather than setting ``automated.enabled: false`` works on every Argo CD 3.x; the
  original value is kept and patched back exactly.
- Where it is remembered: before the first patch, ``<state_dir>/argocd-paused.json``
  names every paused Application with its original ``automated`` value. The task
  resumes in a ``finally``-style recovery plan when it fails or is interrupted; when
  it is killed outright, the marker stays and the next run of a task that holds
  Argo CD back (and ``inv up``) puts it back before anything else
  (``recovery_plan``). A run holds ``argocd-hold.lock`` while it holds Argo CD back,
  so a second run never mistakes a live pause for a stale one.

The pause, the resume and the marker are plan actions (``Patch``, ``WriteFile``,
``Run``): ``--dry-run`` prints them like every other step.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homelab.core import locks, state_files
from homelab.core.errors import HomelabError
from homelab.core.plan import Action, Note, Obj, Patch, Plan, Run, WriteFile

APPLICATION = ("argoproj.io/v1alpha1", "Application")
TRACKING = "argocd.argoproj.io/tracking-id"
INSTANCE_LABEL = "app.kubernetes.io/instance"  # Argo CD's label tracking method, when configured
MARKER = "argocd-paused.json"
LOCK = "argocd-hold.lock"
MAX_DEPTH = 8  # app of apps of apps...: a loop in tracking ids never walks forever


@dataclass(frozen=True)
class Paused:
    """One Application whose automated sync a task turned off, with what to put back."""

    name: str
    namespace: str
    automated: Obj


def tracking_owner(obj: Obj | None) -> str | None:
    """The Application that manages ``obj``: its tracking annotation (``app:group/kind:ns/name``), or label."""
    meta = (obj or {}).get("metadata") or {}
    tracking = (meta.get("annotations") or {}).get(TRACKING)
    if tracking and ":" in tracking:
        return str(tracking.split(":", 1)[0])
    label = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    return str(label) if label else None


def chain(applications: dict[str, Obj], owner: str | None) -> list[Obj]:
    """``owner``'s Application and every one above it, the topmost (the root) first."""
    found: list[Obj] = []
    name = owner
    while name and name in applications and len(found) < MAX_DEPTH:
        app = applications[name]
        if any(a is app for a in found):
            break
        found.append(app)
        name = tracking_owner(app)
    return list(reversed(found))


def to_pause(applications: list[Obj], left: Sequence[Paused] = ()) -> tuple[list[Paused], list[str]]:
    """The Applications with automated sync on (what to pause); a note for each one already off.

    One in ``left`` (a killed run paused it) is paused with the original value that run kept:
    its live ``automated`` is the pause, not what to put back.
    """
    kept = {p.name: p for p in left}
    paused, notes = [], []
    for app in applications:
        meta = app["metadata"]
        if meta["name"] in kept:
            paused.append(kept[meta["name"]])
            continue
        automated = ((app.get("spec") or {}).get("syncPolicy") or {}).get("automated")
        if automated is None or automated.get("enabled") is False:
            notes.append(f"Application {meta['name']}: automated sync is already off; left as it is")
            continue
        paused.append(Paused(meta["name"], meta.get("namespace", "argocd"), dict(automated)))
    return paused, notes


def marker_path(state_dir: Path) -> Path:
    return state_dir / MARKER


def marker_text(task: str, paused: list[Paused]) -> str:
    entries = [{"name": p.name, "namespace": p.namespace, "automated": p.automated} for p in paused]
    return json.dumps({"task": task, "applications": entries}, indent=2, sort_keys=True) + "\n"


def read_marker(path: Path) -> tuple[str, list[Paused]]:
    """The task and the Applications a marker names; a marker that names none usably stops the task.

    Guessing would be worse either way: resuming nothing leaves apps paused for good,
    resuming everything would turn on sync the owner had switched off.
    """
    doc = state_files.read_json(path, state_files.ARGOCD_PAUSE) or {}
    try:
        paused = [Paused(str(e["name"]), str(e["namespace"]), dict(e["automated"])) for e in doc["applications"]]
    except (KeyError, TypeError, ValueError):
        raise state_files.broken(path, state_files.ARGOCD_PAUSE, "it does not list the Applications") from None
    return str(doc.get("task", "an earlier run")), paused


def left_paused(state_dir: Path) -> list[Paused]:
    """What a killed run left paused, by its marker (none without one)."""
    path = marker_path(state_dir)
    return read_marker(path)[1] if path.is_file() else []


def record(state_dir: Path, task: str, paused: list[Paused], why: str) -> WriteFile:
    return WriteFile(str(marker_path(state_dir)), marker_text(task, paused), 0o600, why=why)


def pause_actions(
    state_dir: Path,
    task: str,
    paused: list[Paused],
    carried: Sequence[Paused] = (),
) -> list[Action]:
    """Record, then pause top down: the marker first, so a kill after any patch still knows what to put back.

    ``carried``: paused by a killed run and not by this step; the marker keeps naming them.
    """
    if not paused:
        return []
    names = {p.name for p in paused}
    recorded = [*paused, *(c for c in carried if c.name not in names)]
    actions: list[Action] = [record(state_dir, task, recorded, "what a re-run puts back if this run is killed")]
    for p in paused:
        actions.append(
            Patch(
                *APPLICATION,
                p.name,
                p.namespace,
                {"spec": {"syncPolicy": {"automated": None}}},
                why=f"pause automated sync while {task} works (self-heal would undo it)",
            )
        )
    return actions


def resume_actions(
    state_dir: Path,
    paused: list[Paused],
    carried: Sequence[Paused] = (),
) -> list[Action]:
    """Resume bottom up (the root last), then forget the marker (or keep in it only what is still paused)."""
    if not paused:
        return []
    actions: list[Action] = [
        Patch(
            *APPLICATION,
            p.name,
            p.namespace,
            {"spec": {"syncPolicy": {"automated": p.automated}}},
            why="resume automated sync " + json.dumps(p.automated, sort_keys=True),
        )
        for p in reversed(paused)
    ]
    names = {p.name for p in paused}
    still = [c for c in carried if c.name not in names]
    if still:
        actions.append(record(state_dir, "an earlier, stopped run", still, "still paused by a stopped run"))
    else:
        actions.append(Run(("rm", "-f", "--", str(marker_path(state_dir))), why="Argo CD is no longer held back"))
    return actions


@dataclass(frozen=True)
class Hold:
    """What one task pauses and resumes; empty when no Argo CD Application manages what it changes.

    ``carried``: what a killed run left paused that this hold does not pause itself;
    the marker keeps naming it until ``holding`` resumes it at the end of the task.
    """

    paused: list[Paused]
    notes: list[str]
    carried: list[Paused] = field(default_factory=list)

    def pause(self, state_dir: Path, task: str) -> list[Action]:
        return [*(Note(n) for n in self.notes), *pause_actions(state_dir, task, self.paused, self.carried)]

    def resume(self, state_dir: Path) -> list[Action]:
        return resume_actions(state_dir, self.paused, self.carried)


def observe(kube: Any, managed: list[Obj], left: Sequence[Paused] = ()) -> Hold:
    """The Applications above the objects in ``managed`` (one list of Applications), deduplicated, roots first.

    ``left``: what a killed run left paused (``holding`` yields it): kept paused, with its original.
    """
    owners = [tracking_owner(obj) for obj in managed]
    if not any(owners):
        return Hold([], [], list(left))
    try:
        listed = kube.list_objects(*APPLICATION)
    except HomelabError as err:  # no Argo CD here (its CRD is not served): nothing holds these objects
        return Hold([], [f"no Argo CD Applications to hold back ({err})"], list(left))
    applications = {a["metadata"]["name"]: a for a in listed}
    ordered: list[Obj] = []
    for owner in owners:
        for app in chain(applications, owner):
            if all(a["metadata"]["name"] != app["metadata"]["name"] for a in ordered):
                ordered.append(app)
    paused, notes = to_pause(ordered, left)
    return Hold(paused, notes, list(left))


def recovery_plan(state_dir: Path, present: set[str] | None = None) -> Plan:
    """Put back what a killed run left paused (only call while holding ``LOCK``: no live run holds it then).

    ``present``: the Applications that exist now (None: all of them); one deleted since
    (a cluster made anew) has nothing to put back.
    """
    path = marker_path(state_dir)
    plan = Plan("resume Argo CD automated sync an interrupted run left paused")
    if not path.is_file():
        return plan
    task, paused = read_marker(path)
    names = ", ".join(p.name for p in paused) or "none it can name"
    plan.add(Note(f"{task} was stopped while it held Argo CD back: Applications {names}"))
    gone = [p for p in paused if present is not None and p.name not in present]
    plan.extend(Note(f"Application {p.name} no longer exists: nothing to resume") for p in gone)
    left = [p for p in paused if p not in gone]
    if not left:
        return plan.add(Run(("rm", "-f", "--", str(path)), why="nothing left to resume"))
    return plan.extend(resume_actions(state_dir, left))


@contextlib.contextmanager
def holding(session: Any) -> Iterator[list[Paused]]:
    """For the whole task: the hold lock; yields what a killed run left paused, resumes whatever is left at the end.

    A task that holds the same Applications again adopts their pause (``observe``'s
    ``left``): resuming them first would let Argo CD restart the app between the two
    runs. Whatever is still paused when the task ends, however it ends, is resumed then.
    Under ``--dry-run`` no lock is taken and that resume is only printed.
    """
    if session.dry_run:
        yield _announce(session)
        _put_back(session)
        return
    with locks.exclusive(session.state_dir / LOCK, "run holding Argo CD back"):
        try:
            yield _announce(session)
        finally:
            _put_back(session)


def _announce(session: Any) -> list[Paused]:
    path = marker_path(session.state_dir)
    if not path.is_file():
        return []
    task, left = read_marker(path)
    names = ", ".join(p.name for p in left) or "none it can name"
    session.executor.out(
        f"note: {task} was stopped while it held Argo CD back (Applications {names}); this run puts it back"
    )
    return left


def _put_back(session: Any) -> None:
    if not marker_path(session.state_dir).is_file():
        return
    if session.dry_run:
        session.executor.execute(recovery_plan(session.state_dir))
        return
    kube = session.executor.kube()
    if not kube.ready():
        raise HomelabError(
            f"Argo CD was left paused by a stopped run ({marker_path(session.state_dir)}) and the cluster does "
            "not answer to resume it; bring the cluster back, then run this again"
        )
    try:
        present = {a["metadata"]["name"] for a in kube.list_objects(*APPLICATION)}
    except HomelabError:
        present = set()  # the cluster answers and serves no Applications: nothing of the pause is left to undo
    session.executor.execute(recovery_plan(session.state_dir, present))


def recover(session: Any) -> bool:
    """For tasks that do not hold Argo CD back themselves (``inv up``): finish what a killed run left.

    A run holding the lock right now is working, not stopped: its pause is left alone.
    True when something was put back.
    """
    if not marker_path(session.state_dir).is_file():
        return False
    try:
        with holding(session):
            pass
    except locks.Locked:
        session.executor.out("note: another run holds Argo CD back right now; its pause is left to it")
        return False
    return not session.dry_run
