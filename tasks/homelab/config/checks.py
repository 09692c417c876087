"""Rules that relate several config fields, each reported at its own key path."""

from __future__ import annotations

import ipaddress
import os
import stat
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from homelab.config.schema import HomelabConfig, SecretRef
from homelab.core.errors import Problem


def semantic_problems(cfg: HomelabConfig) -> list[Problem]:
    """Every cross-field problem in ``cfg``; empty when the config is coherent."""
    return [
        *_node_problems(cfg),
        *_pool_problems(cfg),
        *_backup_problems(cfg),
        *_lm_studio_problems(cfg),
    ]


def _lm_studio_problems(cfg: HomelabConfig) -> list[Problem]:
    try:
        address = ipaddress.IPv4Address(cfg.lm_studio.host)
    except ValueError:
        return [
            Problem("lm_studio.host", f"{cfg.lm_studio.host!r} must be the host's IPv4 address on the node network")
        ]
    if address.is_loopback:
        return [
            Problem(
                "lm_studio.host",
                f"'{address}' is loopback; pods cannot reach the host there, use its node-network address",
            )
        ]
    return []


def _node_problems(cfg: HomelabConfig) -> list[Problem]:
    problems: list[Problem] = []
    subnet = ipaddress.IPv4Network(cfg.network.subnet)
    servers = [n for n in cfg.nodes if n.role == "server"]
    if cfg.target in ("lima", "k3d") and len(servers) != 1:
        problems.append(Problem("nodes", f"needs exactly one node with role server, found {len(servers)}"))
    for field in ("name", "ip"):
        counts = Counter(getattr(n, field) for n in cfg.nodes)
        for i, node in enumerate(cfg.nodes):
            value = getattr(node, field)
            if counts[value] > 1:
                problems.append(Problem(f"nodes[{i}].{field}", f"{value!r} is used by more than one node"))
    for i, node in enumerate(cfg.nodes):
        if node.provider == "lima" and ipaddress.IPv4Address(node.ip) not in subnet:
            problems.append(Problem(f"nodes[{i}].ip", f"{node.ip!r} is outside network.subnet {subnet}"))
    return problems


def _pool_problems(cfg: HomelabConfig) -> list[Problem]:
    if not cfg.metallb.enabled:
        return []
    problems: list[Problem] = []
    subnet = ipaddress.IPv4Network(cfg.network.subnet)
    start = ipaddress.IPv4Address(cfg.metallb.pool.start)
    end = ipaddress.IPv4Address(cfg.metallb.pool.end)
    for key, addr in (("start", start), ("end", end)):
        if addr not in subnet:
            problems.append(Problem(f"metallb.pool.{key}", f"'{addr}' is outside network.subnet {subnet}"))
    if start > end:
        problems.append(Problem("metallb.pool", f"start {start} is after end {end}"))
        return problems
    for i, node in enumerate(cfg.nodes):
        if start <= ipaddress.IPv4Address(node.ip) <= end:
            problems.append(Problem("metallb.pool", f"range {start}-{end} contains nodes[{i}].ip {node.ip}"))
    if cfg.ingress.enabled and not start <= ipaddress.IPv4Address(cfg.ingress.load_balancer_ip) <= end:
        problems.append(
            Problem("ingress.load_balancer_ip", f"{cfg.ingress.load_balancer_ip!r} is outside metallb.pool")
        )
    return problems


def _backup_problems(cfg: HomelabConfig) -> list[Problem]:
    repo = cfg.backup.repository
    if "://" in repo or repo.startswith(("s3:", "rest:", "sftp:")):
        return []
    path = Path(repo).expanduser()
    if not path.is_absolute():
        return [Problem("backup.repository", f"{repo!r} is relative; use an absolute path")]
    for candidate in (path, *path.parents):
        if candidate.exists():
            mode = candidate.stat().st_mode
            if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
                return [Problem("backup.repository", f"{repo!r}: {candidate} is world-writable; chmod o-w it")]
            break
    return []


def secret_refs(cfg: HomelabConfig) -> list[tuple[str, SecretRef]]:
    """Every secret reference in the config with its key path."""
    found: list[tuple[str, SecretRef]] = []

    def walk(value: object, path: str) -> None:
        if isinstance(value, SecretRef):
            found.append((path, value))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{path}.{name}" if path else name)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")

    walk(cfg, "")
    return found


def missing_secret_problems(cfg: HomelabConfig) -> list[Problem]:
    """References whose file or env var is absent (the value is never read)."""
    problems = []
    for path, ref in secret_refs(cfg):
        location = ref.location()
        if not location.exists():
            problems.append(Problem(path, f"secret reference not found: {location.describe()}"))
        elif location.file:
            file_mode = os.stat(Path(location.file).expanduser()).st_mode
            if file_mode & (stat.S_IRWXG | stat.S_IRWXO):
                problems.append(Problem(path, f"secret file {location.file} is readable by others; chmod 600 it"))
    return problems
