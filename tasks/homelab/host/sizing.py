"""Are the Lima nodes sized for this machine? Their memory and CPUs against the host's, less a headroom.

Why a refusal and not a warning: a Mac whose VMs ask for more memory than it has
does not fail at ``limactl start``; it swaps, and LM Studio, the host agent and the
nodes' kernels fight for the same pages until the kernel OOM-killer picks pods.
The nodes' memory together may use the host's memory less ``host.reserved_memory``
(macOS itself and LM Studio's loaded model); each node may have at most the
host's CPUs less ``host.reserved_cpus``: Virtualization.framework refuses a VM with
more vCPUs than the host's ``maximumAllowedCPUCount`` (the host's cores), and QEMU
gains nothing from them. vCPUs together beyond the host's cores are only said:
they are threads the host time-shares, while guest memory is not given back.

The host's facts come from ``sysctl -n hw.memsize hw.ncpu`` on macOS (sysctl(8);
``hw.memsize`` is bytes) and ``/proc/meminfo``'s MemTotal (kB, proc(5)) plus
``os.cpu_count()`` on Linux. ``HOMELAB_HOST_MEMORY`` (a size such as ``16GiB``) and
``HOMELAB_HOST_CPUS`` stand in for them, so a test can be a 16 GB or a 24 GB Mac.
They are read only when the toolkit runs on the kind of host the config names
(``host.kind``): a Linux CI runner's memory says nothing about the owner's Mac.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from homelab.config.kinds import size_mib
from homelab.config.schema import HomelabConfig, Node
from homelab.core.errors import ConfigError, Problem

MEMORY_ENV = "HOMELAB_HOST_MEMORY"
CPUS_ENV = "HOMELAB_HOST_CPUS"
STEP_MIB = 512  # suggested sizes are whole half-GiB steps: what an owner would write
MIN_NODE_MIB = 1024  # a floor for a suggestion: K3S plus a few pods (docs.k3s.io/installation/requirements)
SYSTEMS = {"macos": "Darwin", "linux": "Linux"}


@dataclass(frozen=True)
class HostFacts:
    """The host's memory (MiB) and CPUs, and where they came from (shown in messages)."""

    memory_mib: int
    cpus: int
    source: str


def _from_env(env: dict[str, str] | os._Environ[str]) -> HostFacts | None:
    memory, cpus = env.get(MEMORY_ENV), env.get(CPUS_ENV)
    if memory is None and cpus is None:
        return None
    if memory is None or cpus is None:
        raise ConfigError([Problem(MEMORY_ENV, f"set both {MEMORY_ENV} (e.g. 24GiB) and {CPUS_ENV} (e.g. 10)")])
    try:
        return HostFacts(size_mib(memory), int(cpus), f"{MEMORY_ENV}={memory} {CPUS_ENV}={cpus}")
    except ValueError:
        raise ConfigError(
            [Problem(MEMORY_ENV, f"{memory!r}/{cpus!r}: give a size like 24GiB and a whole number of CPUs")]
        ) from None


def meminfo_mib(text: str) -> int:
    """MemTotal from /proc/meminfo's text, in MiB (the file gives kB, meaning KiB)."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ValueError("no MemTotal line in /proc/meminfo")


def probe(kind: str, env: dict[str, str] | os._Environ[str] | None = None) -> HostFacts | None:
    """This host's facts, from the stand-in variables or the system; None when this is not a ``kind`` host."""
    given = _from_env(os.environ if env is None else env)
    if given is not None:
        return given
    if platform.system() != SYSTEMS[kind]:
        return None
    if kind == "macos":
        out = subprocess.run(["sysctl", "-n", "hw.memsize", "hw.ncpu"], capture_output=True, text=True, check=True)
        memsize, ncpu = out.stdout.split()[:2]
        return HostFacts(int(memsize) // (1024 * 1024), int(ncpu), "sysctl hw.memsize hw.ncpu")
    meminfo = Path("/proc/meminfo").read_text()
    return HostFacts(meminfo_mib(meminfo), os.cpu_count() or 1, "/proc/meminfo and os.cpu_count()")


def shown(mib: int) -> str:
    """A size as the config writes it: GiB when whole, else MiB."""
    return f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib}MiB"


def lima_nodes(cfg: HomelabConfig) -> list[tuple[int, Node]]:
    """The nodes this host runs (Lima VMs), with their index in ``nodes`` for the key path."""
    return [(i, node) for i, node in enumerate(cfg.nodes) if node.provider == "lima"]


def suggestion(sizes: list[int], budget: int) -> list[int]:
    """Each size scaled down by the same factor so that they fit ``budget``, rounded down to 512 MiB steps."""
    total = sum(sizes)
    scaled = [max(MIN_NODE_MIB, (size * budget // total) // STEP_MIB * STEP_MIB) for size in sizes]
    return scaled


def problems(cfg: HomelabConfig, facts: HostFacts) -> list[Problem]:
    """What does not fit on this host, one problem per key to change, each with a size that fits."""
    nodes = lima_nodes(cfg)
    if not nodes:
        return []
    found: list[Problem] = []
    reserved = size_mib(cfg.host.reserved_memory)
    budget = facts.memory_mib - reserved
    sizes = [size_mib(node.memory) for _, node in nodes]
    if sum(sizes) > budget:
        host = f"the host has {shown(facts.memory_mib)} ({facts.source}) less host.reserved_memory {shown(reserved)}"
        if budget < MIN_NODE_MIB * len(nodes):
            found.append(
                Problem(
                    "host.reserved_memory",
                    f"{host} leaves {shown(max(budget, 0))}, less than {shown(MIN_NODE_MIB)} per node: "
                    "run fewer nodes or lower host.reserved_memory",
                )
            )
            return found
        fits = suggestion(sizes, budget)
        for (i, node), fit in zip(nodes, fits, strict=True):
            found.append(
                Problem(
                    f"nodes[{i}].memory",
                    f"{node.name}'s {node.memory} is part of {shown(sum(sizes))} for the nodes, and {host} "
                    f"leaves {shown(budget)}: set it to {shown(fit)} (every node scaled alike)",
                )
            )
    most = facts.cpus - cfg.host.reserved_cpus
    for i, node in nodes:
        if node.cpus > most:
            found.append(
                Problem(
                    f"nodes[{i}].cpus",
                    f"{node.name} has {node.cpus} CPUs and the host has {facts.cpus} ({facts.source}) less "
                    f"host.reserved_cpus {cfg.host.reserved_cpus}: set it to {max(most, 1)} or fewer",
                )
            )
    return found


def cpu_note(cfg: HomelabConfig, facts: HostFacts) -> str | None:
    """The nodes' vCPUs together beyond the host's: said, since the host time-shares them."""
    total = sum(node.cpus for _, node in lima_nodes(cfg))
    if total > facts.cpus:
        return f"the nodes have {total} vCPUs together on {facts.cpus} host CPUs: they share them (not refused)"
    return None


def check(cfg: HomelabConfig, env: dict[str, str] | None = None) -> str:
    """Refuse (``ConfigError``, exit 2) nodes that do not fit this host; else one line saying what was compared."""
    if cfg.target != "lima" or not lima_nodes(cfg):
        return "host sizing: no Lima nodes on this host"
    facts = probe(cfg.host.kind, env)
    if facts is None:
        return (
            f"host sizing: not checked; host.kind is {cfg.host.kind} and this is {platform.system()} "
            f"(set {MEMORY_ENV} and {CPUS_ENV} to check for that host)"
        )
    found = problems(cfg, facts)
    if found:
        raise ConfigError(found)
    total = sum(size_mib(node.memory) for _, node in lima_nodes(cfg))
    line = (
        f"host sizing: the nodes' {shown(total)} fit {shown(facts.memory_mib)} less "
        f"{cfg.host.reserved_memory} reserved ({facts.source})"
    )
    note = cpu_note(cfg, facts)
    return f"{line}; {note}" if note else line
