"""The k3d target: a real K3S in Docker (k3d), for owners who have a Docker engine.

One server and as many agents as the config has, with Traefik and the bundled
load balancer disabled like on the reference homelab; the kubeconfig context is
merged into the project-local kubeconfig, never the user's default one.

``k3d cluster list`` and ``k3d kubeconfig get`` only read, so they run under
``--dry-run`` too; creating and deleting the cluster and writing the kubeconfig
are plan actions. What the kubeconfig gets depends on the cluster existing, so
it is planned once the cluster is there.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from homelab.core.cluster import kubeconfig_path
from homelab.core.converge import require_empty
from homelab.core.kubeconfig import merge_action, remove_action
from homelab.core.plan import Note, Plan, Run
from homelab.core.tools import require

K3S_IMAGE = "rancher/k3s:{version}"


def cluster_name(session: Any) -> str:
    return f"{session.cfg.name}-k3d"


def exists(session: Any, k3d: str) -> bool:
    listed = session.executor.observe(Run((k3d, "cluster", "list", "-o", "json")), check=False).stdout or "[]"
    return any(item.get("name") == cluster_name(session) for item in json.loads(listed))


def create_run(session: Any, k3d: str) -> Run:
    version = session.cfg.k3s.version.replace("+", "-")
    argv = (
        k3d,
        "cluster",
        "create",
        cluster_name(session),
        "--agents",
        str(len(session.cfg.agents)),
        "--image",
        K3S_IMAGE.format(version=version),
        "--k3s-arg",
        "--disable=traefik@server:0",
        "--k3s-arg",
        "--disable=servicelb@server:0",
        "--kubeconfig-update-default=false",
        "--wait",
    )
    return Run(argv, why="real K3S in Docker")


def up_plan(session: Any, k3d: str) -> Plan:
    """Create the cluster when it is missing; else merge its context into the project kubeconfig."""
    plan = Plan(f"k3d cluster {cluster_name(session)}")
    path = kubeconfig_path(session)
    if not exists(session, k3d):
        return plan.add(create_run(session, k3d), Note(f"then: merge its context into {path} once it exists"))
    text = session.executor.observe(Run((k3d, "kubeconfig", "get", cluster_name(session)))).stdout
    return plan.add(merge_action(path, yaml.safe_load(text), session.cfg.context_name()))


def ensure_up(session: Any) -> bool:
    """Converge the cluster and its kubeconfig context; True when something changed."""
    k3d = require("k3d")
    plan = up_plan(session, k3d)
    session.executor.execute(plan)
    if session.dry_run or plan.empty:
        return False
    follow = up_plan(session, k3d)  # after a create: the kubeconfig merge
    if not follow.empty:
        session.executor.execute(follow)
        follow = up_plan(session, k3d)
    require_empty(follow)
    return True


def down_plan(session: Any, k3d: str) -> Plan:
    plan = Plan(f"delete k3d cluster {cluster_name(session)}")
    if exists(session, k3d):
        plan.add(Run((k3d, "cluster", "delete", cluster_name(session)), why="remove its containers"))
    return plan.add(remove_action(kubeconfig_path(session), session.cfg.context_name()))


def tear_down(session: Any) -> bool:
    """Delete the cluster and its kubeconfig context; True when something changed."""
    k3d = require("k3d")
    plan = down_plan(session, k3d)
    session.executor.execute(plan)
    if session.dry_run or plan.empty:
        return False
    require_empty(down_plan(session, k3d))
    return True
