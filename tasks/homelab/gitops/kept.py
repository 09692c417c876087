"""App data outlives the app: volumes retained, claims of dropped apps kept and named, deleted only when asked.

Three guards, so that dropping an app from the config never loses its data:

- Argo CD keeps the claim and its Namespace (``apps.render.KEEP_DATA``, its ``Prune=false,Delete=false``
  sync options); ``gitops.apply`` prunes nothing in the first place.
- Every volume bound to an app's claim is made ``Retain``. K3S's ``local-path`` class provisions
  ``Delete`` volumes, whose directory local-path-provisioner removes as soon as the claim goes. Patching
  the bound volume, not rendering a class of our own, because a claim's ``storageClassName`` cannot
  change once it exists: a new class would reach new claims only, never the ones holding data today,
  and the patch holds for any class the config names. On the sandbox the toolkit makes the volumes
  itself, already ``Retain`` (``sandbox.cluster.volumes_for``).
- ``inv up`` (and ``gitops.apply``) name every claim kept this way, the node and directory that hold
  its data, and the flag that removes it: ``--delete-data`` sets the volume back to ``Delete`` and deletes
  the claim (local-path-provisioner then removes the directory, as for any ``Delete`` volume) and the
  app's leftover Namespace; on the sandbox, where no provisioner runs, the volume is deleted with them.

Where local-path-provisioner keeps the data: ``<path>/<pv-name>_<namespace>_<pvc-name>`` on the node
that ran the pod first (``folderName`` in its provisioner.go, github.com/rancher/local-path-provisioner);
K3S sets ``<path>`` to ``/var/lib/rancher/k3s/storage`` (https://docs.k3s.io/storage). The volume's
``hostPath``/``local`` path and node affinity name both, so the toolkit reads them from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homelab.apps.render import PART_OF
from homelab.config.schema import HomelabConfig
from homelab.core.plan import CLUSTER, Action, Delete, Note, Patch, Plan, Wait

Obj = dict[str, Any]
CLAIM = ("v1", "PersistentVolumeClaim")
VOLUME = ("v1", "PersistentVolume")
NAMESPACE = ("v1", "Namespace")
FLAG = "--delete-data"
Gone = Callable[[str, str, str | None], bool]  # (kind, name, namespace): has the object left the cluster
DELETE_TIMEOUT = 300.0  # a claim goes once no pod mounts it; the provisioner's helper pod then empties the directory


@dataclass(frozen=True)
class Kept:
    """A claim of the toolkit's that the config no longer renders, and where its data is."""

    namespace: str  # the app's namespace: the app's name
    claim: str
    why: str  # why the config no longer renders it
    volume: str = ""
    node: str = ""
    path: str = ""
    namespace_rendered: bool = False  # the app is still deployed (only its storage went): its Namespace stays

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.claim}"

    def line(self, command: str) -> str:
        if self.path:
            where = f"on node {self.node} at {self.path}" if self.node else f"in volume {self.volume} at {self.path}"
        else:
            where = f"in volume {self.volume}" if self.volume else "in a claim not bound to any volume"
        return f"kept: claim {self.ref} ({self.why}; its data stays {where}; {command} {FLAG} to remove it)"


def is_ours(claim: Obj) -> bool:
    return ((claim.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/part-of") == PART_OF


def _deleting(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def why_dropped(cfg: HomelabConfig, app: str) -> str:
    found = cfg.apps.get(app)
    if found is None:
        return f"app {app} is no longer in the config"
    if app not in cfg.deployed_apps:
        return f"app {app} is off in the config (apps.{app}.enabled)"
    return f"app {app} no longer has storage (apps.{app}.storage)"


def location(volume: Obj | None) -> tuple[str, str]:
    """(node, path) of a node-local volume, as local-path-provisioner makes it; '' for what it does not name."""
    spec = (volume or {}).get("spec") or {}
    path = str((spec.get("hostPath") or spec.get("local") or {}).get("path") or "")
    terms = ((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms") or []
    nodes = [v for t in terms for e in t.get("matchExpressions") or [] for v in e.get("values") or []]
    return (nodes[0] if nodes else ""), path


def kept_claims(cfg: HomelabConfig, rendered: list[Obj], live_claims: list[Obj], live_volumes: list[Obj]) -> list[Kept]:
    """The toolkit's live claims that the render no longer holds, with where each one's data is. Pure."""
    wanted = {(c["metadata"]["namespace"], c["metadata"]["name"]) for c in rendered}
    volumes = {v["metadata"]["name"]: v for v in live_volumes}
    found = []
    for claim in sorted(live_claims, key=lambda c: (c["metadata"]["namespace"], c["metadata"]["name"])):
        key = (claim["metadata"]["namespace"], claim["metadata"]["name"])
        if key in wanted or not is_ours(claim) or _deleting(claim):
            continue
        volume = str((claim.get("spec") or {}).get("volumeName") or "")
        node, path = location(volumes.get(volume))
        app = key[0]
        found.append(Kept(app, key[1], why_dropped(cfg, app), volume, node, path, app in cfg.deployed_apps))
    return found


def retain_patches(rendered: list[Obj], live_claims: list[Obj], live_volumes: list[Obj]) -> list[Patch]:
    """A patch to ``Retain`` for each volume bound to a claim of the toolkit's that would delete its data. Pure.

    Rendered claims and kept ones alike: a kept claim deleted by hand must not take its data with it.
    """
    ours = {(c["metadata"]["namespace"], c["metadata"]["name"]) for c in rendered}
    ours |= {(c["metadata"]["namespace"], c["metadata"]["name"]) for c in live_claims if is_ours(c)}
    patches = []
    for volume in sorted(live_volumes, key=lambda v: v["metadata"]["name"]):
        spec = volume.get("spec") or {}
        ref = spec.get("claimRef") or {}
        if (ref.get("namespace"), ref.get("name")) not in ours or _deleting(volume):
            continue
        policy = spec.get("persistentVolumeReclaimPolicy", "Delete")
        if policy != "Retain":
            why = f"bound to {ref['namespace']}/{ref['name']}: {policy} would remove its data with the claim"
            body = {"spec": {"persistentVolumeReclaimPolicy": "Retain"}}
            patches.append(Patch(*VOLUME, volume["metadata"]["name"], None, body, why=why))
    return patches


def delete_actions(kept: list[Kept], provisioner: bool, gone: Gone) -> list[Action]:
    """Remove each kept claim's data, its volume and the dropped app's Namespace; then wait until they are gone.

    ``provisioner``: a provisioner made the volumes (K3S's local-path): the volume is set to ``Delete``
    so that it removes the directory when the claim goes. Without one (the sandbox) the volume is deleted
    here. ``gone(kind, name, namespace)`` tells the waits whether an object has left the cluster.
    """
    actions: list[Action] = []
    waits: list[Action] = []
    for item in kept:
        if item.volume and provisioner:
            body = {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}
            why = "local-path-provisioner removes its directory once the claim is gone"
            actions.append(Patch(*VOLUME, item.volume, None, body, why=why))
        actions.append(Delete(*CLAIM, item.claim, item.namespace))
        if item.volume and not provisioner:
            actions.append(Delete(*VOLUME, item.volume))
        if not item.namespace_rendered:
            actions.append(Delete(*NAMESPACE, item.namespace))
        targets: list[tuple[str, str, str | None]] = [("PersistentVolumeClaim", item.claim, item.namespace)]
        if item.volume:
            targets.append(("PersistentVolume", item.volume, None))
        for kind, name, namespace in targets:
            ref = f"{namespace}/{name}" if namespace else name
            waits.append(Wait(f"{kind} {ref} to be gone", _absent(gone, kind, name, namespace), DELETE_TIMEOUT))
    return actions + waits


def _absent(gone: Gone, kind: str, name: str, ns: str | None) -> Callable[[], str | None]:
    return lambda: None if gone(kind, name, ns) else "still there"


def data_plan(
    cfg: HomelabConfig,
    rendered: list[Obj],
    kube: Any,
    delete_data: bool,
    provisioner: bool,
    command: str,
) -> tuple[Plan, list[Kept]]:
    """Retain the volumes, name what is kept (or remove it with ``delete_data``); one LIST of claims and volumes.

    ``kube`` None: the cluster cannot be read (a dry run before it exists): a cluster that does not
    exist yet holds no data, so the plan is empty.
    """
    plan = Plan("app data: volumes retained, claims of dropped apps kept")
    if kube is None:
        return plan, []
    claims = kube.list_objects(*CLAIM, label_selector=f"app.kubernetes.io/part-of={PART_OF}")
    volumes = kube.list_objects(*VOLUME)
    plan.extend(retain_patches(rendered, claims, volumes))
    kept = kept_claims(cfg, rendered, claims, volumes)
    if not delete_data:
        return plan.extend(Note(item.line(command), CLUSTER) for item in kept), kept

    def gone(kind: str, name: str, namespace: str | None) -> bool:
        return kube.get("v1", kind, name, namespace) is None

    return plan.extend(delete_actions(kept, provisioner, gone)), kept


def rendered_claims(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] == "PersistentVolumeClaim"]


def converge_data(s: Any, claims: list[Obj], delete_data: bool, yes: bool, command: str) -> bool:
    """Plan, ask before deleting, act and re-check ``data_plan``; True when something changed.

    A declined question keeps the data (and says so), as a run without ``--delete-data`` would.
    """
    from homelab.core.converge import converge
    from homelab.core.tasks import confirm
    from homelab.gitops.deploy import cluster_for_planning

    kube, _ = cluster_for_planning(s)
    provisioner = s.cfg.target != "sandbox"
    plan, kept = data_plan(s.cfg, claims, kube, delete_data, provisioner, command)
    if delete_data and kept and not s.dry_run:
        refs = ", ".join(item.ref for item in kept)
        if not confirm(f"Delete claims {refs} and the data their volumes hold?", yes):
            print("data kept: deleting it was declined")
            delete_data = False
            plan, kept = data_plan(s.cfg, claims, kube, False, provisioner, command)
    if not plan.actions:
        return False
    first = [plan]

    def build() -> Plan:
        if first:
            return first.pop()
        return data_plan(s.cfg, claims, s.executor.kube(), delete_data, provisioner, command)[0]

    return converge(s.executor, build)
