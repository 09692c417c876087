"""Direct mode: apply the rendered tree to a cluster without ArgoCD, in dependency order.

Used for the sandbox (its pods are simulated, so ArgoCD could not sync) and by
tests: CRDs first and waited for until Established (the first-bootstrap race
other homelab tools hit), then namespaces, platform, apps, and ArgoCD's own
Application objects; then every Deployment is waited for until Available.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from homelab.core.kube import Kube, KubeError, load_manifests, strip_volatile
from homelab.core.paths import cache_dir
from homelab.gitops.tree import Rendered, objects_in_apply_order

Obj = dict[str, Any]


def crd_dir() -> Path:
    return cache_dir() / "crds"


def component_crds(directory: Path | None = None) -> list[Obj]:
    """The components' real CRDs (fetched by scripts/get-binaries.sh crds)."""
    root = directory or crd_dir()
    if not root.is_dir():
        raise KubeError(f"no CRDs in {root}; run scripts/get-binaries.sh crds")
    crds = []
    for path in sorted(root.glob("*/*.yaml")):
        for obj in load_manifests([path.read_text()]):
            if obj.get("kind") == "CustomResourceDefinition":
                crds.append(_untemplated(obj))
    return crds


def _untemplated(crd: Obj) -> Obj:
    """Drop labels/annotations that hold Helm template text (cert-manager ships them so)."""
    meta = crd["metadata"]
    for key in ("labels", "annotations"):
        values = meta.get(key) or {}
        kept = {k: v for k, v in values.items() if "{{" not in str(v) and "{{" not in k}
        if kept:
            meta[key] = kept
        else:
            meta.pop(key, None)
    return crd


def wait_established(kube: Kube, names: list[str], timeout: float = 60) -> None:
    """Wait (one LIST per poll) until every named CRD is Established."""

    def pending() -> str | None:
        live = {
            c["metadata"]["name"]: c for c in kube.list_objects("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        }
        for name in names:
            conditions = ((live.get(name) or {}).get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return f"{name} not Established"
        return None

    kube.wait_for("CRDs", pending, timeout)


def install_crds(kube: Kube, crds: list[Obj]) -> bool:
    applied = kube.apply(crds)
    changed = any(a.changed for a in applied)
    wait_established(kube, [c["metadata"]["name"] for c in crds])
    if changed:
        kube.dynamic.resources.invalidate_cache()  # new kinds are served now
    return changed


def apply_tree(
    kube: Kube,
    rendered: Rendered,
    timeout: float = 300,
    progress: Callable[[str], None] = print,
    before_wait: Callable[[Kube], object] | None = None,
) -> bool:
    """Apply everything in order and wait; True when any object changed.

    ``before_wait`` runs between applying and waiting (the sandbox binds volumes there).
    """
    started = time.monotonic()
    objects = objects_in_apply_order(rendered)
    applied = kube.apply(objects)
    changed = [a.ref for a in applied if a.changed]
    progress(f"  applied {len(applied)} objects ({len(changed)} changed) in {time.monotonic() - started:.1f}s")
    if before_wait:
        before_wait(kube)
    deployments = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "Deployment"]
    kube.wait_deployments(deployments, timeout=timeout, progress=progress)
    progress(f"  {len(deployments)} deployments Available after {time.monotonic() - started:.1f}s")
    return bool(changed)


def diff_paths(live: Any, wanted: Any, path: str = "") -> list[str]:
    """Leaf paths where ``wanted`` differs from ``live`` (fields only in live are ignored)."""
    if isinstance(wanted, dict) and isinstance(live, dict):
        return [p for key, value in wanted.items() for p in diff_paths(live.get(key), value, f"{path}.{key}")]
    if isinstance(wanted, list) and isinstance(live, list) and len(wanted) == len(live):
        return [p for i, (a, b) in enumerate(zip(live, wanted, strict=True)) for p in diff_paths(a, b, f"{path}[{i}]")]
    return [] if live == wanted else [path.lstrip(".")]


def diff_tree(kube: Kube, rendered: Rendered) -> list[str]:
    """Rendered vs live, through a server-side dry run: one line per differing field."""
    lines = []
    for obj in objects_in_apply_order(rendered):
        meta = obj["metadata"]
        resource = kube.resource(obj["apiVersion"], obj["kind"])
        namespace = meta.get("namespace") if resource.namespaced else None
        live = kube.get(obj["apiVersion"], obj["kind"], meta["name"], namespace)
        ref = f"{obj['kind']} {namespace + '/' if namespace else ''}{meta['name']}"
        if live is None:
            lines.append(f"{ref}: missing in the cluster")
            continue
        dry = resource.server_side_apply(
            body=obj,
            name=meta["name"],
            namespace=namespace,
            field_manager="homelab",
            force_conflicts=True,
            dry_run="All",
        ).to_dict()
        for field in diff_paths(strip_volatile(live), strip_volatile(dry)):
            lines.append(f"{ref}: {field}")
    return lines
