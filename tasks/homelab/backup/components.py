"""What one backup run collects, each component into its own folder of the staging area.

App volumes are read on their nodes by ``homelab.backup.volume_read``, which
copies each database the way its engine allows while the app keeps writing.

Every collector either fills its folder or raises; the run records which
components failed and marks the snapshot partial, so a missing piece is never
mistaken for a good backup.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from homelab.core.errors import HomelabError
from homelab.core.executor import write_local
from homelab.core.kube import strip_volatile
from homelab.core.plan import LOCAL

# Kinds that are rebuilt by controllers, ephemeral, or secret in plain form.
SKIPPED_KINDS = {
    "Secret",
    "Event",
    "Lease",
    "Endpoints",
    "EndpointSlice",
    "Pod",
    "ReplicaSet",
    "ControllerRevision",
    "Node",
    "CSINode",
    "CSIStorageCapacity",
    "VolumeAttachment",
    "FlowSchema",
    "PriorityLevelConfiguration",
    "APIService",
    "ComponentStatus",
    "IPAddress",  # the API server's record of each Service's cluster IP: made with the Service
    "CertificateSigningRequest",
}
SEALED_KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"


def applicable(session: Any) -> list[str]:
    """The configured components that exist for this target.

    No K3S datastore but on lima's nodes; volumes on the nodes, or on the sandbox in
    its directories on this machine (``sandbox.cluster.volume_host_dir``).
    """
    wanted = list(session.cfg.backup.components)
    if session.cfg.target in ("sandbox", "existing", "k3d"):
        wanted = [c for c in wanted if c != "datastore"]
    if session.cfg.target in ("existing", "k3d"):
        wanted = [c for c in wanted if c != "volumes"]
    return wanted


def collect_config(session: Any, out: Path) -> None:
    """Config files, the inventory, and local K3S snapshots (each holds a datastore and its token)."""
    for path in session.loaded.files:
        shutil.copy2(path, out / path.name)
    inventory = session.state_dir / "inventory.json"
    if inventory.is_file():
        shutil.copy2(inventory, out / "inventory.json")
    snapshots = session.state_dir / "snapshots"
    if snapshots.is_dir():
        # Hard links: no copy of large snapshots, and restic sees the same size and mtime as last run.
        shutil.copytree(snapshots, out / "snapshots", copy_function=_link_or_copy)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def collect_cluster(session: Any, out: Path, kube: Any) -> None:
    """Every listable resource (preferred versions) as YAML, one file per kind; Secrets excluded."""
    from kubernetes.client import ApisApi, CoreV1Api

    # What is being deleted is not part of the cluster a restore should bring back.
    going = {n["metadata"]["name"] for n in kube.list_objects("v1", "Namespace") if being_deleted(n, set())}
    group_versions = ["v1"]
    for api_group in ApisApi(kube.api).get_api_versions(_request_timeout=10).groups:
        if api_group.preferred_version is not None:
            group_versions.append(api_group.preferred_version.group_version)
    for group_version in group_versions:
        if group_version == "v1":
            listing = CoreV1Api(kube.api).get_api_resources(_request_timeout=10)
        else:
            group_name, version = group_version.split("/")
            listing = _group_resources(kube, group_name, version)
        for resource in listing.resources:
            if "/" in resource.name or "list" not in (resource.verbs or []) or resource.kind in SKIPPED_KINDS:
                continue
            items = kube.resource(group_version, resource.kind).get(_request_timeout=15).to_dict().get("items", [])
            items = [i for i in items if not being_deleted(i, going)]
            if not items:
                continue
            docs = [strip_volatile({**i, "apiVersion": group_version, "kind": resource.kind}) for i in items]
            name = f"{resource.kind}.{group_version.replace('/', '_')}.yaml"
            (out / name).write_text("---\n".join(yaml.safe_dump(d, sort_keys=True) for d in docs))


def being_deleted(item: dict[str, Any], namespaces_going: set[str]) -> bool:
    meta = item.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) or meta.get("namespace") in namespaces_going


def _group_resources(kube: Any, group: str, version: str) -> Any:
    from kubernetes.client import CustomObjectsApi

    return CustomObjectsApi(kube.api).get_api_resources(group, version, _request_timeout=10)


def collect_sealed_keys(session: Any, out: Path, kube: Any) -> None:
    """The Sealed Secrets controller's private keys (restic encrypts the repository)."""
    ns = session.cfg.secrets.controller_namespace
    keys = kube.list_objects("v1", "Secret", ns, label_selector=SEALED_KEY_LABEL)
    docs = [strip_volatile({**k, "apiVersion": "v1", "kind": "Secret"}) for k in keys]
    text = "---\n".join(yaml.safe_dump(d, sort_keys=True) for d in docs)
    write_local(out / "keys.yaml", text.encode(), 0o600)


def collect_datastore(session: Any, out: Path) -> None:
    from homelab.k3s.snapshot import fetch

    fetch(session, out)


def volume_location(kube: Any, namespace: str, claim: str, session: Any = None) -> tuple[str, str]:
    """The node and directory behind a PVC (local-path style: hostPath or local + node affinity).

    On the sandbox (``session`` given): ``local`` and the volume's directory on this machine.
    """
    pvc = kube.get("v1", "PersistentVolumeClaim", claim, namespace)
    if pvc is None or not (pvc.get("spec") or {}).get("volumeName"):
        raise HomelabError(f"{namespace}/{claim}: claim missing or not bound")
    pv = kube.get("v1", "PersistentVolume", pvc["spec"]["volumeName"])
    spec = (pv or {}).get("spec") or {}
    path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
    terms = ((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms") or []
    nodes = [v for t in terms for e in t.get("matchExpressions") or [] for v in e.get("values") or []]
    if session is not None and session.cfg.target == "sandbox" and path:
        from homelab.sandbox.cluster import volume_host_dir

        here = volume_host_dir(session.state_dir, path)
        if here is not None:
            return LOCAL, str(here)
    if not path or not nodes:
        raise HomelabError(f"{namespace}/{claim}: volume {pvc['spec']['volumeName']} has no node-local path")
    return nodes[0], path
