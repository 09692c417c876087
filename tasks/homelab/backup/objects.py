"""Backed-up objects made fit to create again, and the order that lets each one land.

An object read back from a backup still carries what the API server assigned
to the original: a Service's cluster IP (restored verbatim it is refused as
"provided IP is already allocated"), node ports, uids, ownerReferences to
objects that no longer exist or now have another uid, the binding of a volume
to the claim it served. ``prepare`` takes those out, keeps what the config pins
(node ports that the rendered Services set themselves), and leaves objects a
controller owns to that controller. ``tiers`` orders the rest the way each
depends on the one before: namespaces, then definitions (CRDs, storage and
priority classes, cluster RBAC), then configuration and storage, then Services,
then workloads, then everything else, admission webhooks last (a webhook whose
backend is not running yet would refuse every later object).

Everything here is pure: the backed-up objects and a few facts about the live
cluster in, objects and reasons out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from homelab.core.plan import Obj, object_ref

ObjectKey = tuple[str, str, str]  # (kind, namespace or "", name): how restore names one object
PinnedPorts = dict[tuple[str, str], dict[tuple[int, str], int]]  # (namespace, name) -> (port, protocol) -> nodePort

ASSIGNED_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
# Annotations the volume binding controller writes to record a binding it made.
BINDING_ANNOTATIONS = ("pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller")
# Labels the Job controller derives from the Job's own uid.
JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
# Objects every namespace or cluster gets by itself, never restored.
GENERATED = {("ConfigMap", "kube-root-ca.crt")}
# Kinds the API server or a controller makes for other objects (older backups may hold them).
GENERATED_KINDS = frozenset({"IPAddress", "EndpointSlice", "Endpoints", "Event", "Lease"})

TIERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("namespaces", frozenset({"Namespace"})),
    (
        "definitions",
        frozenset(
            {
                "CustomResourceDefinition",
                "StorageClass",
                "PriorityClass",
                "IngressClass",
                "GatewayClass",
                "RuntimeClass",
                "ClusterRole",
                "ClusterRoleBinding",
            }
        ),
    ),
    (
        "configuration and storage",
        frozenset(
            {
                "ConfigMap",
                "Secret",
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "LimitRange",
                "ResourceQuota",
                "PersistentVolume",
                "PersistentVolumeClaim",
            }
        ),
    ),
    ("services", frozenset({"Service"})),
    ("workloads", frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"})),
    ("other objects", frozenset()),
    (
        "admission webhooks",
        frozenset(
            {
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration",
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding",
            }
        ),
    ),
)
OTHER_TIER = next(i for i, (_, kinds) in enumerate(TIERS) if not kinds)


def key_of(obj: Obj) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (obj["kind"], meta.get("namespace") or "", meta["name"])


def group_of(api_version: str) -> str:
    """``apps/v1`` -> ``apps``; ``v1`` -> ``""`` (ownerReferences may name another version of the same kind)."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


@dataclass(frozen=True)
class Live:
    """What restore needs to know about the cluster as it is: which objects exist, with which uid."""

    uids: dict[ObjectKey, str] = field(default_factory=dict)
    terminating: frozenset[str] = frozenset()  # namespaces being deleted: they and their objects are gone soon

    def has(self, key: ObjectKey) -> bool:
        kind, namespace, name = key
        if namespace in self.terminating or (kind == "Namespace" and name in self.terminating):
            return False
        return key in self.uids


@dataclass
class Prepared:
    """Objects to create, in tiers, and what was left out and why."""

    tiers: list[tuple[str, list[Obj]]]
    present: list[str]
    left_to_controllers: list[str]

    @property
    def objects(self) -> list[Obj]:
        return [obj for _, objects in self.tiers for obj in objects]


def tier_of(obj: Obj) -> int:
    for index, (_, kinds) in enumerate(TIERS):
        if obj["kind"] in kinds:
            return index
    return OTHER_TIER


def controller_of(obj: Obj) -> dict[str, Any] | None:
    return next((ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("controller")), None)


def owner_key(obj: Obj, ref: dict[str, Any], known: Iterable[ObjectKey]) -> ObjectKey | None:
    """The key of the object ``ref`` points to: in ``obj``'s namespace, or cluster-scoped."""
    namespace = obj["metadata"].get("namespace") or ""
    for candidate in ((ref["kind"], namespace, ref["name"]), (ref["kind"], "", ref["name"])):
        if candidate in known:
            return candidate
    return None


def prepare(backed_up: list[Obj], live: Live, pinned: PinnedPorts | None = None) -> Prepared:
    """The backed-up objects that are missing from the cluster, fit to create, in dependency tiers.

    Objects that exist are kept as they are (a restore brings back what was
    lost; it does not roll back what is there). An object whose controller
    is backed up or running is left to that controller, which makes it again.
    """
    candidates = [
        o for o in backed_up if (o["kind"], o["metadata"]["name"]) not in GENERATED and o["kind"] not in GENERATED_KINDS
    ]
    in_backup = {key_of(o) for o in candidates}
    known = in_backup | set(live.uids)
    volumes = {name for kind, _, name in known if kind == "PersistentVolume"}
    tiers: list[list[Obj]] = [[] for _ in TIERS]
    present, left = [], []
    for obj in candidates:
        ref = object_ref(obj)
        controller = controller_of(obj)
        if controller is not None and owner_key(obj, controller, known) is not None:
            left.append(f"{ref} (made by {controller['kind']} {controller['name']})")
            continue
        if live.has(key_of(obj)):
            present.append(ref)
            continue
        tiers[tier_of(obj)].append(strip_assigned(obj, live, known, volumes, pinned or {}))
    named = [(TIERS[i][0], objects) for i, objects in enumerate(tiers) if objects]
    return Prepared(named, present, left)


def strip_assigned(obj: Obj, live: Live, known: set[ObjectKey], volumes: set[str], pinned: PinnedPorts) -> Obj:
    """A copy of ``obj`` without what the API server and controllers assigned to the original."""
    clean: Obj = copy.deepcopy({k: v for k, v in obj.items() if k != "status"})
    meta = clean["metadata"] = {k: v for k, v in clean.get("metadata", {}).items() if k not in ASSIGNED_METADATA}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in BINDING_ANNOTATIONS}
    meta.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    references = owner_references(obj, live, known)
    meta.pop("ownerReferences", None)
    if references:
        meta["ownerReferences"] = references
    spec = clean.get("spec")
    if isinstance(spec, dict):
        kind = clean["kind"]
        if kind == "Service":
            strip_service(spec, pinned.get((meta.get("namespace") or "", meta["name"]), {}))
        elif kind == "PersistentVolumeClaim" and spec.get("volumeName") not in volumes:
            spec.pop("volumeName", None)  # its volume is gone: the claim is provisioned anew
        elif kind == "PersistentVolume" and isinstance(spec.get("claimRef"), dict):
            spec["claimRef"] = unbound_claim_ref(spec["claimRef"])
        elif kind == "Job" and not spec.get("manualSelector"):
            strip_job_selector(spec)
    return clean


def owner_references(obj: Obj, live: Live, known: set[ObjectKey]) -> list[dict[str, Any]]:
    """The ownerReferences that stay true: owners running now, with the uid they have now.

    A reference to an owner that is not in the cluster (or is being created by
    this very restore, so its new uid is not known yet) would make the garbage
    collector delete the object as an orphan; it is dropped.
    """
    kept = []
    for ref in obj["metadata"].get("ownerReferences") or []:
        owner = owner_key(obj, ref, known)
        uid = live.uids.get(owner) if owner is not None and live.has(owner) else None
        if uid:
            kept.append({**ref, "uid": uid})
    return kept


def strip_service(spec: dict[str, Any], pinned: dict[tuple[int, str], int]) -> None:
    """No cluster IP (unless headless) and no node port the config does not pin itself."""
    if spec.get("clusterIP") not in ("None", None):
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
    for port in spec.get("ports") or []:
        wanted = pinned.get((port.get("port"), port.get("protocol") or "TCP"))
        if wanted:
            port["nodePort"] = wanted
        else:
            port.pop("nodePort", None)
    spec.pop("healthCheckNodePort", None)


def unbound_claim_ref(claim_ref: dict[str, Any]) -> dict[str, Any]:
    """The claim a volume is reserved for, without the uid of the claim object that no longer exists."""
    return {k: v for k, v in claim_ref.items() if k not in ("uid", "resourceVersion")}


def strip_job_selector(spec: dict[str, Any]) -> None:
    """The Job controller generates the selector from the Job's uid; a restored Job gets a new one."""
    spec.pop("selector", None)
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    labels = {k: v for k, v in (template_meta.get("labels") or {}).items() if k not in JOB_UID_LABELS}
    if "labels" in template_meta:
        template_meta["labels"] = labels


def pinned_node_ports(rendered: Iterable[Obj]) -> PinnedPorts:
    """Node ports the config sets itself, by Service: the only ones a restore keeps."""
    pinned: PinnedPorts = {}
    for obj in rendered:
        if obj.get("kind") != "Service":
            continue
        ports = {
            (p["port"], p.get("protocol") or "TCP"): p["nodePort"]
            for p in (obj.get("spec") or {}).get("ports") or []
            if p.get("nodePort")
        }
        if ports:
            meta = obj["metadata"]
            pinned[(meta.get("namespace") or "", meta["name"])] = ports
    return pinned


def claims_to_rebind(prepared: Prepared, live_volumes: list[Obj]) -> list[tuple[str, str]]:
    """Live volumes still reserved for the uid of a claim this restore creates again: (volume, claim ref).

    When a namespace is deleted its claims go, but a retained (or
    failed-to-delete) volume keeps the old claim's uid and will not bind to
    the new claim of the same name until that uid is cleared.
    """
    restored = {
        (o["metadata"].get("namespace") or "", o["metadata"]["name"])
        for o in prepared.objects
        if o["kind"] == "PersistentVolumeClaim"
    }
    found = []
    for volume in live_volumes:
        claim = (volume.get("spec") or {}).get("claimRef") or {}
        if claim.get("uid") and (claim.get("namespace") or "", claim.get("name")) in restored:
            found.append((volume["metadata"]["name"], f"{claim.get('namespace')}/{claim.get('name')}"))
    return sorted(found)
