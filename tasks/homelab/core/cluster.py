"""The cluster the cluster layers act on: one kubeconfig file, one explicit context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homelab.core.kube import Kube
from homelab.core.paths import resolve_in_project


def kubeconfig_path(session: Any) -> Path:
    """``kubeconfig`` from the config, else the project-local ``<state_dir>/kubeconfig``."""
    if session.cfg.kubeconfig:
        return resolve_in_project(session.cfg.kubeconfig)
    path: Path = session.state_dir / "kubeconfig"
    return path


def connect(session: Any) -> Kube:
    return Kube(kubeconfig_path(session), session.cfg.context_name())
