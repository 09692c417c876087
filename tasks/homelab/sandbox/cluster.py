"""The sandbox target: a real control plane with simulated nodes, started by kwokctl.

kube-apiserver, etcd, kube-controller-manager and kube-scheduler run as local
processes bound to 127.0.0.1 (kwokctl's binary runtime); kwok plays the
kubelet for fake nodes named and labelled like the config's nodes. Everything
lives under ``<state_dir>/kwok``; the kubeconfig context ``<name>-sandbox`` is
merged into the project-local ``<state_dir>/kubeconfig``, never ``~/.kube``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from homelab.config.schema import HomelabConfig, Node
from homelab.core.errors import HomelabError
from homelab.core.kubeconfig import merge_kubeconfig, remove_context
from homelab.core.tools import require

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "kwok")


@dataclass(frozen=True)
class SandboxPaths:
    """Where one homelab's sandbox keeps its files."""

    cluster: str
    workdir: Path
    kubeconfig: Path
    context: str

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.cluster

    @property
    def kwok_kubeconfig(self) -> Path:
        return self.cluster_dir / "kubeconfig.yaml"


def paths_for(cfg: HomelabConfig, state_dir: Path) -> SandboxPaths:
    return SandboxPaths(
        cluster=f"{cfg.name}-sandbox",
        workdir=state_dir / "kwok",
        kubeconfig=state_dir / "kubeconfig",
        context=f"{cfg.name}-sandbox",
    )


def kwokctl_config(kube_version: str) -> str:
    """The KwokctlConfiguration that pins every component to a local binary."""
    binaries = {name: require(name) for name in BINARIES}
    options = {
        "runtime": "binary",
        "bindAddress": "127.0.0.1",
        "kubeVersion": kube_version,
        "kubeApiserverBinary": binaries["kube-apiserver"],
        "kubeControllerManagerBinary": binaries["kube-controller-manager"],
        "kubeSchedulerBinary": binaries["kube-scheduler"],
        "kubectlBinary": binaries["kubectl"],
        "etcdBinary": binaries["etcd"],
        "kwokControllerBinary": binaries["kwok"],
        "kubeControllerManagerNodeMonitorGracePeriodMilliseconds": 40000,
    }
    doc = {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokctlConfiguration", "options": options}
    return yaml.safe_dump(doc, sort_keys=True)


def node_object(node: Node) -> dict[str, Any]:
    """A fake Node carrying the config node's name, role labels, taints and size."""
    labels = {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "homelab.dev/role": node.role,
        **node.labels,
    }
    if node.role == "server":
        labels["node-role.kubernetes.io/control-plane"] = "true"
        labels["node-role.kubernetes.io/master"] = "true"
    memory = node.memory.replace("iB", "i")
    capacity = {"cpu": str(node.cpus), "memory": memory, "pods": "110"}
    taints = []
    for taint in node.taints:
        key_value, _, effect = taint.partition(":")
        key, _, value = key_value.partition("=")
        taints.append({"key": key, "value": value, "effect": effect or "NoSchedule"})
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": labels, "annotations": {KWOK_NODE_ANNOTATION: "fake"}},
        "status": {"capacity": capacity, "allocatable": capacity},
    }
    if taints:
        obj["spec"] = {"taints": taints}
    return obj


def local_path_storage_class() -> dict[str, Any]:
    """The StorageClass K3S ships, so rendered PVCs name the same class on both targets."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def bind_pending_claims(kube: Any) -> int:
    """Stand in for local-path-provisioner: one pre-bound PersistentVolume per Pending claim."""
    volumes = []
    for claim in kube.list_objects("v1", "PersistentVolumeClaim"):
        if (claim.get("status") or {}).get("phase") != "Pending":
            continue
        meta, spec = claim["metadata"], claim["spec"]
        volumes.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {
                    "name": f"sandbox-{meta['namespace']}-{meta['name']}"[:253],
                    "labels": {"homelab.dev/sandbox-volume": "true"},
                },
                "spec": {
                    "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                    "accessModes": spec["accessModes"],
                    "storageClassName": spec.get("storageClassName") or "local-path",
                    "persistentVolumeReclaimPolicy": "Delete",
                    "hostPath": {"path": f"/var/lib/homelab-sandbox/{meta['namespace']}/{meta['name']}"},
                    "claimRef": {"namespace": meta["namespace"], "name": meta["name"]},
                },
            }
        )
    if volumes:
        kube.apply(volumes)
    return len(volumes)


CREATED_MARKER = "homelab-created"


def discard_half_made(paths: SandboxPaths, kwokctl: str, env: tuple[tuple[str, str], ...]) -> None:
    """Remove what an interrupted ``kwokctl create`` left behind, processes included."""
    import subprocess

    pids = recorded_pids(paths)
    subprocess.run(
        [kwokctl, "--name", paths.cluster, "delete", "cluster"], env={**os.environ, **dict(env)}, capture_output=True
    )
    survivors = reap(pids)
    if survivors:
        raise HomelabError(f"processes {survivors} of a half-created sandbox did not exit; kill them and re-run")
    remove_tree(paths.cluster_dir)


def recorded_pids(paths: SandboxPaths) -> list[int]:
    pid_dir = paths.cluster_dir / "pids"
    pids = []
    for pid_file in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        try:
            pids.append(int(pid_file.read_text().strip()))
        except ValueError:
            continue
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(pids: list[int], timeout: float = 20.0) -> list[int]:
    """Wait for ``pids`` to exit, then SIGKILL stragglers; return any that survive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    return [p for p in pids if alive(p)]


def remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def require_kwokctl() -> str:
    path = require("kwokctl")
    if not Path(path).is_file():
        raise HomelabError(f"kwokctl at {path} is not a file")
    return path


def _reachable(paths: SandboxPaths) -> bool:
    """True when the sandbox's API server answers /readyz within a few seconds."""
    if not paths.kubeconfig.is_file():
        return False
    from homelab.core.kube import Kube

    try:
        return Kube(paths.kubeconfig, paths.context).ready(timeout=3)
    except HomelabError:
        return False


def ensure_up(session: Any, kube_version: str = "v1.35.4", timeout: float = 180.0) -> bool:
    """Create or restart the cluster, register the nodes, wait until Ready; True if anything changed."""
    from homelab.core.kube import Kube
    from homelab.core.plan import Plan, Run, WriteFile

    paths = paths_for(session.cfg, session.state_dir)
    kwokctl = require_kwokctl()
    env = (("KWOK_WORKDIR", str(paths.workdir)),)
    scratch_kubeconfig = str(paths.workdir / "kwokctl-kubeconfig.yaml")
    config_file = paths.workdir / "kwokctl.yaml"
    plan = Plan(f"sandbox cluster {paths.cluster}")
    marker = paths.cluster_dir / CREATED_MARKER
    if paths.cluster_dir.is_dir() and not marker.is_file() and not session.dry_run:
        discard_half_made(paths, kwokctl, env)  # an interrupted create: start over
    exists = marker.is_file()
    if not exists:
        plan.add(
            WriteFile(str(config_file), kwokctl_config(kube_version), 0o644, why="pin local binaries"),
            Run(
                (
                    kwokctl,
                    "--name",
                    paths.cluster,
                    "-c",
                    str(config_file),
                    "create",
                    "cluster",
                    "--kubeconfig",
                    scratch_kubeconfig,
                    "--wait",
                    f"{int(timeout)}s",
                ),
                env=env,
                why="start etcd, kube-apiserver, controller-manager, scheduler and kwok on 127.0.0.1",
            ),
        )
    elif not _reachable(paths):
        plan.add(
            Run(
                (kwokctl, "--name", paths.cluster, "start", "cluster", "--wait", f"{int(timeout)}s"),
                env=env,
                why="restart the stopped sandbox",
            )
        )
    node_objects: list[dict[str, Any]] = [node_object(n) for n in session.cfg.nodes]
    node_objects.append(local_path_storage_class())
    if session.dry_run:
        session.executor.execute(plan)
        print(
            f"  then: merge context {paths.context} into {paths.kubeconfig}; apply {len(node_objects)} nodes "
            f"({', '.join(n.name for n in session.cfg.nodes)}) and wait until Ready"
        )
        return False
    changed = not plan.empty
    if changed:
        session.executor.execute(plan)
        marker.touch()
    source = yaml.safe_load(paths.kwok_kubeconfig.read_text())
    before = paths.kubeconfig.read_bytes() if paths.kubeconfig.is_file() else b""
    merge_kubeconfig(paths.kubeconfig, source, paths.context)
    changed = changed or paths.kubeconfig.read_bytes() != before
    kube = Kube(paths.kubeconfig, paths.context)
    kube.wait_for("the API server", lambda: None if kube.ready(timeout=3) else "not ready", timeout)
    applied = kube.apply(node_objects)
    changed = changed or any(a.changed for a in applied)
    wanted = [n.name for n in session.cfg.nodes]

    def nodes_pending() -> str | None:
        ready = kube.ready_nodes()
        missing = [n for n in wanted if not ready.get(n)]
        return f"not Ready: {', '.join(missing)}" if missing else None

    kube.wait_for("nodes", nodes_pending, timeout, progress=print)
    return changed


def tear_down(session: Any) -> bool:
    """Stop every sandbox process, remove its files and its kubeconfig context."""
    from homelab.core.plan import Plan, Run

    paths = paths_for(session.cfg, session.state_dir)
    exists = paths.cluster_dir.is_dir()
    plan = Plan(f"remove sandbox {paths.cluster}")
    if exists:
        kwokctl = require_kwokctl()
        plan.add(
            Run(
                (kwokctl, "--name", paths.cluster, "delete", "cluster"),
                env=(("KWOK_WORKDIR", str(paths.workdir)),),
                why="stop the control plane processes",
            )
        )
    if session.dry_run:
        session.executor.execute(plan)
        print(f"  then: remove {paths.workdir} and context {paths.context} from {paths.kubeconfig}")
        return False
    pids = recorded_pids(paths)
    if exists:
        session.executor.execute(plan)
    survivors = reap(pids)
    if survivors:
        raise HomelabError(f"sandbox processes {survivors} did not exit; kill them and re-run sandbox.down")
    removed_context = remove_context(paths.kubeconfig, paths.context)
    remove_tree(paths.workdir)
    return exists or removed_context
