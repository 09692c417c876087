"""A local cluster without VMs or Docker: real control plane, simulated nodes (kwok)."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task

DRY_RUN = "Print the plan (kwokctl commands, files, node objects, controller processes, waits) and change nothing."


@task(help={"dry_run": DRY_RUN, "timeout": "Seconds to wait for the API server and the nodes."})
def up(c: Any, dry_run: bool = False, timeout: int = 180) -> None:
    """Start the sandbox cluster and its controllers (idempotent); wait until nodes are Ready and controllers serve."""
    from homelab.sandbox import cluster as sandbox
    from homelab.sandbox import controllers

    s = session(c, dry_run)
    changed = sandbox.ensure_up(s, timeout=timeout)
    changed = controllers.ensure_running(s) or changed
    if not dry_run:
        p = sandbox.paths_for(s.cfg, s.state_dir)
        state = "started; converged" if changed else "already running; nothing to do"
        print(f"sandbox {p.cluster}: {state}. Use: kubectl --kubeconfig {p.kubeconfig} --context {p.context} get nodes")


@task(help={"dry_run": DRY_RUN})
def down(c: Any, dry_run: bool = False) -> None:
    """Stop the sandbox and remove its processes, files and kubeconfig context."""
    from homelab.sandbox import cluster as sandbox

    s = session(c, dry_run)
    removed = sandbox.tear_down(s)
    if not dry_run:
        print("sandbox removed" if removed else "no sandbox; nothing to do")


def sandbox_status(c: Any) -> tuple[bool, str, dict[str, bool]]:
    from homelab.core.kube import Kube
    from homelab.sandbox import cluster as sandbox
    from homelab.sandbox import controllers

    s = session(c)
    paths = sandbox.paths_for(s.cfg, s.state_dir)
    if not (paths.cluster_dir / sandbox.CREATED_MARKER).is_file():
        return False, "not created (inv sandbox.up)", {}
    kube = Kube(paths.kubeconfig, paths.context)
    if not kube.ready(timeout=3):
        return False, "created but the API server does not answer (inv sandbox.up restarts it)", {}
    nodes = kube.ready_nodes()
    ready = sum(nodes.values())
    procs = controllers.statuses(s)
    serving = sum(p.problem is None for p in procs)
    summary = f"API ready, {ready}/{len(nodes)} nodes Ready, {serving}/{len(procs)} controller processes serving"
    return ready == len(s.cfg.nodes) and ready > 0 and serving == len(procs), summary, nodes


@task
def status(c: Any) -> None:
    """Show whether the sandbox runs, which nodes are Ready, and each controller process (pid, health)."""
    from invoke.exceptions import Exit

    from homelab.sandbox import controllers

    ok, summary, nodes = sandbox_status(c)
    print(f"sandbox: {summary}")
    for name, ready in sorted(nodes.items()):
        print(f"  {name:<20} {'Ready' if ready else 'NotReady'}")
    if nodes:
        for proc in controllers.statuses(session(c)):
            print(proc.line())
    if not ok:
        raise Exit(code=1)


def layer_up(c: Any, dry_run: bool, overrides: dict[str, Any]) -> bool:
    from homelab.sandbox import cluster as sandbox
    from homelab.sandbox import controllers

    s = session(c, dry_run, **overrides)
    changed = sandbox.ensure_up(s)
    return controllers.ensure_running(s) or changed


def layer_down(c: Any, dry_run: bool, overrides: dict[str, Any]) -> None:
    from homelab.sandbox import cluster as sandbox

    sandbox.tear_down(session(c, dry_run, **overrides))


def layer_status(c: Any, overrides: dict[str, Any]) -> tuple[bool, str]:
    ok, summary, _ = sandbox_status(c)
    return ok, summary


ns = Collection("sandbox", up, down, status)
