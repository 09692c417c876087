"""The sandbox target: a real control plane with simulated nodes, started by kwokctl.

kube-apiserver, etcd, kube-controller-manager and kube-scheduler run as local
processes bound to 127.0.0.1 (kwokctl's binary runtime); kwok plays the
kubelet for fake nodes named and labelled like the config's nodes. Everything
lives under ``<state_dir>/kwok``; the kubeconfig context ``<name>-sandbox`` is
merged into the project-local ``<state_dir>/kubeconfig``, never ``~/.kube``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from homelab.config.schema import HomelabConfig, Node
from homelab.core import state_files
from homelab.core.converge import require_empty, settle
from homelab.core.errors import HomelabError
from homelab.core.kube.pending import apply_actions
from homelab.core.kubeconfig import merge_action, remove_action
from homelab.core.plan import LOCAL, Apply, Note, Plan, Run, Wait, WriteFile
from homelab.core.tools import require
from homelab.sandbox.processes import free_ports

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


# The ports of the control plane's processes. kwokctl picks each port it is not given by counting
# down from 32767, the same sequence in every kwokctl: two sandboxes created at the same moment
# (two homelabs on one machine, parallel test workers) took the same ports, and one API server
# never answered. Ports the kernel hands out to each sandbox do not collide.
KWOKCTL_PORTS = (
    "etcdPort",
    "etcdPeerPort",
    "kubeApiserverPort",
    "kubeControllerManagerPort",
    "kubeSchedulerPort",
    "kwokControllerPort",
)


def kwokctl_config(kube_version: str, ports: dict[str, int]) -> str:
    """The KwokctlConfiguration that pins every component to a local binary and its ports (KWOKCTL_PORTS)."""
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
        **{name: ports[name] for name in KWOKCTL_PORTS},
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


VOLUME_ROOT = "/var/lib/homelab-sandbox"  # the volumes' hostPath prefix; on this machine, under volumes_dir


def volumes_dir(state_dir: Path) -> Path:
    """Where the sandbox's volumes live on this machine: in its workdir, so ``sandbox.down`` removes them."""
    return state_dir / "kwok" / "volumes"


def volume_host_dir(state_dir: Path, host_path: str) -> Path | None:
    """The directory on this machine behind a sandbox volume's hostPath (None for any other path).

    No pod runs on the sandbox's simulated nodes, so nothing else reads or writes
    it: the backup reads it and the restore fills it, as they would on a node.
    """
    prefix = VOLUME_ROOT + "/"
    rest = host_path[len(prefix) :] if host_path.startswith(prefix) else ""
    parts = rest.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") for p in parts):
        return None
    return volumes_dir(state_dir) / parts[0] / parts[1]


def volumes_for(claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stand in for local-path-provisioner: one PersistentVolume pre-bound to each claim.

    Planned from the rendered claims, so the sandbox's volumes are applied with
    them in one plan; the API server binds each claim to its volume. Retained, as
    the toolkit keeps every app volume (``gitops.kept``): a claim deleted by hand
    leaves its volume Released, and ``inv up --delete-data`` deletes it.
    """
    volumes = []
    for claim in claims:
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
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": f"{VOLUME_ROOT}/{meta['namespace']}/{meta['name']}"},
                    "claimRef": {"namespace": meta["namespace"], "name": meta["name"]},
                },
            }
        )
    return volumes


CREATED_MARKER = "homelab-created"
ENV_WORKDIR = "KWOK_WORKDIR"


def recorded_pids(paths: SandboxPaths) -> list[int]:
    pid_dir = paths.cluster_dir / "pids"
    pids = []
    for pid_file in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        try:
            pids.append(int((state_files.read_text(pid_file, state_files.SANDBOX_RECORD) or "").strip()))
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


def exited(paths: SandboxPaths, what: str, timeout: float = 20.0) -> Wait:
    """Wait until the processes kwokctl recorded (read now, while their pid files exist) are gone."""
    pids = recorded_pids(paths)

    def running() -> str | None:
        left = [str(p) for p in pids if alive(p)]
        return f"still running: {', '.join(left)}" if left else None

    return Wait(f"the processes of {what} to exit", running, timeout, host=LOCAL)


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


def executor_for(session: Any, paths: SandboxPaths) -> Any:
    """The session's executor acting on the sandbox's own context, whatever the config's target says."""
    from homelab.core.executor import Executor
    from homelab.core.kube import Kube

    ex = session.executor
    return Executor(
        ex.local, ex.connect, dry_run=ex.dry_run, out=ex.out, kube=lambda: Kube(paths.kubeconfig, paths.context)
    )


def control_plane_plan(session: Any, kube_version: str, timeout: float) -> Plan:
    """Discard what an interrupted create left, create the cluster, or restart it; nothing when it answers."""
    paths = paths_for(session.cfg, session.state_dir)
    plan = Plan(f"sandbox cluster {paths.cluster}")
    marker = paths.cluster_dir / CREATED_MARKER
    if marker.is_file() and _reachable(paths):
        return plan
    kwokctl = require_kwokctl()
    env = ((ENV_WORKDIR, str(paths.workdir)),)
    if marker.is_file():
        start = (kwokctl, "--name", paths.cluster, "start", "cluster", "--wait", f"{int(timeout)}s")
        return plan.add(Run(start, env=env, why="restart the stopped sandbox"))
    if paths.cluster_dir.is_dir():  # created, but the create never finished: start over
        delete = (kwokctl, "--name", paths.cluster, "delete", "cluster")
        plan.add(
            Run(("sh", "-c", '"$@" || true', "sh", *delete), env=env, why="stop what an interrupted create started"),
            exited(paths, "the half-created sandbox"),
            Run(("rm", "-rf", "--", str(paths.cluster_dir)), why="its files"),
        )
    config_file = paths.workdir / "kwokctl.yaml"
    create = (
        kwokctl,
        "--name",
        paths.cluster,
        "-c",
        str(config_file),
        "create",
        "cluster",
        "--kubeconfig",
        str(paths.workdir / "kwokctl-kubeconfig.yaml"),
        "--wait",
        f"{int(timeout)}s",
    )
    return plan.add(
        WriteFile(
            str(config_file),
            kwokctl_config(kube_version, free_ports(KWOKCTL_PORTS)),
            0o644,
            why="pin binaries and ports",
        ),
        Run(create, env=env, why="start etcd, kube-apiserver, controller-manager, scheduler and kwok on 127.0.0.1"),
        WriteFile(str(marker), "", 0o644, why="the create finished"),
    )


def nodes_plan(session: Any, executor: Any, timeout: float) -> Plan:
    """The sandbox's context in the project kubeconfig, its nodes and StorageClass, waits until they are Ready."""
    paths = paths_for(session.cfg, session.state_dir)
    plan = Plan(f"sandbox {paths.cluster}: context and nodes")
    merge = merge_action(
        paths.kubeconfig,
        yaml.safe_load(state_files.read_text(paths.kwok_kubeconfig, state_files.KUBECONFIG) or ""),
        paths.context,
    )
    objects = [node_object(n) for n in session.cfg.nodes] + [local_path_storage_class()]
    why = "kwok nodes named like the config's, and the StorageClass K3S ships"
    if isinstance(merge, Note) and _reachable(paths):
        applies = apply_actions(executor.kube(), objects, why)
    else:  # the context is about to change: what the cluster holds is read once it is written
        applies = [Apply(tuple(objects), why=why)]
    wanted = [n.name for n in session.cfg.nodes]

    def api_pending() -> str | None:
        return None if executor.kube().ready(timeout=3) else "not answering"

    def nodes_pending() -> str | None:
        ready = executor.kube().ready_nodes()
        missing = [n for n in wanted if not ready.get(n)]
        return f"not Ready: {', '.join(missing)}" if missing else None

    return plan.add(
        merge,
        Wait("the API server", api_pending, timeout),
        *applies,
        Wait(f"nodes {', '.join(wanted)} to be Ready", nodes_pending, timeout),
    )


def ensure_up(session: Any, kube_version: str | None = None, timeout: float = 180.0) -> bool:
    """Create or restart the cluster, register the nodes, wait until Ready; True if anything changed.

    The second plan (context, nodes) reads the kubeconfig kwokctl writes when it
    creates the cluster, so under ``--dry-run`` with a cluster to create or
    restart it is a note.
    """
    from homelab.core.pins import load

    kube_version = kube_version or "v" + load().binaries["kubernetes"].version  # what get-binaries.sh built
    paths = paths_for(session.cfg, session.state_dir)
    executor = executor_for(session, paths)
    first = control_plane_plan(session, kube_version, timeout)
    if executor.dry_run and not first.empty:
        names = ", ".join(n.name for n in session.cfg.nodes)
        first.add(
            Note(
                f"then: merge context {paths.context} into {paths.kubeconfig}, apply nodes {names} "
                "and wait until they are Ready, once the control plane runs"
            )
        )
        executor.execute(first)
        return False
    if not first.empty:
        executor.execute(first)
    second = nodes_plan(session, executor, timeout)
    executor.execute(second)
    if executor.dry_run:
        return False
    if first.empty and second.empty:
        settle(executor, second)
        return False
    again = control_plane_plan(session, kube_version, timeout)
    require_empty(Plan(again.title, again.actions + nodes_plan(session, executor, timeout).actions))
    return True


def down_plan(session: Any) -> Plan:
    """Stop every sandbox process, remove its files and its kubeconfig context."""
    from homelab.sandbox import controllers

    paths = paths_for(session.cfg, session.state_dir)
    plan = Plan(f"remove sandbox {paths.cluster}", controllers.down_actions(session))  # before their API server goes
    if paths.cluster_dir.is_dir():
        delete = (require_kwokctl(), "--name", paths.cluster, "delete", "cluster")
        plan.add(
            Run(delete, env=((ENV_WORKDIR, str(paths.workdir)),), why="stop the control plane processes"),
            exited(paths, "the sandbox"),
        )
    if paths.workdir.exists():
        plan.add(Run(("rm", "-rf", "--", str(paths.workdir)), why="the sandbox's files"))
    return plan.add(remove_action(paths.kubeconfig, paths.context))


def tear_down(session: Any) -> bool:
    """Remove the sandbox; True when there was something to remove."""
    executor = executor_for(session, paths_for(session.cfg, session.state_dir))
    plan = down_plan(session)
    executor.execute(plan)
    if executor.dry_run or plan.empty:
        return False
    require_empty(down_plan(session))
    return True
