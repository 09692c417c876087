"""Direct mode: apply the rendered tree to a cluster without ArgoCD, in dependency order.

Used for the sandbox (its pods are simulated, so ArgoCD could not sync) and by
tests: CRDs first and waited for until Established (the first-bootstrap race
other homelab tools hit), then namespaces, platform, apps, and ArgoCD's own
Application objects; then every Deployment is waited for until Available.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from homelab.core.errors import HomelabError
from homelab.core.kube import Kube, KubeError, load_manifests, object_ref, strip_volatile
from homelab.core.kube.apply import FIELD_MANAGER, live_key, unstamped
from homelab.core.kube.fields import dropped, owned
from homelab.core.kube.pending import apply_actions
from homelab.core.paths import cache_dir
from homelab.core.plan import Action, Apply, Wait
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


def crds_pending(kube: Kube, names: list[str]) -> str | None:
    """None when every named CRD is Established (one LIST), else the first one that is not."""
    live = {c["metadata"]["name"]: c for c in kube.list_objects("apiextensions.k8s.io/v1", "CustomResourceDefinition")}
    for name in names:
        conditions = ((live.get(name) or {}).get("status") or {}).get("conditions") or []
        if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return f"{name} not Established"
    return None


def wait_established(kube: Kube, names: list[str], timeout: float = 60) -> None:
    """Wait (one LIST per poll) until every named CRD is Established."""
    kube.wait_for("CRDs", lambda: crds_pending(kube, names), timeout)


def install_crds(kube: Kube, crds: list[Obj]) -> bool:
    applied = kube.apply(crds)
    changed = any(a.changed for a in applied)
    wait_established(kube, [c["metadata"]["name"] for c in crds])
    if changed:
        kube.dynamic.resources.invalidate_cache()  # new kinds are served now
    return changed


def cluster_for_planning(s: Any) -> tuple[Kube | None, str]:
    """The cluster client to read while planning, or None and why when it cannot be read.

    Under ``--dry-run`` a cluster that is not there yet (``inv up --dry-run`` from
    nothing) is planned as if it were empty; otherwise that is an error.
    """
    try:
        kube = s.executor.kube()
        if kube.ready(timeout=5):
            return kube, ""
        problem = f"the API server of context {kube.context} does not answer"
    except HomelabError as err:
        problem = str(err).splitlines()[0]
    if not s.dry_run:
        raise HomelabError(f"{problem}; bring the cluster up first (inv up)")
    return None, problem


def applies(kube: Kube | None, objects: list[Obj], why: str) -> list[Action]:
    """An ``Apply`` of the objects that differ from the cluster; of all of them when it cannot be read."""
    if kube is None:
        return [Apply(tuple(objects), why=why)] if objects else []
    return list(apply_actions(kube, objects, why))


def crd_actions(kube: Kube | None, client: Callable[[], Kube], crds: list[Obj], why: str) -> list[Action]:
    """Apply the CRDs that differ, then wait until all are Established: their kinds are served after that.

    ``kube`` is read while planning (None: nothing can be read); ``client`` gives the
    client the wait polls when it runs.
    """
    names = [c["metadata"]["name"] for c in crds]
    established = Wait(f"{len(names)} CRDs to be Established", lambda: crds_pending(client(), names), 60)
    return [*applies(kube, crds, why), established]


def tree_actions(
    kube: Kube | None, client: Callable[[], Kube], objects: list[Obj], timeout: float = 300
) -> list[Action]:
    """Apply the objects that differ, in order, then wait until every Deployment among them is Available."""
    deployments = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "Deployment"]
    available = Wait("deployments to be Available", lambda: client().deployments_pending(deployments), timeout)
    return [*applies(kube, objects, "the rendered tree, server-side applied"), available]


def diff_paths(live: Any, wanted: Any, path: str = "") -> list[str]:
    """Leaf paths where ``wanted`` differs from ``live``; fields only in ``live`` are left to ``dropped``.

    Lists are matched by their Kubernetes merge key, so a path reads
    ``containers[name=app].env[name=FOO]`` or ``volumeMounts[mountPath=/srv]``, as in
    managedFields; a list whose items all carry a ``name`` is matched by it.
    """
    if isinstance(wanted, dict) and isinstance(live, dict):
        return [p for key, value in wanted.items() for p in diff_paths(live.get(key), value, f"{path}.{key}")]
    if isinstance(wanted, list) and isinstance(live, list):
        key = MERGE_KEYS.get(path.rsplit(".", 1)[-1], "name")
        if _keyed(wanted, key) and _keyed(live, key):
            by_key = {item[key]: item for item in live}
            steps = [(by_key.get(item[key]), item, f"{path}[{key}={item[key]}]") for item in wanted]
            return [p for a, b, step in steps for p in diff_paths(a, b, step)]
        if len(wanted) == len(live):
            pairs = enumerate(zip(live, wanted, strict=True))
            return [p for i, (a, b) in pairs for p in diff_paths(a, b, f"{path}[{i}]")]
    return [] if live == wanted else [path.lstrip(".")]


# Lists whose merge key is not ``name`` (several mounts of one volume share its name).
MERGE_KEYS = {"volumeMounts": "mountPath"}


def _keyed(items: list[Any], key: str) -> bool:
    return all(isinstance(item, dict) and isinstance(item.get(key), str) for item in items)


def _comparable(obj: Obj) -> Obj:
    """``obj`` as diffs compare it: no server-set metadata, no status, no applied-hash annotation."""
    return unstamped(strip_volatile(obj))


def diff_tree(kube: Kube, rendered: Rendered) -> list[str]:
    """Rendered vs live, through a server-side dry run: one line per field an apply would change or prune.

    Changed and added fields come from comparing the live object with the dry
    run's result; removed ones from the fields our manager owns now that the
    dry run says it would no longer own (a field dropped from the config).
    """
    objects = objects_in_apply_order(rendered)
    index = kube.live_index(objects)
    lines = []
    for obj in objects:
        ref = object_ref(obj)
        live = index.get(live_key(obj))
        if live is None:
            lines.append(f"{ref}: missing in the cluster")
            continue
        after = kube.preview(obj)
        lines += [f"{ref}: {field}" for field in diff_paths(_comparable(live), _comparable(after))]
        removed = dropped(owned(live, FIELD_MANAGER), owned(after, FIELD_MANAGER))
        lines += [f"{ref}: {field} removed" for field in removed]
    return lines
