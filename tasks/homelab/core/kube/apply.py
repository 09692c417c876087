"""The apply engine: server-side apply under our field manager, skipped only when nothing changed.

Server-side apply removes a field from the live object when the manager that set
it stops sending it, so every apply sends the whole rendered body. An object is
skipped only when the body we last applied (its hash, kept in an annotation set
by that same apply) is the one we would send now and the live object still holds
every field of it. The hash catches fields removed from the config, which the
live object would otherwise go on holding; the field check catches a hand edit.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from homelab.core.kube.client import KubeClient, KubeError, api_message, object_ref

FIELD_MANAGER = "homelab"
APPLIED_HASH = "homelab.dev/applied-hash"

LiveKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class Applied:
    """What one apply did to one object."""

    ref: str
    changed: bool
    resource_version: str


def live_key(obj: dict[str, Any]) -> LiveKey:
    """How ``live_index`` files an object: (apiVersion, kind, namespace or "", name)."""
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])


class ApplyEngine(KubeClient):
    """Server-side apply of whole rendered bodies, with failures collected per object."""

    def _server_side_apply(self, obj: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        """Send ``obj`` stamped with its hash; the object as the API server left (or would leave) it."""
        body = stamped(obj)
        resource = self.resource(body["apiVersion"], body["kind"])
        meta = body["metadata"]
        kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        result: dict[str, Any] = resource.server_side_apply(
            body=body,
            name=meta["name"],
            namespace=meta.get("namespace") if resource.namespaced else None,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            **kwargs,
        ).to_dict()
        return result

    def preview(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` as applying it would leave it in the cluster (a server-side dry run; nothing is written)."""
        return self._server_side_apply(obj, dry_run=True)

    def apply_one(
        self, obj: dict[str, Any], dry_run: bool = False, before: dict[str, Any] | bool | None = True
    ) -> Applied:
        """Server-side apply one object; ``before`` is its live state if already known (True: look it up)."""
        if before is True:
            meta = obj["metadata"]
            namespace = meta.get("namespace") if self.resource(obj["apiVersion"], obj["kind"]).namespaced else None
            before = self.get(obj["apiVersion"], obj["kind"], meta["name"], namespace)
        live = before if isinstance(before, dict) else None
        result = self._server_side_apply(obj, dry_run)
        version = result["metadata"].get("resourceVersion", "")
        changed = live is None or live["metadata"].get("resourceVersion") != version
        if dry_run and live is not None:
            changed = strip_volatile(live) != strip_volatile(result)
        return Applied(object_ref(obj), changed, version)

    def live_index(self, objects: list[dict[str, Any]]) -> dict[LiveKey, dict[str, Any]]:
        """Live objects of every kind in ``objects``, one LIST per kind, keyed by ``live_key``."""
        index: dict[LiveKey, dict[str, Any]] = {}
        for api_version, kind in sorted({(o["apiVersion"], o["kind"]) for o in objects}):
            try:
                items = self.list_objects(api_version, kind)
            except KubeError:
                continue  # not served yet (its CRD comes in this very apply): every object is new
            for item in items:
                index[live_key({**item, "apiVersion": api_version, "kind": kind})] = item
        return index

    def apply(self, objects: list[dict[str, Any]], dry_run: bool = False, *, resend: bool = False) -> list[Applied]:
        """Apply every object; failures are collected and raised together at the end.

        An object whose recorded hash matches its body and whose live state still
        holds every field is not sent again: a no-op re-run costs one LIST per
        kind instead of a request per object. ``resend`` sends every object all
        the same (to see that the API server itself changes nothing).
        """
        from kubernetes.client.exceptions import ApiException

        index = self.live_index(objects)
        results: list[Applied] = []
        failures: list[str] = []
        for obj in objects:
            live = index.get(live_key(obj))
            if live is not None and terminating(live) and not dry_run:
                live = self.wait_gone(obj, live)
                if live is not None and terminating(live):
                    failures.append(f"{object_ref(obj)}: {still_deleting(live)}")
                    continue
            if live is not None and not resend and unchanged(live, obj):
                results.append(Applied(object_ref(obj), False, live["metadata"].get("resourceVersion", "")))
                continue
            try:
                results.append(self.apply_one(obj, dry_run, before=live))
            except ApiException as err:
                failures.append(f"{object_ref(obj)}: {api_message(err)}")
            except KubeError as err:
                failures.append(f"{object_ref(obj)}: {err}")
        if failures:
            raise KubeError("the API server rejected:\n  " + "\n  ".join(failures))
        return results

    def wait_gone(self, obj: dict[str, Any], live: dict[str, Any]) -> dict[str, Any] | None:
        """Wait, bounded, for a terminating ``obj`` to go; what holds its name then (None: nothing).

        Applying to an object that is being deleted changes it and then loses
        it with the rest: it must be created again once the deletion is done.
        """
        meta = obj["metadata"]
        namespace = meta.get("namespace") if self.resource(obj["apiVersion"], obj["kind"]).namespaced else None
        deadline = time.monotonic() + TERMINATING_WAIT
        current: dict[str, Any] | None = live
        while current is not None and terminating(current) and time.monotonic() < deadline:
            time.sleep(0.5)
            current = self.get(obj["apiVersion"], obj["kind"], meta["name"], namespace)
        return current


TERMINATING_WAIT = 60.0  # seconds an apply waits for an object being deleted to go before naming it


def terminating(live: dict[str, Any]) -> bool:
    return bool((live.get("metadata") or {}).get("deletionTimestamp"))


def still_deleting(live: dict[str, Any]) -> str:
    """Why an object could not be applied: it is being deleted, held by these finalizers."""
    finalizers = (live.get("metadata") or {}).get("finalizers") or []
    held = f", held by finalizers {', '.join(finalizers)}" if finalizers else ""
    return (
        f"it is being deleted{held} and was still there after {TERMINATING_WAIT:.0f} s; "
        "re-run once it is gone (it is then created again)"
    )


def body_hash(obj: dict[str, Any]) -> str:
    """SHA-256 of ``obj``'s canonical JSON (sorted keys), leaving out the hash annotation itself."""
    canonical = json.dumps(unstamped(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def stamped(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` carrying the hash of its body in the ``APPLIED_HASH`` annotation."""
    meta = obj.get("metadata") or {}
    annotations = {**(meta.get("annotations") or {}), APPLIED_HASH: body_hash(obj)}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


def unstamped(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` without the ``APPLIED_HASH`` annotation (and without annotations left empty)."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.pop("annotations", None) or {}).items() if k != APPLIED_HASH}
    if annotations:
        meta["annotations"] = annotations
    return {**obj, "metadata": meta}


def unchanged(live: dict[str, Any], obj: dict[str, Any]) -> bool:
    """True when ``obj`` is the body last applied to ``live`` and ``live`` still holds every field of it."""
    recorded = (live.get("metadata", {}).get("annotations") or {}).get(APPLIED_HASH)
    return not terminating(live) and recorded == body_hash(obj) and holds(live, unstamped(obj))


def holds(live: Any, wanted: Any) -> bool:
    """True when every field of ``wanted`` has the same value in ``live`` (apiVersion/kind aside)."""
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return False
        return all(key in ("apiVersion", "kind") or holds(live.get(key), value) for key, value in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(holds(a, b) for a, b in zip(live, wanted, strict=True))
        )
    return bool(live == wanted)


VOLATILE_METADATA = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp")


def strip_volatile(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without status and the metadata the API server sets (for comparing and exporting)."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in VOLATILE_METADATA}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}
