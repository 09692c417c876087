"""Lima VMs on the Mac: render templates, drive their lifecycle through Terraform, power and inspect them."""

from __future__ import annotations

import json
import os
from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import confirm, session, task

DRY_RUN = "Print the plan (commands and files) and change nothing."
NAMES = "VM name; repeat for several (default: every Lima node in the config)."


def _selected(s: Any, names: list[str]) -> list[Any]:
    from homelab.vm.lima import lima_nodes

    nodes = lima_nodes(s.cfg)
    if not names:
        return nodes
    return [s.node(n) for n in names]


def _workspace(s: Any) -> Any:
    from homelab.vm.terraform import Workspace, choose_binary

    return Workspace(s.state_dir / "terraform", choose_binary(s.cfg.terraform.binary))


def _prepare(s: Any) -> tuple[Any, Any, str]:
    from homelab.core.tools import require
    from homelab.vm import lima
    from homelab.vm import plan as vms

    limactl = require("limactl")
    ws = _workspace(s)
    prep = vms.prepare_plan(s.cfg, s.state_dir, lima.read_public_key(s.cfg), ws, limactl)
    return ws, prep, limactl


@task(help={"dry_run": DRY_RUN})
def render(c: Any, dry_run: bool = False) -> None:
    """Render one Lima template per VM node into the state directory."""
    from homelab.core.plan import Plan
    from homelab.vm import lima
    from homelab.vm import plan as vms

    s = session(c, dry_run)
    writes, _ = vms.template_writes(s.state_dir, lima.render_all(s.cfg, lima.read_public_key(s.cfg)))
    s.executor.execute(Plan("render Lima templates", list(writes)))


@task
def plan(c: Any) -> None:
    """Show what Terraform would change (exit 0 either way; read-only for VMs)."""
    s = session(c)
    ws, prep, _ = _prepare(s)
    s.executor.execute(prep)
    s.executor.run(ws.init())
    result = s.executor.run(ws.plan([]), check=False)
    if result.exited == 0:
        print("VMs: no changes; every VM matches the config")
    elif result.exited == 2:
        print(result.stdout)
    else:
        from homelab.core.errors import CommandFailed

        raise CommandFailed("local", "terraform plan", result.exited, result.stderr)


def apply_vms(c: Any, names: list[str], dry_run: bool, overrides: dict[str, Any] | None = None) -> bool:
    """Converge the selected VMs through Terraform; True when something changed."""
    from homelab.core.errors import CommandFailed
    from homelab.core.executor import write_local
    from homelab.core.plan import Plan
    from homelab.vm import plan as vms

    s = session(c, dry_run, **(overrides or {}))
    targets = [n.name for n in _selected(s, names)] if names else []
    ws, prep, limactl = _prepare(s)
    if dry_run:
        s.executor.execute(prep)
        s.executor.execute(Plan("Terraform", [ws.init(), ws.apply(targets, s.cfg.terraform.parallelism)]))
        return False
    s.executor.execute(prep)
    s.executor.run(ws.init())
    planned = s.executor.run(ws.plan(targets), check=False)
    if planned.exited not in (0, 2):
        raise CommandFailed("local", "terraform plan", planned.exited, planned.stderr)
    changed: bool = planned.exited == 2
    if changed:
        s.executor.execute(Plan("create or replace VMs", [ws.apply(targets, s.cfg.terraform.parallelism)]))
    else:
        print("VMs: nothing to do; every VM matches the config")
    outputs = json.loads(s.executor.run(ws.output(), check=False).stdout or "{}")
    write_local(
        s.state_dir / "inventory.json", (json.dumps(vms.inventory(s.cfg, outputs), indent=2) + "\n").encode(), 0o644
    )
    _pin_new_host_keys(s, limactl, [n for n in _selected(s, names) if n.name in outputs])
    return changed


def _pin_new_host_keys(s: Any, limactl: str, nodes: list[Any]) -> None:
    """Record each new VM's host key, read through Lima's own channel to the VM."""
    from homelab.core.plan import Run
    from homelab.vm import plan as vms

    for node in nodes:
        endpoint = s.endpoint(node)
        if s.known_hosts.lookup(endpoint) is not None:
            continue
        argv = (limactl, "shell", node.name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
        pub = s.executor.run(Run(argv)).stdout.strip()
        s.known_hosts.record(endpoint, vms.host_key_from_pub(pub))
        print(f"  pinned host key of {node.name} ({endpoint.known_hosts_name})")


@task(help={"dry_run": DRY_RUN})
def apply(c: Any, dry_run: bool = False) -> None:
    """Create, replace or keep every VM so it matches the config (Terraform apply)."""
    apply_vms(c, [], dry_run)


@task(iterable=["name"], help={"name": NAMES, "dry_run": DRY_RUN})
def create(c: Any, name: list[str], dry_run: bool = False) -> None:
    """Create the named VMs (or all) through Terraform; existing ones are kept."""
    apply_vms(c, name, dry_run)


def _destroy(c: Any, names: list[str], yes: bool, dry_run: bool, overrides: dict[str, Any] | None = None) -> None:
    from homelab.core.plan import Plan

    s = session(c, dry_run, **(overrides or {}))
    nodes = _selected(s, names)
    ws = _workspace(s)
    destroy_plan = Plan(
        "delete VMs " + ", ".join(n.name for n in nodes), [ws.destroy([n.name for n in nodes] if names else [])]
    )
    if dry_run:
        s.executor.execute(destroy_plan)
        return
    if not confirm(f"Delete VMs {', '.join(n.name for n in nodes)} and their disks?", yes):
        print("nothing deleted")
        return
    s.executor.execute(destroy_plan)
    for node in nodes:
        s.known_hosts.forget(s.endpoint(node))


@task(iterable=["name"], help={"name": NAMES, "yes": "Do not ask for confirmation.", "dry_run": DRY_RUN})
def delete(c: Any, name: list[str], yes: bool = False, dry_run: bool = False) -> None:
    """Delete the named VMs (or all) and forget their host keys; asks unless --yes."""
    _destroy(c, name, yes, dry_run)


@task(help={"yes": "Do not ask for confirmation.", "dry_run": DRY_RUN})
def destroy(c: Any, yes: bool = False, dry_run: bool = False) -> None:
    """Terraform destroy: delete every VM; asks unless --yes."""
    _destroy(c, [], yes, dry_run)


def _power(c: Any, names: list[str], want: str, dry_run: bool) -> None:
    from homelab.core.plan import Run
    from homelab.core.tools import require
    from homelab.vm import plan as vms

    s = session(c, dry_run)
    limactl = require("limactl")
    states = vms.parse_limactl_list(s.executor.run(Run((limactl, "list", "--json"))).stdout)
    plan_ = vms.power_plan(_selected(s, names), states, limactl, want)
    s.executor.execute_concurrently(
        plan_, key=lambda action: action.argv[-1] if isinstance(action, Run) else action.host
    )


@task(iterable=["name"], help={"name": NAMES, "dry_run": DRY_RUN})
def start(c: Any, name: list[str], dry_run: bool = False) -> None:
    """Start the named VMs (or all), in parallel; running ones are left alone."""
    _power(c, name, "Running", dry_run)


@task(iterable=["name"], help={"name": NAMES, "dry_run": DRY_RUN})
def stop(c: Any, name: list[str], dry_run: bool = False) -> None:
    """Stop the named VMs (or all), in parallel; stopped ones are left alone."""
    _power(c, name, "Stopped", dry_run)


@task(aliases=["list"], help={"json": "Print JSON instead of a table."})
def status(c: Any, json: bool = False) -> None:
    """Every VM node: name, state, IP, cpus, memory."""
    import json as json_module

    from homelab.core.plan import Run
    from homelab.core.tools import find
    from homelab.vm import plan as vms

    s = session(c)
    limactl = find("limactl")
    listing = s.executor.run(Run((limactl, "list", "--json")), check=False).stdout if limactl else ""
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
    }
)
def adopt(c: Any, name: str, fingerprint: str | None = None, yes: bool = False) -> None:
    """Pin a node's SSH host key so the toolkit will talk to it."""
    from homelab.core.errors import HostKeyError
    from homelab.core.ssh import fingerprint as fingerprint_of
    from homelab.core.ssh import scan_host_key

    s = session(c)
    endpoint = s.endpoint(s.node(name))
    key = scan_host_key(endpoint)
    seen = fingerprint_of(key)
    if fingerprint and fingerprint != seen:
        raise HostKeyError(f"{name}: host key fingerprint is {seen}, not the expected {fingerprint}; nothing pinned")
    if not fingerprint and not confirm(f"{name} presents host key {seen}. Pin it?", yes):
        print("nothing pinned")
        return
    added = s.known_hosts.record(endpoint, key)
    print(f"{name}: host key {seen} " + ("pinned" if added else "already pinned; nothing to do"))


@task(help={"name": "Node name.", "yes": "Do not ask for confirmation."})
def forget(c: Any, name: str, yes: bool = False) -> None:
    """Remove a node's pinned host key (after rebuilding it); asks unless --yes."""
    s = session(c)
    endpoint = s.endpoint(s.node(name))
    if not confirm(f"Forget the pinned host key of {name}?", yes):
        return
    print(f"{name}: " + ("host key forgotten" if s.known_hosts.forget(endpoint) else "no key was pinned"))


def layer_up(c: Any, dry_run: bool, overrides: dict[str, Any]) -> bool:
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
    states = vms.parse_limactl_list(s.executor.run(Run((limactl, "list", "--json")), check=False).stdout)
    nodes = lima_nodes(s.cfg)
    running = [n.name for n in nodes if n.name in states and states[n.name].status == "Running"]
    return len(running) == len(nodes), f"{len(running)}/{len(nodes)} VMs running"


ns = Collection("vm", render, plan, apply, create, delete, destroy, start, stop, status, ip, shell, adopt, forget)
