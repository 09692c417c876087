"""Lima VMs on the Mac: render templates, drive their lifecycle through Terraform, power and inspect them."""

from __future__ import annotations

import os
from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import confirm, session, task

DRY_RUN = "Print the plan (commands and files) and change nothing."
NAMES = "VM name; repeat for several (default: every Lima node in the config)."


@task(help={"dry_run": DRY_RUN})
def render(c: Any, dry_run: bool = False) -> None:
    """Render one Lima template per VM node into the state directory."""
    from homelab.core.converge import converge
    from homelab.core.plan import Plan
    from homelab.vm import lima
    from homelab.vm import plan as vms

    s = session(c, dry_run)

    def build() -> Plan:
        writes, _ = vms.template_writes(s.state_dir, lima.render_all(s.cfg, lima.read_public_key(s.cfg)))
        return Plan("render Lima templates", list(writes))

    converge(s.executor, build)


@task
def plan(c: Any) -> None:
    """Show what Terraform would change (exit 0 either way; planned in a scratch copy, nothing is written)."""
    from homelab.core.plan import WriteFile
    from homelab.vm import run, terraform

    s = session(c)
    ws = run.workspace(s)
    inputs = run.inputs_plan(s, ws)
    if not inputs.empty:
        print("\n".join(inputs.lines()))
    writes = [a for a in inputs.actions if isinstance(a, WriteFile)]
    planned = terraform.scratch_plan(s.executor, ws, writes, [])
    print(planned.report if planned.changes else "VMs: no changes; every VM matches the config")


def apply_vms(
    c: Any, names: list[str], dry_run: bool, overrides: dict[str, Any] | None = None, yes: bool = False
) -> bool:
    """Converge the selected VMs through Terraform; True when something changed."""
    from homelab.host import sizing
    from homelab.vm import run

    s = session(c, dry_run, **(overrides or {}))
    print(f"  {sizing.check(s.cfg)}")  # refuses nodes this host cannot hold, before Terraform (exit 2)
    changed = run.apply(s, names, replace_ok=yes)
    if not dry_run:
        print("vm: converged" if changed else "VMs: nothing to do; every VM matches the config")
    return changed


@task(
    help={
        "dry_run": DRY_RUN,
        "yes": "Accept deleting and re-creating VMs whose image, arch, network or provisioning changed (their "
        "disks are lost).",
    }
)
def apply(c: Any, dry_run: bool = False, yes: bool = False) -> None:
    """Create, resize in place (cpus, memory, disk growth) or keep every VM so it matches the config.

    A change only a new VM can make is refused unless --yes, naming what each VM would lose.
    """
    apply_vms(c, [], dry_run, yes=yes)


@task(iterable=["name"], help={"name": NAMES, "dry_run": DRY_RUN})
def create(c: Any, name: list[str], dry_run: bool = False) -> None:
    """Create the named VMs (or all) through Terraform; existing ones are kept."""
    apply_vms(c, name, dry_run)


def _destroy(c: Any, names: list[str], yes: bool, dry_run: bool, overrides: dict[str, Any] | None = None) -> None:
    from homelab.vm import run

    run.destroy(session(c, dry_run, **(overrides or {})), names, yes)


@task(iterable=["name"], help={"name": NAMES, "yes": "Do not ask for confirmation.", "dry_run": DRY_RUN})
def delete(c: Any, name: list[str], yes: bool = False, dry_run: bool = False) -> None:
    """Delete the named VMs (or all) and forget their host keys; asks unless --yes."""
    _destroy(c, name, yes, dry_run)


@task(help={"yes": "Do not ask for confirmation.", "dry_run": DRY_RUN})
def destroy(c: Any, yes: bool = False, dry_run: bool = False) -> None:
    """Terraform destroy: delete every VM; asks unless --yes."""
    _destroy(c, [], yes, dry_run)


@task(iterable=["name"], help={"name": NAMES, "dry_run": DRY_RUN})
def start(c: Any, name: list[str], dry_run: bool = False) -> None:
    """Start the named VMs (or all), in parallel; running ones are left alone."""
    from homelab.vm import run

    run.power(session(c, dry_run), name, "Running")


@task(iterable=["name"], help={"name": NAMES, "dry_run": DRY_RUN})
def stop(c: Any, name: list[str], dry_run: bool = False) -> None:
    """Stop the named VMs (or all), in parallel; stopped ones are left alone."""
    from homelab.vm import run

    run.power(session(c, dry_run), name, "Stopped")


@task(aliases=["list"], help={"json": 'Print JSON: [{"name", "state", "ip", "cpus", "memory", "role", "provider"}].'})
def status(c: Any, json: bool = False) -> None:
    """Every VM node: name, state, IP, cpus, memory."""
    import json as json_module

    from homelab.core.plan import Run
    from homelab.core.tools import find
    from homelab.vm import plan as vms

    s = session(c)
    limactl = find("limactl")
    listing = s.executor.observe(Run((limactl, "list", "--json")), check=False).stdout if limactl else ""
    states = vms.parse_limactl_list(listing)
    rows = [
        {
            "name": n.name,
            "state": states[n.name].status if n.name in states else "absent",
            "ip": n.ip,
            "cpus": n.cpus,
            "memory": n.memory,
            "role": n.role,
            "provider": n.provider,
        }
        for n in s.cfg.nodes
    ]
    if json:
        print(json_module.dumps(rows, indent=2))
        return
    print(f"{'NAME':<16} {'STATE':<9} {'IP':<16} {'CPUS':>4} {'MEMORY':>7} ROLE")
    for r in rows:
        print(f"{r['name']:<16} {r['state']:<9} {r['ip']:<16} {r['cpus']:>4} {r['memory']:>7} {r['role']}")


@task(help={"name": "Node name."})
def ip(c: Any, name: str) -> None:
    """Print a node's IP address."""
    print(session(c).node(name).ip)


@task(help={"name": "Node name."})
def shell(c: Any, name: str) -> None:
    """Open an interactive shell on a node (limactl shell, or ssh with the pinned key)."""
    from homelab.core.tools import require

    s = session(c)
    node = s.node(name)
    if node.provider == "lima":
        limactl = require("limactl")
        os.execv(limactl, [limactl, "shell", node.name])
    ep = s.endpoint(node)
    ssh = require("ssh")
    os.execv(
        ssh,
        [
            ssh,
            "-o",
            f"UserKnownHostsFile={s.known_hosts.path}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-i",
            os.path.expanduser(ep.key_file),
            "-p",
            str(ep.port),
            f"{ep.user}@{ep.host}",
        ],
    )


@task(
    help={
        "name": "Node name (an existing host, provider: ssh, or a VM).",
        "fingerprint": "Expected SHA256:... host key fingerprint, read on the node itself with ssh-keygen -lf.",
        "yes": "Pin the key shown without asking (only when you verified it another way).",
        "dry_run": "Print the key the node presents and the known_hosts write; pin nothing.",
    }
)
def adopt(c: Any, name: str, fingerprint: str | None = None, yes: bool = False, dry_run: bool = False) -> None:
    """Pin a node's SSH host key so the toolkit will talk to it."""
    from homelab.core.converge import require_empty
    from homelab.core.errors import HostKeyError
    from homelab.core.plan import Note, Plan, WriteFile
    from homelab.core.ssh import fingerprint as fingerprint_of
    from homelab.core.ssh import scan_host_key

    s = session(c, dry_run)
    endpoint = s.endpoint(s.node(name))
    key = scan_host_key(endpoint)
    seen = fingerprint_of(key)
    if fingerprint and fingerprint != seen:
        raise HostKeyError(f"{name}: host key fingerprint is {seen}, not the expected {fingerprint}; nothing pinned")

    def build() -> Plan:
        plan = Plan(f"pin the host key of {name}", [Note(f"{name} ({endpoint.known_hosts_name}) presents {seen}")])
        text = s.known_hosts.with_keys([(endpoint, key)])
        if text is not None:
            plan.add(WriteFile(str(s.known_hosts.path), text, 0o600, why=f"pin {seen}"))
        return plan

    pin = build()
    if not (dry_run or pin.empty or fingerprint) and not confirm(f"{name} presents host key {seen}. Pin it?", yes):
        print("nothing pinned")
        return
    s.executor.execute(pin)
    if dry_run:
        return
    if not pin.empty:
        require_empty(build())
    print(f"{name}: host key {seen} " + ("pinned" if not pin.empty else "already pinned; nothing to do"))


@task(
    help={
        "name": "Node name.",
        "yes": "Do not ask for confirmation.",
        "dry_run": "Print the known_hosts write; forget nothing.",
    }
)
def forget(c: Any, name: str, yes: bool = False, dry_run: bool = False) -> None:
    """Remove a node's pinned host key (after rebuilding it); asks unless --yes."""
    from homelab.core.converge import require_empty
    from homelab.core.plan import Plan, WriteFile

    s = session(c, dry_run)
    endpoint = s.endpoint(s.node(name))

    def build() -> Plan:
        text = s.known_hosts.without([endpoint])
        writes = [WriteFile(str(s.known_hosts.path), text, 0o600, why="forget the key")] if text is not None else []
        return Plan(f"forget the host key of {name} ({endpoint.known_hosts_name})", list(writes))

    plan_ = build()
    if not (dry_run or plan_.empty) and not confirm(f"Forget the pinned host key of {name}?", yes):
        return
    s.executor.execute(plan_)
    if dry_run:
        return
    if not plan_.empty:
        require_empty(build())
    print(f"{name}: " + ("host key forgotten" if not plan_.empty else "no key was pinned"))


def layer_up(c: Any, dry_run: bool, overrides: dict[str, Any]) -> bool:
    if dry_run:
        from homelab.core.plan import Note, Plan
        from homelab.host import tasks as host_tasks

        s = session(c, dry_run, **overrides)
        cfg = s.cfg
        plan = Plan(f"the nodes: Lima VMs ({cfg.lima.vm_type}, {cfg.lima.arch}) on {cfg.network.subnet}")
        for node in cfg.nodes:
            what = f"{node.cpus} CPUs, {node.memory} memory, {node.disk} disk"
            plan.add(Note(f"{node.name} ({node.role}) at {node.ip}: {what}; K3S {cfg.k3s.version}"))
        plan.add(Note(host_tasks.autostart_said(cfg)))  # whether the VMs come back by themselves (homelab.host)
        s.executor.execute(plan)
    return apply_vms(c, [], dry_run, overrides)


def layer_down(c: Any, dry_run: bool, overrides: dict[str, Any]) -> None:
    _destroy(c, [], True, dry_run, overrides)


def layer_status(c: Any, overrides: dict[str, Any]) -> tuple[bool, str]:
    from homelab.core.plan import Run
    from homelab.core.tools import find
    from homelab.vm import plan as vms
    from homelab.vm.lima import lima_nodes

    s = session(c, **overrides)
    limactl = find("limactl")
    if limactl is None:
        return False, "limactl not installed"
    states = vms.parse_limactl_list(s.executor.observe(Run((limactl, "list", "--json")), check=False).stdout)
    nodes = lima_nodes(s.cfg)
    running = [n.name for n in nodes if n.name in states and states[n.name].status == "Running"]
    return len(running) == len(nodes), f"{len(running)}/{len(nodes)} VMs running"


ns = Collection("vm", render, plan, apply, create, delete, destroy, start, stop, status, ip, shell, adopt, forget)
