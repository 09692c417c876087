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
import os
from pathlib import Path
from typing import Any

from homelab.config.schema import Node
from homelab.core.converge import require_empty
from homelab.core.plan import Note, Plan, Run, WriteFile
from homelab.vm import accel, lima, terraform
from homelab.vm import plan as vms

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


def selected(s: Any, names: list[str]) -> list[Node]:
    """The named nodes, or every Lima node of the config."""
    if not names:
        return lima.lima_nodes(s.cfg)
    return [s.node(n) for n in names]


def workspace(s: Any) -> terraform.Workspace:
    accelerator = accel.detect(s.cfg) if lima.lima_nodes(s.cfg) else None
    return terraform.Workspace(
        s.state_dir / "terraform",
        terraform.choose_binary(s.cfg.terraform.binary),
        accelerator.env if accelerator else (),
    )


def limactl_path(s: Any) -> str:
    """limactl, required only when the config has Lima nodes (else its name, for the var file)."""
    from homelab.core.tools import find, require

    return require("limactl") if lima.lima_nodes(s.cfg) else (find("limactl") or "limactl")


# limactl 1.2 makes its own SSH key ($LIMA_HOME/_config/user, in Lima's documented internal layout)
# at the first start, checking for it outside its lock: starts in parallel on a new machine both run
# ssh-keygen, and the second fails on "Overwrite (y/n)?". Seen with three VMs on a fresh LIMA_HOME.
FIRST_RUN_RACE = "1.2 races creating its SSH key when VMs start in parallel"


def lima_user_key() -> Path:
    home = os.environ.get("LIMA_HOME") or str(Path.home() / ".lima")
    return Path(home) / "_config" / "user"


def limactl_problem(s: Any) -> str | None:
    """Why limactl cannot run at all, with the fix; None when it runs.

    Lima refuses to run as root ("must not run as the root user"): said once, before
    Terraform starts it once per VM, instead of from inside Terraform's provisioner output.
    """
    listed = s.executor.observe(Run((limactl_path(s), "list", "--json")), check=False)
    if listed.exited == 0:
        return None
    reason = ((listed.stderr or listed.stdout).strip().splitlines() or [f"exit {listed.exited}"])[-1]
    fix = "run inv as your own user, not root" if "root" in reason else "check limactl's installation"
    return f"limactl cannot run ({reason}): {fix}"


def inputs_plan(s: Any, ws: terraform.Workspace) -> Plan:
    """Templates, the module copy and the var file, each written only when its text changed."""
    return vms.prepare_plan(s.cfg, s.state_dir, lima.read_public_key(s.cfg), ws, limactl_path(s))


LOST = {
    "server": "the K3S datastore (every object of the cluster) and its local-path volumes",
    "agent": "the local-path volumes of the pods it runs",
}


def terraform_plan(s: Any, targets: list[str], replace_ok: bool = False) -> Plan:
    """Inputs to write, then ``init`` and ``apply`` when Terraform (asked in a scratch copy) has changes.

    A VM that would be deleted and created again is refused unless ``replace_ok``,
    naming what it would lose; its pinned host key is forgotten with it. Resizes
    run one VM at a time (each stops its VM), so the cluster keeps the others.
    """
    from homelab.core.errors import ConfigError, UsageError

    if shrinks := disk_shrinks(s):
        raise ConfigError(shrinks)  # before Terraform stops a VM whose resize limactl then refuses
    ws = workspace(s)
    inputs = inputs_plan(s, ws)
    writes = [a for a in inputs.actions if isinstance(a, WriteFile)]
    planned = terraform.scratch_plan(s.executor, ws, writes, targets)
    plan = Plan("VMs through Terraform", list(inputs.actions))
    if not planned.changes:
        return plan.add(Note("terraform: every VM matches the config"))
    accelerator = accel.detect(s.cfg)
    if accelerator.name in ("kvm", "tcg"):
        plan.add(Note(accelerator.describe()))
    replaced, resized = terraform.replacements(planned.report)
    if replaced and not replace_ok:
        losses = "; ".join(f"{name} loses {LOST[s.node(name).role]}" for name in replaced)
        message = (
            f"{', '.join(replaced)} would be deleted and created again (image, arch, network or provisioning "
            f"changed): {losses}. Back up first (inv backup.run), then run inv vm.apply --yes, or undo the change"
        )
        if not s.dry_run:
            raise UsageError(message)
        plan.add(Note(f"the real run stops here without --yes: {message}"))
    summary = [line.strip() for line in planned.report.splitlines() if line.startswith("Plan:")]
    plan.add(Note("terraform: " + (summary[0] if summary else "changes pending")))
    if resized:
        plan.add(Note(f"resized in place, one VM at a time (stop, limactl edit, start): {', '.join(resized)}"))
    parallelism = 1 if len(resized) > 1 else s.cfg.terraform.parallelism
    if parallelism > 1 and not lima_user_key().exists():
        parallelism = 1
        plan.add(Note(f"Lima's first run here: VMs start one at a time (limactl {FIRST_RUN_RACE})"))
    plan.add(ws.init(), ws.apply(targets, parallelism))
    known_hosts = s.known_hosts.without([s.endpoint(s.node(name)) for name in replaced])
    if known_hosts is not None:
        plan.add(WriteFile(str(s.known_hosts.path), known_hosts, 0o600, why=f"forget {', '.join(replaced)}'s old keys"))
    return plan


def disk_shrinks(s: Any) -> list[Any]:
    """Configured disks smaller than their VM's, read from limactl (nothing when it cannot answer yet)."""
    if not lima.lima_nodes(s.cfg):
        return []
    listed = s.executor.observe(Run((limactl_path(s), "list", "--json")), check=False)
    return vms.disk_shrinks(s.cfg, vms.parse_limactl_list(listed.stdout)) if listed.exited == 0 else []


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


def apply(s: Any, names: list[str], replace_ok: bool = False) -> bool:
    """Converge the selected VMs (all when ``names`` is empty); True when something changed.

    What the inventory and the host keys need depends on the VMs Terraform
    creates, so under ``--dry-run`` with VMs to create that part is a note.
    """
    targets = [n.name for n in selected(s, names)] if names else []
    problem = limactl_problem(s) if lima.lima_nodes(s.cfg) else None
    if problem and not s.dry_run:
        from homelab.core.errors import UsageError

        raise UsageError(problem)
    first = terraform_plan(s, targets, replace_ok)
    if problem:
        first.add(Note(f"the real run stops here: {problem}"))
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


def existing_vms(s: Any, nodes: list[Node]) -> list[str]:
    """The selected VMs that limactl knows now (none when limactl is not installed)."""
    from homelab.core.tools import find

    limactl = find("limactl")
    if limactl is None:
        return []
    listed = s.executor.observe(Run((limactl, "list", "--json")), check=False)
    if listed.exited != 0:  # e.g. limactl refuses root: then no VM of this user can exist either
        return []
    known = vms.parse_limactl_list(listed.stdout)
    return [n.name for n in nodes if n.name in known]


def leftovers_plan(s: Any, nodes: list[Node]) -> Plan:
    """``limactl delete`` for selected VMs that exist although Terraform's state no longer holds them.

    Terraform runs no destroy provisioner for a tainted resource (a VM whose
    create or start failed), so ``terraform destroy`` forgets such a VM but leaves it.
    """
    from homelab.core.tools import require

    plan = Plan("delete VMs Terraform left behind")
    held = terraform.outputs(s.executor, workspace(s))
    for name in existing_vms(s, nodes):
        if name not in held:
            plan.add(Run((require("limactl"), "delete", "--force", name), why="not in Terraform's state any more"))
    return plan


def destroy(s: Any, names: list[str], yes: bool) -> bool:
    """Delete the selected VMs (all when ``names`` is empty); asks unless ``yes``; True when something changed."""
    from homelab.core.tasks import confirm

    nodes = selected(s, names)
    plan = destroy_plan(s, nodes, every=not names)
    present = existing_vms(s, nodes)
    question = f"Delete VMs {', '.join(n.name for n in nodes)} and their disks?"
    if not (s.dry_run or (plan.empty and not present)) and not confirm(question, yes):
        s.executor.out("nothing deleted")
        return False
    if s.dry_run and present:
        plan.add(Note(f"then: limactl delete any of {', '.join(present)} that Terraform leaves (a failed create)"))
    s.executor.execute(plan)
    if s.dry_run:
        return False
    sweep = leftovers_plan(s, nodes)
    s.executor.execute(sweep)
    if plan.empty and sweep.empty:
        return False
    again = destroy_plan(s, nodes, every=not names).actions + leftovers_plan(s, nodes).actions
    require_empty(Plan("delete VMs", again))
    return True


def states(s: Any, limactl: str) -> dict[str, vms.VmState]:
    return vms.parse_limactl_list(s.executor.observe(Run((limactl, "list", "--json"))).stdout)


def power(s: Any, names: list[str], want: str) -> bool:
    """Start or stop the selected VMs in parallel; True when something changed."""
    from homelab.core.tools import require

    limactl = require("limactl")
    nodes = selected(s, names)
    env = accel.detect(s.cfg).env
    plan = vms.power_plan(nodes, states(s, limactl), limactl, want, env)
    s.executor.execute_concurrently(plan, key=lambda a: a.argv[-1] if isinstance(a, Run) else a.host)
    if s.dry_run or plan.empty:
        return False
    require_empty(vms.power_plan(nodes, states(s, limactl), limactl, want, env))
    return True
