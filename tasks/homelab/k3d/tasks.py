"""A real K3S in Docker (k3d): the `k3d` target, for machines with a Docker engine."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task

DRY_RUN = "Print the plan (the k3d command, the kubeconfig write) and change nothing."


@task(help={"dry_run": DRY_RUN})
def up(c: Any, dry_run: bool = False) -> None:
    """Create the k3d cluster (idempotent) and merge its context into the project kubeconfig."""
    from homelab.k3d import cluster as k3d

    changed = k3d.ensure_up(session(c, dry_run, target="k3d"))
    if not dry_run:
        print("k3d: cluster ready; converged" if changed else "k3d: nothing to do")


@task(help={"dry_run": DRY_RUN})
def down(c: Any, dry_run: bool = False) -> None:
    """Delete the k3d cluster and its kubeconfig context."""
    from homelab.k3d import cluster as k3d

    removed = k3d.tear_down(session(c, dry_run, target="k3d"))
    if not dry_run:
        print("k3d: cluster deleted" if removed else "k3d: nothing to do")


def layer_up(c: Any, dry_run: bool, overrides: dict[str, Any]) -> bool:
    from homelab.k3d import cluster as k3d

    return k3d.ensure_up(session(c, dry_run, **overrides))


def layer_down(c: Any, dry_run: bool, overrides: dict[str, Any]) -> None:
    from homelab.k3d import cluster as k3d

    k3d.tear_down(session(c, dry_run, **overrides))


def layer_status(c: Any, overrides: dict[str, Any]) -> tuple[bool, str]:
    from homelab.core import cluster
    from homelab.core.errors import HomelabError

    s = session(c, **overrides)
    try:
        ready = cluster.connect(s).ready_nodes()
    except HomelabError as err:
        return False, str(err)
    return bool(ready) and all(ready.values()), f"{sum(ready.values())}/{len(ready)} nodes Ready"


ns = Collection("k3d", up, down)
