"""The cluster the cluster layers act on: one kubeconfig file, one explicit context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homelab.core.kube import Kube, unreachable
from homelab.core.paths import resolve_in_project


def kubeconfig_path(session: Any) -> Path:
    """``kubeconfig`` from the config, else the project-local ``<state_dir>/kubeconfig``."""
    if session.cfg.kubeconfig:
        return resolve_in_project(session.cfg.kubeconfig)
    path: Path = session.state_dir / "kubeconfig"
    return path


def connect(session: Any) -> Kube:
    path, context = kubeconfig_path(session), session.cfg.context_name()
    unreachable.START_HINT = start_hint(session.cfg.target, path, context)
    return Kube(path, context)


def start_hint(target: str, kubeconfig: Path, context: str) -> str:
    """What brings this target's API server back: the fix an unreachable cluster's message names."""
    if target == "sandbox":
        return "start the sandbox with inv sandbox.up (or inv up --target sandbox)"
    if target == "k3d":
        return "start the k3d cluster with inv k3d.up (is Docker running?)"
    if target == "lima":
        return "start the VMs and K3S with inv up --target lima (inv vm.status shows the VMs)"
    return f"check that the cluster of context {context!r} in {kubeconfig} is running and reachable"
