"""Waits: poll the cluster until something is true, with progress and a timeout that names what is missing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from homelab.core.kube.client import KubeClient, KubeError


def wait_for(
    what: str,
    check: Callable[[], str | None],
    timeout: float = 120.0,
    interval: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Poll ``check`` (None when done, else what it is waiting for) until ``timeout``; then name what is missing."""
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


class Waits(KubeClient):
    """Polling waits for rollouts and nodes."""

    def wait_for(
        self,
        what: str,
        check: Callable[[], str | None],
        timeout: float = 120.0,
        interval: float = 0.5,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """Poll ``check`` (None when done, else what it is waiting for) until ``timeout``."""
        wait_for(what, check, timeout, interval, progress)

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
