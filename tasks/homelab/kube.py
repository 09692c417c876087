"""The one way the toolkit talks to a cluster: the kubernetes Python client.

Writes are server-side apply under our own field manager; plans are the same
apply with server-side dry run. The kubeconfig file and context are always
explicit. Per-object failures are collected and reported together, with the
API server's own message.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import HomelabError

FIELD_MANAGER = "homelab"
SINGLE_REPLICA_LABEL = "homelab.dev/single-replica-pdb"


class KubeError(HomelabError):
    """The API server refused something, or a wait timed out."""


@dataclass(frozen=True)
class Applied:
    """What one apply did to one object."""

    ref: str
    changed: bool
    resource_version: str


def object_ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {ns}{meta.get('name', '?')}"


_FastSafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: CRDs are large


class _ManifestLoader(_FastSafeLoader):  # type: ignore[misc]
    """SafeLoader reading ``=`` as the string it is in Kubernetes (YAML 1.1 calls it a 'value' tag)."""


def _value_as_string(loader: Any, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_ManifestLoader.add_constructor("tag:yaml.org,2002:value", _value_as_string)


def load_manifests(texts: Iterable[str]) -> list[dict[str, Any]]:
    """Objects from YAML streams; empty documents are skipped, Lists unpacked."""
    objects: list[dict[str, Any]] = []
    for text in texts:
        for doc in yaml.load_all(text, Loader=_ManifestLoader):
            if not doc:
                continue
            if doc.get("kind", "").endswith("List") and "items" in doc:
                objects.extend(doc["items"])
            else:
                objects.append(doc)
    return objects


def api_message(err: Exception) -> str:
    """The API server's own message out of an ApiException body."""
    import json

    body = getattr(err, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):
            return str(body)
    return str(getattr(err, "reason", None) or err)


class Kube:
    """A client bound to one kubeconfig file and one context."""

    def __init__(self, kubeconfig: Path, context: str) -> None:
        from kubernetes import config as kube_config
        from kubernetes.dynamic import DynamicClient

        if not kubeconfig.is_file():
            raise KubeError(f"kubeconfig {kubeconfig} does not exist; bring the cluster up first (inv up)")
        try:
            self.api = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig), context=context
            )
        except kube_config.ConfigException as err:
            raise KubeError(f"kubeconfig {kubeconfig}: context {context!r} unusable: {err}") from None
        self.context = context
        self.kubeconfig = kubeconfig
        self._dynamic_factory = DynamicClient
        self._dynamic: Any = None

    def ready(self, timeout: float = 5.0) -> bool:
        """True when the API server answers (its /version endpoint, authenticated)."""
        from kubernetes.client import VersionApi

        try:
            VersionApi(self.api).get_code(_request_timeout=timeout)
        except Exception:
            return False
        return True

    @property
    def dynamic(self) -> Any:
        if self._dynamic is None:
            # The client's default discovery cache is a file in /tmp keyed by the server URL; a
            # re-created sandbox on a reused port would read another cluster's API list from it.
            self._cache_dir = tempfile.TemporaryDirectory(prefix="homelab-discovery-")
            cache = str(Path(self._cache_dir.name) / "discovery.json")
            self._dynamic = self._dynamic_factory(self.api, cache_file=cache)  # type: ignore[no-untyped-call]
        return self._dynamic

    def resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            self.dynamic.resources.invalidate_cache()
            try:
                return self.dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise KubeError(f"the cluster does not serve {kind} ({api_version}); is its CRD installed?") from None

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()  # type: ignore[no-any-return]
        except ApiException as err:
            if err.status == 404:
                return None
            raise KubeError(f"get {kind} {name}: {api_message(err)}") from None

    def list_objects(
        self, api_version: str, kind: str, namespace: str | None = None, **selectors: str
    ) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.resource(api_version, kind).get(namespace=namespace, **selectors).to_dict()
        except ApiException as err:
            raise KubeError(f"list {kind}: {api_message(err)}") from None
        return list(found.get("items", []))

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

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.resource(api_version, kind).delete(name=name, namespace=namespace)
        except ApiException as err:
            if err.status == 404:
                return False
            raise KubeError(f"delete {kind} {name}: {api_message(err)}") from None
        return True

    def evict(self, pod: str, namespace: str) -> None:
        """Evict one pod through the eviction API; a refusal names the blocking PDB."""
        from kubernetes.client import CoreV1Api, V1DeleteOptions, V1Eviction, V1ObjectMeta
        from kubernetes.client.exceptions import ApiException

        body = V1Eviction(metadata=V1ObjectMeta(name=pod, namespace=namespace), delete_options=V1DeleteOptions())
        try:
            CoreV1Api(self.api).create_namespaced_pod_eviction(pod, namespace, body)
        except ApiException as err:
            if err.status != 429:
                raise KubeError(f"evict {namespace}/{pod}: {api_message(err)}") from None
            blocking = self.pdbs_covering(pod, namespace)
            names = ", ".join(f"{namespace}/{name}" for name in blocking) or "unknown"
            raise KubeError(
                f"evicting {namespace}/{pod} is blocked by PodDisruptionBudget {names}: {api_message(err)} "
                f"Scale the app up, or relax/delete that PDB for the maintenance, then re-run"
            ) from None

    def cordon(self, node: str, unschedulable: bool = True) -> None:
        from kubernetes.client import CoreV1Api

        CoreV1Api(self.api).patch_node(node, {"spec": {"unschedulable": unschedulable or None}})

    def drain(
        self, node: str, timeout: float, progress: Callable[[str], None] | None = None, allow_downtime: bool = False
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """Evict every pod on ``node`` (not DaemonSet or mirror pods), honouring PDBs.

        Blocked evictions are retried until ``timeout``; then the error names each
        blocking PodDisruptionBudget and how to proceed. With ``allow_downtime``,
        a PDB the renderer marked as guarding a single-replica app is lifted for
        the drain; the lifted PDBs are returned so the caller can restore them.
        """
        lifted: list[tuple[str, str, dict[str, Any]]] = []
        if allow_downtime:
            lifted = self._lift_single_replica_pdbs(node)
        self._drain(node, timeout, progress)
        return lifted

    def _lift_single_replica_pdbs(self, node: str) -> list[tuple[str, str, dict[str, Any]]]:
        lifted = []
        pods = self.list_objects("v1", "Pod", field_selector=f"spec.nodeName={node}")
        for namespace in sorted({p["metadata"]["namespace"] for p in pods}):
            for pdb in self.list_objects(
                "policy/v1", "PodDisruptionBudget", namespace, label_selector=f"{SINGLE_REPLICA_LABEL}=true"
            ):
                spec = pdb["spec"]
                self.resource("policy/v1", "PodDisruptionBudget").patch(
                    name=pdb["metadata"]["name"],
                    namespace=namespace,
                    content_type="application/merge-patch+json",
                    body={"spec": {"minAvailable": 0}},
                )
                lifted.append((namespace, pdb["metadata"]["name"], spec))
        return lifted

    def restore_pdbs(self, lifted: list[tuple[str, str, dict[str, Any]]]) -> None:
        for namespace, name, spec in lifted:
            self.resource("policy/v1", "PodDisruptionBudget").patch(
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                body={"spec": {"minAvailable": spec.get("minAvailable")}},
            )

    def _drain(self, node: str, timeout: float, progress: Callable[[str], None] | None) -> None:
        deadline = time.monotonic() + timeout
        blocked: dict[str, str] = {}
        while True:
            pods = [p for p in self.list_objects("v1", "Pod", field_selector=f"spec.nodeName={node}") if _evictable(p)]
            if not pods:
                return
            blocked = {}
            for pod in pods:
                meta = pod["metadata"]
                try:
                    self.evict(meta["name"], meta["namespace"])
                except KubeError as err:
                    blocked[f"{meta['namespace']}/{meta['name']}"] = str(err)
            if time.monotonic() > deadline:
                detail = "; ".join(blocked.values()) or f"{len(pods)} pods still terminating"
                raise KubeError(f"drain of {node} did not finish in {timeout:.0f}s: {detail}")
            if progress and blocked:
                progress(f"  drain {node}: {len(blocked)} pod(s) blocked by a PodDisruptionBudget, retrying")
            time.sleep(1.0)

    def pdbs_covering(self, pod: str, namespace: str) -> list[str]:
        """Names of the PDBs whose selector matches the pod's labels."""
        live = self.get("v1", "Pod", pod, namespace) or {}
        labels = (live.get("metadata") or {}).get("labels") or {}
        names = []
        for pdb in self.list_objects("policy/v1", "PodDisruptionBudget", namespace):
            selector = (pdb.get("spec") or {}).get("selector") or {}
            wanted = selector.get("matchLabels") or {}
            if wanted and all(labels.get(k) == v for k, v in wanted.items()):
                names.append(pdb["metadata"]["name"])
        return names

    def wait_for(
        self,
        what: str,
        check: Callable[[], str | None],
        timeout: float = 120.0,
        interval: float = 0.5,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """Poll ``check`` (None when done, else what it is waiting for) until ``timeout``."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            waiting = check()
            if waiting is None:
                return
            if progress and waiting != last:
                progress(f"  waiting for {what}: {waiting}")
                last = waiting
            if time.monotonic() > deadline:
                raise KubeError(f"timed out after {timeout:.0f}s waiting for {what}: {waiting}")
            time.sleep(interval)

    def deployment_waiting(self, name: str, namespace: str) -> str | None:
        """None when the Deployment is rolled out and Available, else why not."""
        return deployment_waiting(self.get("apps/v1", "Deployment", name, namespace))

    def deployments_pending(self, names: list[tuple[str, str]]) -> str | None:
        """One LIST for all Deployments; None when every named one is rolled out and Available."""
        live = {
            (d["metadata"]["namespace"], d["metadata"]["name"]): d for d in self.list_objects("apps/v1", "Deployment")
        }
        for namespace, name in names:
            why = deployment_waiting(live.get((namespace, name)))
            if why:
                return f"{namespace}/{name} {why}"
        return None

    def wait_deployments(
        self, names: list[tuple[str, str]], timeout: float = 180.0, progress: Callable[[str], None] | None = None
    ) -> None:
        self.wait_for("deployments", lambda: self.deployments_pending(names), timeout, progress=progress)

    def ready_nodes(self) -> dict[str, bool]:
        nodes = {}
        for node in self.list_objects("v1", "Node"):
            conditions = (node.get("status") or {}).get("conditions") or []
            nodes[node["metadata"]["name"]] = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return nodes


def deployment_waiting(dep: dict[str, Any] | None) -> str | None:
    """None when ``dep`` is rolled out and Available, else what it is waiting for."""
    if dep is None:
        return "not created yet"
    status = dep.get("status") or {}
    want = (dep.get("spec") or {}).get("replicas", 1)
    if status.get("observedGeneration", 0) < dep["metadata"].get("generation", 0):
        return "rollout not observed yet"
    if status.get("updatedReplicas", 0) < want:
        return f"{status.get('updatedReplicas', 0)}/{want} replicas updated"
    if status.get("availableReplicas", 0) < want:
        return f"{status.get('availableReplicas', 0)}/{want} replicas available"
    return None


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


def _evictable(pod: dict[str, Any]) -> bool:
    meta = pod["metadata"]
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return False
    if any(owner.get("kind") == "DaemonSet" for owner in meta.get("ownerReferences") or []):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


VOLATILE_METADATA = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp")


def strip_volatile(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without status and the metadata the API server sets (for comparing and exporting)."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in VOLATILE_METADATA}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}
