"""The VM layer's planning: rendered templates, Terraform inputs, start/stop plans.

Pure functions build plans from the config and observed state; the vm
namespace executes them. Lima is driven by Terraform for create, replace and
delete, and directly by limactl for start, stop and status.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab.config.kinds import size_mib
from homelab.config.schema import HomelabConfig, Node
from homelab.core.errors import Problem
from homelab.core.plan import Note, Plan, Run, WriteFile
from homelab.core.session import ssh_host
from homelab.vm import lima, terraform


@dataclass(frozen=True)
class VmState:
    """What limactl reports about one instance."""

    name: str
    status: str
    cpus: int | None = None
    memory: int | None = None
    disk: int | None = None  # bytes


def templates_dir(state_dir: Path) -> Path:
    return state_dir / "lima"


def template_writes(state_dir: Path, rendered: dict[str, str]) -> tuple[list[WriteFile], dict[str, Path]]:
    """WriteFiles for templates whose text changed, and every template's path."""
    paths = {name: templates_dir(state_dir) / f"{name}.yaml" for name in rendered}
    writes = [
        WriteFile(str(paths[name]), text, 0o644, why="Lima template")
        for name, text in sorted(rendered.items())
        if not paths[name].is_file() or paths[name].read_text() != text
    ]
    return writes, paths


def prepare_plan(cfg: HomelabConfig, state_dir: Path, public_key: str, ws: terraform.Workspace, limactl: str) -> Plan:
    """Files to write before Terraform runs: templates, module copy, var file."""
    rendered = lima.render_all(cfg, public_key)
    writes, paths = template_writes(state_dir, rendered)
    plan = Plan("render Lima templates and Terraform inputs", list(writes))
    plan.extend(terraform.module_files(ws))
    plan.extend(terraform.var_file(ws, terraform.variables(cfg, paths, rendered, limactl)))
    return plan


def parse_limactl_list(text: str) -> dict[str, VmState]:
    """``limactl list --json`` prints one JSON object per line."""
    states = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        states[item["name"]] = VmState(
            item["name"], item.get("status", "Unknown"), item.get("cpus"), item.get("memory"), item.get("disk")
        )
    return states


def disk_shrinks(cfg: HomelabConfig, states: dict[str, VmState]) -> list[Problem]:
    """Nodes whose configured disk is smaller than their VM's: Lima grows a disk but cannot shrink one.

    ``limactl edit --disk`` refuses a smaller size only after the VM was stopped
    for the resize, which would leave the node down; asked before anything runs,
    the refusal names the node's key instead.
    """
    problems = []
    for i, node in enumerate(cfg.nodes):
        state = states.get(node.name)
        if state is None or not state.disk or node.provider != "lima":
            continue
        wanted = size_mib(node.disk) * 1024 * 1024
        if wanted < state.disk:
            problems.append(
                Problem(
                    f"nodes[{i}].disk",
                    f"{node.disk} is smaller than {node.name}'s disk ({state.disk // 1024**3}GiB): a disk can grow, "
                    "never shrink; set it back, or back up and recreate the VM (inv vm.destroy, inv up)",
                )
            )
    return problems


def power_plan(
    nodes: list[Node], states: dict[str, VmState], limactl: str, want: str, env: tuple[tuple[str, str], ...] = ()
) -> Plan:
    """Start or stop each VM that is not yet in the wanted state (``env``: the QEMU accelerator's)."""
    verb = "start" if want == "Running" else "stop"
    plan = Plan(f"{verb} VMs")
    for node in nodes:
        state = states.get(node.name)
        if state is None:
            plan.add(Note(f"{node.name}: does not exist; run `inv vm.create` first"))
        elif state.status == want:
            plan.add(Note(f"{node.name}: already {want.lower()}"))
        else:
            plan.add(Run((limactl, verb, "--tty=false", node.name), why=f"{verb} {node.name}", env=env))
    return plan


def host_key_from_pub(line: str) -> Any:
    """A paramiko key from one line of an OpenSSH ``.pub`` file."""
    import paramiko

    kind, data = line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def inventory(cfg: HomelabConfig, outputs: dict[str, Any]) -> dict[str, Any]:
    """Every node later layers reach: Terraform's VMs plus existing SSH hosts."""
    nodes = {}
    for node in cfg.nodes:
        if node.provider == "lima" and node.name not in outputs:
            continue
        nodes[node.name] = {
            "ip": node.ip,
            "ssh_host": ssh_host(cfg, node),
            "role": node.role,
            "provider": node.provider,
            "ssh_port": node.ssh_port or cfg.ssh.port,
        }
    return {"name": cfg.name, "nodes": nodes}
