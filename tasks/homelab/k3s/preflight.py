"""Node preflight: everything that must hold on every node before any node is touched.

Reachable with a pinned host key, sudo without a password prompt, unique
hostnames, the memory cgroup controller, K3S's ports free, enough disk,
sqlite3 (the backups snapshot the K3S datastore and app databases with it on the
node) or apt-get to install it with: Ubuntu's cloud images, which Lima boots on
the Mac, do not ship it; and, on a node K3S is not on yet, that the installer
downloads (a VM without DNS or a route out fails here, before the first node
gets its token and config).
One read-only command per node (run under --dry-run too); problems are collected for all nodes and
reported together, one line each.
"""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from homelab.config.schema import HomelabConfig, Node
from homelab.core.errors import HomelabError
from homelab.core.plan import Action, Plan, Run
from homelab.k3s.plan import NO_INSTALLER_HINT, size_kib
from homelab.storage import longhorn

SERVER_PORTS = (6443, 10250)
AGENT_PORTS = (10250,)

SCRIPT = r"""
echo "hostname=$(hostname)"
if sudo -n true 2>/dev/null; then echo "sudo=ok"; else echo "sudo=$(sudo -n true 2>&1 | head -n1)"; fi
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  if grep -qw memory /sys/fs/cgroup/cgroup.controllers; then echo "cgroup_memory=yes"; else echo "cgroup_memory=no"; fi
else
  awk '$1=="memory" && $4=="1" {f=1} END {print "cgroup_memory=" (f ? "yes" : "no")}' /proc/cgroups
fi
echo "listening=$(ss -Hltn 2>/dev/null | awk '{print $4}' | tr '\n' ' ')"
echo "disk_kib=$(df -Pk /var/lib | awk 'NR==2 {print $4}')"
if command -v k3s >/dev/null 2>&1; then echo "k3s=yes"; else echo "k3s=no"; fi
if command -v sqlite3 >/dev/null 2>&1; then echo "sqlite3=yes"; else echo "sqlite3=no"; fi
if command -v apt-get >/dev/null 2>&1; then echo "apt=yes"; else echo "apt=no"; fi
"""
# Only where K3S is not installed yet: a node that has it needs no download for a no-op run, and
# a run that changes nothing must not fail because get.k3s.io is down.
INSTALLER_CHECK = r"""
if command -v k3s >/dev/null 2>&1; then echo "installer=skip"
elif ! command -v curl >/dev/null 2>&1; then echo "installer=curl is missing"
elif why=$(curl -sSfL --max-time 20 -o /dev/null {url} 2>&1); then echo "installer=ok"
else echo "installer=$(printf '%s' "$why" | tail -n 1)"; fi
"""
# Installs sqlite3 where it is missing (k3s.install plans it from the preflight facts).
INSTALL_SQLITE3 = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3"


@dataclass(frozen=True)
class Facts:
    """What preflight learned about one node."""

    hostname: str
    sudo: str
    memory_cgroup: bool
    listening: tuple[str, ...]
    disk_kib: int
    has_k3s: bool
    has_sqlite3: bool
    has_apt: bool
    # "ok" (it downloads), "skip" (K3S is on the node, or the installer is uploaded), else why not
    installer: str = "skip"
    # Longhorn's prerequisites, read only when options.longhorn is on (storage/longhorn.py PREFLIGHT_SCRIPT)
    longhorn: tuple[tuple[str, str], ...] = ()


def script_for(cfg: HomelabConfig) -> str:
    """The preflight script; it tries the installer's download unless the config uploads the installer.

    With ``options.longhorn`` it also reads Longhorn's node prerequisites (iscsid, NFSv4 client, multipathd).
    """
    script = SCRIPT + (longhorn.PREFLIGHT_SCRIPT if cfg.options.longhorn else "")
    if cfg.k3s.installer_file:
        return script
    return script + INSTALLER_CHECK.format(url=shlex.quote(cfg.k3s.installer_url))


def parse(text: str) -> Facts:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return Facts(
        hostname=values.get("hostname", "").strip(),
        sudo=values.get("sudo", "").strip(),
        memory_cgroup=values.get("cgroup_memory") == "yes",
        listening=tuple(values.get("listening", "").split()),
        disk_kib=int(values.get("disk_kib") or 0),
        has_k3s=values.get("k3s") == "yes",
        has_sqlite3=values.get("sqlite3") == "yes",
        has_apt=values.get("apt") == "yes",
        installer=values.get("installer", "skip").strip() or "no error output",
        longhorn=tuple((k, values[k].strip()) for k in ("iscsid", "nfs4", "multipath") if k in values),
    )


def port_taken(listening: tuple[str, ...], node: Node, port: int) -> bool:
    for address in listening:
        host, _, bound = address.rpartition(":")
        if bound == str(port) and host.strip("[]") in ("*", "0.0.0.0", "::", node.ip):  # noqa: S104 - matching, not binding
            return True
    return False


def problems_for(cfg: HomelabConfig, facts: dict[str, Facts | Exception]) -> list[str]:
    """One line per failing check per node; empty when every node is fit."""
    lines: list[str] = []
    names: dict[str, list[str]] = {}
    for node in cfg.nodes:
        fact = facts[node.name]
        if isinstance(fact, Exception):
            text = str(fact)
            lines.append(text if text.startswith(f"{node.name}:") else f"{node.name}: {text}")
            continue
        names.setdefault(fact.hostname, []).append(node.name)
        if fact.sudo != "ok":
            lines.append(f"{node.name}: sudo needs a password ({fact.sudo}); allow NOPASSWD sudo for {cfg.ssh.user}")
        if not fact.memory_cgroup:
            lines.append(
                f"{node.name}: the memory cgroup controller is off; add cgroup_enable=memory cgroup_memory=1 "
                "to the kernel command line (Raspberry Pi: /boot/firmware/cmdline.txt) and reboot"
            )
        if not fact.has_k3s:
            for port in SERVER_PORTS if node.role == "server" else AGENT_PORTS:
                if port_taken(fact.listening, node, port):
                    lines.append(f"{node.name}: port {port} is already in use; stop what listens there")
        need = size_kib(cfg.k3s.min_free_disk)
        if fact.disk_kib < need:
            lines.append(
                f"{node.name}: only {fact.disk_kib // 1024} MiB free under /var/lib; need {cfg.k3s.min_free_disk}"
            )
        if not fact.has_sqlite3 and not fact.has_apt:
            lines.append(
                f"{node.name}: sqlite3 is missing and there is no apt-get to install it; install sqlite3 "
                "(the backups snapshot the K3S datastore and app databases with it)"
            )
        if cfg.options.longhorn:
            lines.extend(longhorn.preflight_problems(node.name, dict(fact.longhorn)))
        if fact.installer not in ("ok", "skip"):
            lines.append(
                f"{node.name}: cannot download the k3s installer from {cfg.k3s.installer_url} ({fact.installer})."
                f" {NO_INSTALLER_HINT}"
            )
    for hostname, nodes in names.items():
        if len(nodes) > 1:
            lines.append(f"{', '.join(nodes)}: the same hostname {hostname!r}; K3S needs unique hostnames")
    return lines


def install_missing_tools(facts: dict[str, Facts]) -> Plan:
    """Install sqlite3 with apt-get on each node that lacks it (preflight failed those without apt-get)."""
    steps: list[Action] = [
        Run(("sh", "-c", INSTALL_SQLITE3), host=name, sudo=True, why="the backups snapshot SQLite databases with it")
        for name, fact in facts.items()
        if not fact.has_sqlite3
    ]
    return Plan("tools the backups need on the nodes", steps)


def gather(session: Any, nodes: list[Node]) -> dict[str, Facts | Exception]:
    """Run the preflight script on every node at once; errors are kept per node."""
    script = script_for(session.cfg)

    def one(node: Node) -> Facts | Exception:
        try:
            result = session.executor.observe(Run(("sh", "-c", script), host=node.name, why="preflight"))
            return parse(result.stdout)
        except HomelabError as err:
            return err

    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return dict(zip([n.name for n in nodes], pool.map(one, nodes), strict=True))


def check(session: Any) -> dict[str, Facts]:
    """Raise one error listing every node's problems, or return the facts."""
    facts = gather(session, session.cfg.nodes)
    lines = problems_for(session.cfg, facts)
    if lines:
        raise HomelabError("preflight failed; no node was changed:\n  " + "\n  ".join(lines))
    return {name: fact for name, fact in facts.items() if isinstance(fact, Facts)}
