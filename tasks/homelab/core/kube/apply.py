"""The apply engine: server-side apply under our field manager, skipped only when nothing changed.

Server-side apply removes a field from the live object when the manager that set
it stops sending it, so every apply sends the whole rendered body. An object is
skipped only when the body we last applied (its hash, kept in an annotation) is
the one we would send now and the live object still holds every field of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homelab.core.kube.client import KubeClient, KubeError, api_message, object_ref

FIELD_MANAGER = "homelab"


@dataclass(frozen=True)
class Applied:
    """What one apply did to one object."""

    ref: str
    changed: bool
    resource_version: str


class ApplyEngine(KubeClient):
    """Server-side apply of whole rendered bodies, with failures collected per object."""

    def apply_one(
        self, obj: dict[str, Any], dry_run: bool = False, before: dict[str, Any] | bool | None = True
    ) -> Applied:
        """Server-side apply one object; ``before`` is its live state if already known (True: look it up)."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        namespace = meta.get("namespace") if resource.namespaced else None
        if before is True:
            before = self.get(obj["apiVersion"], obj["kind"], meta["name"], namespace)
        live = before if isinstance(before, dict) else None
        kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        result = resource.server_side_apply(
            body=obj,
            name=meta["name"],
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            **kwargs,
        ).to_dict()
        version = result["metadata"].get("resourceVersion", "")
        changed = live is None or live["metadata"].get("resourceVersion") != version
        if dry_run and live is not None:
            changed = strip_volatile(live) != strip_volatile(result)
        return Applied(object_ref(obj), changed, version)

    def live_index(self, objects: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
        """Live objects of every kind in ``objects``, one LIST per kind, keyed by (apiVersion, kind, ns, name)."""
        index: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for api_version, kind in sorted({(o["apiVersion"], o["kind"]) for o in objects}):
            try:
                items = self.list_objects(api_version, kind)
            except KubeError:
                continue  # not served yet (its CRD comes in this very apply): every object is new
            for item in items:
                meta = item["metadata"]
                index[(api_version, kind, meta.get("namespace") or "", meta["name"])] = item
        return index

    def apply(self, objects: list[dict[str, Any]], dry_run: bool = False) -> list[Applied]:
        """Apply every object; failures are collected and raised together at the end.

        Objects whose live state already holds every field we set are not sent
        again: a no-op re-run costs one LIST per kind instead of a request per object.
        """
        from kubernetes.client.exceptions import ApiException

        index = self.live_index(objects)
        results: list[Applied] = []
        failures: list[str] = []
        for obj in objects:
            meta = obj["metadata"]
            live = index.get((obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"]))
            if live is not None and holds(live, obj):
                results.append(Applied(object_ref(obj), False, live["metadata"].get("resourceVersion", "")))
                continue
            try:
                results.append(self.apply_one(obj, dry_run, before=live if live is not None else None))
            except ApiException as err:
                failures.append(f"{object_ref(obj)}: {api_message(err)}")
            except KubeError as err:
                failures.append(f"{object_ref(obj)}: {err}")
        if failures:
            raise KubeError("the API server rejected:\n  " + "\n  ".join(failures))
        return results


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
