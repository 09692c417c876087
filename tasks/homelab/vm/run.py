"""Carrying out the VM layer: plans built from the config and what Terraform and limactl report.

Every change is an action of a plan: template, module and var files
(``WriteFile``), ``terraform init`` / ``apply`` / ``destroy`` and ``limactl
start`` / ``stop`` (``Run``), the inventory and the pinned host keys
(``WriteFile``). Looking is not acting: ``limactl list``, ``terraform output``,
``terraform plan`` in a scratch copy of the workspace and reading a new VM's
host key through ``limactl shell`` run under ``--dry-run`` too. After acting,
each function plans again and stops with the pending actions unless that plan
is empty.
"""

from __future__ import annotations

import json
from typing import Any

from homelab.config.schema import Node
from homelab.core.converge import require_empty
from homelab.core.plan import Note, Plan, Run, WriteFile
from homelab.vm import lima, terraform
from homelab.vm import plan as vms

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


def selected(s: Any, names: list[str]) -> list[Node]:
    """The named nodes, or every Lima node of the config."""
    if not names:
        return lima.lima_nodes(s.cfg)
    return [s.node(n) for n in names]


def workspace(s: Any) -> terraform.Workspace:
    return terraform.Workspace(s.state_dir / "terraform", terraform.choose_binary(s.cfg.terraform.binary))


def limactl_path(s: Any) -> str:
    """limactl, required only when the config has Lima nodes (else its name, for the var file)."""
    from homelab.core.tools import find, require

    return require("limactl") if lima.lima_nodes(s.cfg) else (find("limactl") or "limactl")


def inputs_plan(s: Any, ws: terraform.Workspace) -> Plan:
    """Templates, the module copy and the var file, each written only when its text changed."""
    return vms.prepare_plan(s.cfg, s.state_dir, lima.read_public_key(s.cfg), ws, limactl_path(s))


def terraform_plan(s: Any, targets: list[str]) -> Plan:
    """Inputs to write, then ``init`` and ``apply`` when Terraform (asked in a scratch copy) has changes."""
    ws = workspace(s)
    inputs = inputs_plan(s, ws)
    writes = [a for a in inputs.actions if isinstance(a, WriteFile)]
    planned = terraform.scratch_plan(s.executor, ws, writes, targets)
    plan = Plan("VMs through Terraform", list(inputs.actions))
    if planned.changes:
        summary = [line.strip() for line in planned.report.splitlines() if line.startswith("Plan:")]
        plan.add(Note("terraform: " + (summary[0] if summary else "changes pending")))
        plan.add(ws.init(), ws.apply(targets, s.cfg.terraform.parallelism))
    else:
        plan.add(Note("terraform: every VM matches the config"))
    return plan


def has_run(plan: Plan) -> bool:
    return any(isinstance(a, Run) for a in plan.actions)


def inventory_plan(s: Any, names: list[str]) -> Plan:
    """The inventory from Terraform's outputs, and the host keys of VMs not pinned yet."""
    outputs = terraform.outputs(s.executor, workspace(s))
    plan = Plan("inventory and host keys")
    text = json.dumps(vms.inventory(s.cfg, outputs), indent=2) + "\n"
    path = s.state_dir / "inventory.json"
    if not path.is_file() or path.read_text() != text:
        plan.add(WriteFile(str(path), text, 0o644, why="nodes later layers reach"))
    pins = []
    for node in (n for n in selected(s, names) if n.name in outputs):
        endpoint = s.endpoint(node)
        if s.known_hosts.lookup(endpoint) is None:
            read = Run((limactl_path(s), "shell", node.name, "cat", HOST_KEY), why=f"host key of {node.name}")
            pins.append((endpoint, vms.host_key_from_pub(s.executor.observe(read).stdout.strip())))
    known_hosts = s.known_hosts.with_keys(pins)
    if known_hosts is not None:
        names_pinned = ", ".join(endpoint.name for endpoint, _ in pins)
        plan.add(WriteFile(str(s.known_hosts.path), known_hosts, 0o600, why=f"pin host keys of {names_pinned}"))
    return plan


def apply(s: Any, names: list[str]) -> bool:
    """Converge the selected VMs (all when ``names`` is empty); True when something changed.

    What the inventory and the host keys need depends on the VMs Terraform
    creates, so under ``--dry-run`` with VMs to create that part is a note.
    """
    targets = [n.name for n in selected(s, names)] if names else []
    first = terraform_plan(s, targets)
    if s.dry_run and has_run(first):
        first.add(Note("then: inventory.json from Terraform's outputs and the new VMs' host keys, once they exist"))
        s.executor.execute(first)
        return False
    s.executor.execute(first)
    second = inventory_plan(s, names)
    s.executor.execute(second)
    if s.dry_run or (first.empty and second.empty):
        return False
    require_empty(Plan("VMs", terraform_plan(s, targets).actions + inventory_plan(s, names).actions))
    return True


def destroy_plan(s: Any, nodes: list[Node], every: bool) -> Plan:
    """``terraform destroy`` when the state holds the VMs, and forgetting their host keys."""
    targets = [] if every else [n.name for n in nodes]
    plan = Plan("delete VMs " + (", ".join(n.name for n in nodes) or "(the config has no Lima VMs)"))
    if (s.state_dir / "terraform" / "terraform.tfstate").is_file():
        ws = workspace(s)
        if terraform.scratch_plan(s.executor, ws, [], targets, destroy=True).changes:
            plan.add(ws.init(), ws.destroy(targets))
    known_hosts = s.known_hosts.without([s.endpoint(n) for n in nodes])
    if known_hosts is not None:
        plan.add(WriteFile(str(s.known_hosts.path), known_hosts, 0o600, why="forget their host keys"))
    return plan


def destroy(s: Any, names: list[str], yes: bool) -> bool:
    """Delete the selected VMs (all when ``names`` is empty); asks unless ``yes``; True when something changed."""
    from homelab.core.tasks import confirm

    nodes = selected(s, names)
    plan = destroy_plan(s, nodes, every=not names)
    question = f"Delete VMs {', '.join(n.name for n in nodes)} and their disks?"
    if not (s.dry_run or plan.empty) and not confirm(question, yes):
        s.executor.out("nothing deleted")
        return False
    s.executor.execute(plan)
    if s.dry_run or plan.empty:
        return False
    require_empty(destroy_plan(s, nodes, every=not names))
    return True


def states(s: Any, limactl: str) -> dict[str, vms.VmState]:
    return vms.parse_limactl_list(s.executor.observe(Run((limactl, "list", "--json"))).stdout)


def power(s: Any, names: list[str], want: str) -> bool:
    """Start or stop the selected VMs in parallel; True when something changed."""
    from homelab.core.tools import require

    limactl = require("limactl")
    nodes = selected(s, names)
    plan = vms.power_plan(nodes, states(s, limactl), limactl, want)
    s.executor.execute_concurrently(plan, key=lambda a: a.argv[-1] if isinstance(a, Run) else a.host)
    if s.dry_run or plan.empty:
        return False
    require_empty(vms.power_plan(nodes, states(s, limactl), limactl, want))
    return True
