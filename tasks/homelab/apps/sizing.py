"""Do the apps fit the nodes? Their memory requests, and the platform's, against what the nodes leave them.

The scheduler places a pod where its memory request fits the node's allocatable
memory, and never looks at what the pod then uses. So requests are the apps' real
steady use (their contracts, ``homelab.apps.contracts.Resources``) and, added up,
they must fit what the nodes give pods: each node's memory less what K3S and the
guest system keep. A config whose requests do not fit is refused (exit 2): on the
cluster its last pods would stay Pending, or, with requests below real use, the
kernel would kill them.

Reserves, from K3S's own resource profiling (https://docs.k3s.io/reference/resource-profiling):
a server with a workload uses about 1.6 GB (K3S and containerd), an agent about 275 MB;
each also runs the guest's systemd, journald and sshd. A node's ``reserved_memory`` replaces
its role's figure (an owner who measured their own). The platform's share is
what the toolkit renders for it (``homelab.gitops.platform.platform``), each
Deployment times its replicas and each per-node agent times the nodes; the charts'
own defaults (Argo CD, cert-manager, MetalLB) ask for little and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homelab.apps import contracts
from homelab.config.kinds import size_mib
from homelab.config.schema import HomelabConfig, Node
from homelab.core.errors import Problem
from homelab.host.sizing import shown

SERVER_RESERVE_MIB = 1536  # K3S server with a workload, 1596 MB (resource profiling), and the guest system
AGENT_RESERVE_MIB = 512  # K3S agent, 275 MB (resource profiling), and the guest system
PER_NODE_KEYS = frozenset({"nodeAgent"})  # chart values of a DaemonSet (Velero's node agent)


@dataclass(frozen=True)
class Demand:
    """One workload's memory request (MiB, all its replicas) and the key path an owner changes."""

    name: str
    mib: int
    at: str


QUANTITY_BYTES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_mib(quantity: str) -> int:
    """A Kubernetes memory quantity (``128Mi``, ``1Gi``, ``500M``, ``134217728``) in MiB, rounded up."""
    suffix = next((s for s in QUANTITY_BYTES if quantity.endswith(s)), "")
    number = float(quantity[: len(quantity) - len(suffix)])
    return -(-int(number * QUANTITY_BYTES.get(suffix, 1)) // 2**20)


def reserve_mib(node: Node) -> int:
    """What K3S and the system keep on the node: its ``reserved_memory``, else the profiled figure for its role."""
    if node.reserved_memory:
        return size_mib(node.reserved_memory)
    return SERVER_RESERVE_MIB if node.role == "server" else AGENT_RESERVE_MIB


def allocatable_mib(node: Node) -> int:
    """What the node leaves pods: its memory less K3S's and the system's share (never below zero)."""
    return max(size_mib(node.memory) - reserve_mib(node), 0)


def app_demands(cfg: HomelabConfig) -> list[Demand]:
    """Each deployed app's memory request times its replicas."""
    found = []
    for name, app in cfg.deployed_apps.items():
        sizing = contracts.resources_for(app)
        found.append(Demand(name, size_mib(sizing.memory_request) * app.replicas, f"apps.{name}.memory_request"))
    return found


def memory_requests(obj: Any, nodes: int) -> int:
    """Memory requests (MiB) anywhere in rendered objects or chart values, times replicas or nodes."""
    if isinstance(obj, list):
        return sum(memory_requests(item, nodes) for item in obj)
    if not isinstance(obj, dict):
        return 0
    total = 0
    resources = obj.get("resources")
    requests = resources.get("requests") if isinstance(resources, dict) else None
    if isinstance(requests, dict) and isinstance(requests.get("memory"), str):
        total += quantity_mib(requests["memory"])
    for key, value in obj.items():
        if key == "resources":
            continue
        times = nodes if key in PER_NODE_KEYS else 1
        total += times * memory_requests(value, nodes)
    kind = obj.get("kind")
    if kind == "DaemonSet":
        total *= nodes
    elif kind in ("Deployment", "StatefulSet"):
        total *= int((obj.get("spec") or {}).get("replicas", 1))
    return total


def platform_demands(cfg: HomelabConfig) -> list[Demand]:
    """The platform components' memory requests, from what the toolkit renders for them."""
    from homelab.gitops.platform import platform

    nodes = len(cfg.nodes) or 1
    found = []
    for component, (chart, manifests) in platform(cfg).items():
        mib = memory_requests(chart, nodes) + memory_requests(manifests, nodes)
        if mib:
            found.append(Demand(component, mib, component))
    return found


def problems(cfg: HomelabConfig) -> list[Problem]:
    """Requests that cannot fit the nodes: all of them together, or one pod larger than any node leaves."""
    if not cfg.nodes:
        return []
    room = sum(allocatable_mib(node) for node in cfg.nodes)
    largest = max(allocatable_mib(node) for node in cfg.nodes)
    apps, platform = app_demands(cfg), platform_demands(cfg)
    found = []
    for name, app in cfg.deployed_apps.items():
        request = size_mib(contracts.resources_for(app).memory_request)
        if request > largest:
            found.append(
                Problem(
                    f"apps.{name}.memory_request",
                    f"{shown(request)} does not fit on any node: the largest leaves pods {shown(largest)} (its "
                    f"memory less {shown(SERVER_RESERVE_MIB)} on a server, {shown(AGENT_RESERVE_MIB)} on an agent, "
                    "for K3S and the system, unless its reserved_memory says otherwise); lower it or give a node "
                    "more memory",
                )
            )
    wanted = sum(d.mib for d in apps) + sum(d.mib for d in platform)
    if wanted > room and not found:  # one pod too large for every node is the fix to make first
        top = max(apps, key=lambda d: d.mib, default=None)
        how = f"lower {top.at} ({shown(top.mib)}, the largest), set enabled: false on an app, " if top else ""
        found.append(
            Problem(
                top.at if top else "nodes",
                f"the apps ask for {shown(sum(d.mib for d in apps))} and the platform for "
                f"{shown(sum(d.mib for d in platform))}, {shown(wanted)} in all, and the nodes leave pods "
                f"{shown(room)} (their memory less what K3S and the system keep: reserved_memory, else "
                f"{shown(SERVER_RESERVE_MIB)} per server and {shown(AGENT_RESERVE_MIB)} per agent): {how}"
                f"or give the nodes {shown(wanted - room)} more memory",
            )
        )
    return found


def summary(cfg: HomelabConfig) -> str:
    """One line: what the apps and the platform ask for against what the nodes leave them."""
    apps = sum(d.mib for d in app_demands(cfg))
    platform = sum(d.mib for d in platform_demands(cfg))
    room = sum(allocatable_mib(node) for node in cfg.nodes)
    return f"memory requests: apps {shown(apps)} + platform {shown(platform)} of {shown(room)} the nodes leave pods"
