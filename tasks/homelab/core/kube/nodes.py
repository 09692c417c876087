"""Node maintenance: cordon, drain through the eviction API, and PDBs lifted for planned downtime."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from homelab.core.kube.client import KubeClient, KubeError, api_message

SINGLE_REPLICA_LABEL = "homelab.dev/single-replica-pdb"
LIFTED_ANNOTATION = "homelab.dev/lifted-min-available"


class NodeMaintenance(KubeClient):
    """Evictions that honour PodDisruptionBudgets, and the PDB lifts a planned downtime needs."""

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

    def drain(self, node: str, timeout: float, progress: Callable[[str], None] | None = None) -> None:
        """Evict every pod on ``node`` (not DaemonSet or mirror pods), honouring PDBs.

        Blocked evictions are retried until ``timeout``; then the error names each
        blocking PodDisruptionBudget and how to proceed.
        """
        self._drain(node, timeout, progress)

    def lift_single_replica_pdbs(self, node: str) -> list[str]:
        """Set ``minAvailable: 0`` on the single-replica PDBs guarding pods on ``node``.

        The old value is kept in an annotation on the PDB itself, in the same
        patch, so whoever restores (this run, or a re-run after a crash) finds it
        there and nothing is lost between the lift and the restore.
        """
        lifted = []
        pods = self.list_objects("v1", "Pod", field_selector=f"spec.nodeName={node}")
        for namespace in sorted({p["metadata"]["namespace"] for p in pods}):
            for pdb in self.list_objects(
                "policy/v1", "PodDisruptionBudget", namespace, label_selector=f"{SINGLE_REPLICA_LABEL}=true"
            ):
                annotations = pdb["metadata"].get("annotations") or {}
                name = pdb["metadata"]["name"]
                if LIFTED_ANNOTATION not in annotations:
                    kept = json.dumps(pdb["spec"].get("minAvailable"))
                    self.merge_patch(
                        "policy/v1",
                        "PodDisruptionBudget",
                        name,
                        namespace,
                        {"metadata": {"annotations": {LIFTED_ANNOTATION: kept}}, "spec": {"minAvailable": 0}},
                    )
                lifted.append(f"{namespace}/{name}")
        return lifted

    def restore_lifted_pdbs(self) -> list[str]:
        """Put back every PDB value a lift kept in its annotation; returns the PDBs restored."""
        restored = []
        for pdb in self.list_objects("policy/v1", "PodDisruptionBudget", label_selector=f"{SINGLE_REPLICA_LABEL}=true"):
            meta = pdb["metadata"]
            kept = (meta.get("annotations") or {}).get(LIFTED_ANNOTATION)
            if kept is None:
                continue
            self.merge_patch(
                "policy/v1",
                "PodDisruptionBudget",
                meta["name"],
                meta["namespace"],
                {"metadata": {"annotations": {LIFTED_ANNOTATION: None}}, "spec": {"minAvailable": json.loads(kept)}},
            )
            restored.append(f"{meta['namespace']}/{meta['name']}")
        return restored

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


def _evictable(pod: dict[str, Any]) -> bool:
    meta = pod["metadata"]
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return False
    if any(owner.get("kind") == "DaemonSet" for owner in meta.get("ownerReferences") or []):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
