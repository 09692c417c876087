"""The k3d target: a real K3S in Docker (k3d), for owners who have a Docker engine.

One server and as many agents as the config has, with Traefik and the bundled
load balancer disabled like on the reference homelab; the kubeconfig context is
merged into the project-local kubeconfig, never the user's default one.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from homelab.core.kubeconfig import merge_kubeconfig, remove_context
from homelab.core.plan import Plan, Run
from homelab.core.tools import require

K3S_IMAGE = "rancher/k3s:{version}"


def cluster_name(session: Any) -> str:
    return f"{session.cfg.name}-k3d"


def exists(session: Any, k3d: str) -> bool:
    listed = session.executor.run(Run((k3d, "cluster", "list", "-o", "json")), check=False).stdout or "[]"
    return any(item.get("name") == cluster_name(session) for item in json.loads(listed))


def create_plan(session: Any, k3d: str) -> Plan:
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
    return Plan(f"k3d cluster {cluster_name(session)}", [Run(argv, why="real K3S in Docker")])


def ensure_up(session: Any) -> bool:
    k3d = require("k3d")
    changed = False
    if not exists(session, k3d):
        plan = create_plan(session, k3d)
        session.executor.execute(plan)
        changed = not session.dry_run
    if session.dry_run:
        return False
    text = session.executor.run(Run((k3d, "kubeconfig", "get", cluster_name(session)))).stdout
    from homelab.core.cluster import kubeconfig_path

    path = kubeconfig_path(session)
    before = path.read_bytes() if path.is_file() else b""
    merge_kubeconfig(path, yaml.safe_load(text), session.cfg.context_name())
    return changed or path.read_bytes() != before


def tear_down(session: Any) -> bool:
    from homelab.core.cluster import kubeconfig_path

    k3d = require("k3d")
    if not exists(session, k3d):
        return remove_context(kubeconfig_path(session), session.cfg.context_name())
    session.executor.execute(Plan("delete k3d cluster", [Run((k3d, "cluster", "delete", cluster_name(session)))]))
    if not session.dry_run:
        remove_context(kubeconfig_path(session), session.cfg.context_name())
    return True
