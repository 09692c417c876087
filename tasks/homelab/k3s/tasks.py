"""K3S on the nodes over SSH: preflight, install and join, upgrade, kubeconfig, snapshots."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import confirm, session, task

DRY_RUN = "Print the plan (commands and files; the token appears only as <redacted>) and change nothing."


@task
def preflight(c: Any) -> None:
    """Check every node (SSH, host key, sudo, hostname, cgroups, ports, disk, sqlite3); change nothing."""
    from homelab.k3s import preflight as checks

    s = session(c)
    with s:
        facts = checks.check(s)
    for name, fact in facts.items():
        tools = "" if fact.has_sqlite3 else "; sqlite3 missing: k3s.install installs it with apt-get"
        print(f"{name}: ok (hostname {fact.hostname}, {fact.disk_kib // 1024 // 1024} GiB free{tools})")


@task(help={"dry_run": DRY_RUN})
def install(c: Any, dry_run: bool = False) -> None:
    """Install K3S: server first, then agents in parallel; re-runs change only what differs."""
    from homelab.k3s import run as k3s_run

    with session(c, dry_run) as s:
        changed = k3s_run.install(s)
    if not dry_run:
        print("k3s: converged" if changed else "k3s: nothing to do")


@task(
    help={
        "dry_run": DRY_RUN,
        "allow_downtime": "Lift PDBs labelled homelab.dev/single-replica-pdb=true (guards you add yourself; "
        "the homelab renders none) during each node's drain (short outage).",
        "yes": "Go to a k3s.version more than one minor ahead of a node in steps, one rolling upgrade per minor "
        "(through versions.toml [k3s.upgrade_path]); without it that upgrade is refused, naming the steps.",
    }
)
def upgrade(c: Any, dry_run: bool = False, allow_downtime: bool = False, yes: bool = False) -> None:
    """Rolling upgrade to k3s.version, one minor at a time: server first; cordon, drain, upgrade, uncordon."""
    from homelab.k3s import run as k3s_run

    with session(c, dry_run) as s:
        changed = k3s_run.upgrade(s, allow_downtime, walk=yes)
        if changed:
            print(f"k3s: every node runs {s.cfg.k3s.version}; converged")


@task(
    help={
        "path": "Kubeconfig file to merge into (default: <state_dir>/kubeconfig); other contexts are kept.",
        "dry_run": "Print the plan (the file it would write, 0600; its keys never shown) and change nothing.",
    }
)
def kubeconfig(c: Any, path: str | None = None, dry_run: bool = False) -> None:
    """Fetch the server's kubeconfig, point it at the server, merge it as the homelab's context (0600)."""
    from pathlib import Path

    from homelab.k3s import run as k3s_run

    with session(c, dry_run) as s:
        s.executor.execute(k3s_run.kubeconfig_plan(s, Path(path).expanduser() if path else None))


@task
def status(c: Any) -> None:
    """Every node: installed K3S version and readiness in the cluster."""
    from invoke.exceptions import Exit

    from homelab.core import cluster
    from homelab.core.errors import HomelabError
    from homelab.k3s import run as k3s_run

    with session(c) as s:
        observed = k3s_run.observe(s)
        try:
            ready = cluster.connect(s).ready_nodes()
        except HomelabError as err:
            ready, note = {}, f" (cluster not reachable: {err})"
        else:
            note = ""
        healthy = True
        for node in s.cfg.nodes:
            have = observed[node.name]
            state = "Ready" if ready.get(node.name) else "NotReady"
            healthy = healthy and have.version == s.cfg.k3s.version and ready.get(node.name, False)
            print(f"{node.name:<16} {node.role:<7} {have.version or 'not installed':<16} {state}")
        if note:
            print(note.strip())
    if not healthy:
        raise Exit(code=1)


@task(help={"yes": "Do not ask for confirmation.", "dry_run": DRY_RUN})
def uninstall(c: Any, yes: bool = False, dry_run: bool = False) -> None:
    """Remove K3S from every node, agents first; asks unless --yes."""
    from homelab.k3s import run as k3s_run

    with session(c, dry_run) as s:
        plans = k3s_run.uninstall_plans(s)
        work = not all(p.empty for p in plans)
        if (
            work
            and not dry_run
            and not confirm("Uninstall K3S from every node (cluster data on the nodes is lost)?", yes)
        ):
            print("nothing removed")
            return
        k3s_run.uninstall(s, plans)


@task(help={"dry_run": DRY_RUN})
def snapshot(c: Any, dry_run: bool = False) -> None:
    """Snapshot the datastore with the token: etcd-snapshot for etcd, SQLite online backup for SQLite."""
    from homelab.k3s import snapshot as k3s_snapshot

    with session(c, dry_run) as s:
        where = k3s_snapshot.take(s)
    if where:
        print(f"snapshot saved in {where}")


def layer_up(c: Any, dry_run: bool, overrides: dict[str, Any]) -> bool:
    from homelab.k3s import run as k3s_run

    with session(c, dry_run, **overrides) as s:
        return k3s_run.install(s)


def layer_down(c: Any, dry_run: bool, overrides: dict[str, Any]) -> None:
    from homelab.k3s import run as k3s_run

    with session(c, dry_run, **overrides) as s:
        k3s_run.uninstall(s)


def layer_status(c: Any, overrides: dict[str, Any]) -> tuple[bool, str]:
    from homelab.core.errors import HomelabError
    from homelab.k3s import run as k3s_run

    with session(c, **overrides) as s:
        try:
            observed = k3s_run.observe(s)
        except HomelabError as err:
            return False, str(err)
        current = [n for n, o in observed.items() if o.version == s.cfg.k3s.version]
        return len(current) == len(observed), f"{len(current)}/{len(observed)} nodes on {s.cfg.k3s.version}"


ns = Collection("k3s", preflight, install, upgrade, kubeconfig, status, uninstall, snapshot)
