"""Project-local kubeconfig files: merge one context in, take one out, never clobber others.

Files are written with mode 0600 because they hold client keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from homelab.core.executor import write_local


def merge_kubeconfig(target: Path, source: dict[str, Any], context: str, server: str | None = None) -> None:
    """Put ``source``'s first context into ``target`` as ``context``; keep all others. Mode 0600.

    ``server`` replaces the API URL (k3s writes 127.0.0.1, which only works on the node).
    """
    cluster = dict(source["clusters"][0]["cluster"])
    if server:
        cluster["server"] = server
    user = source["users"][0]["user"]
    current: dict[str, Any] = {}
    if target.is_file():
        current = yaml.safe_load(target.read_text()) or {}
    merged = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": current.get("preferences", {}),
        "current-context": current.get("current-context") or context,
        "clusters": [c for c in current.get("clusters", []) if c["name"] != context]
        + [{"name": context, "cluster": cluster}],
        "users": [u for u in current.get("users", []) if u["name"] != context] + [{"name": context, "user": user}],
        "contexts": [c for c in current.get("contexts", []) if c["name"] != context]
        + [{"name": context, "context": {"cluster": context, "user": context}}],
    }
    write_local(target, yaml.safe_dump(merged, sort_keys=False).encode(), 0o600)


def remove_context(target: Path, context: str) -> bool:
    """Drop ``context`` (and its cluster and user) from ``target``; others stay."""
    if not target.is_file():
        return False
    current = yaml.safe_load(target.read_text()) or {}
    names = [c["name"] for c in current.get("contexts", [])]
    if context not in names:
        return False
    for key in ("clusters", "users", "contexts"):
        current[key] = [item for item in current.get(key, []) if item["name"] != context]
    if current.get("current-context") == context:
        current["current-context"] = current["contexts"][0]["name"] if current["contexts"] else ""
    if not current["contexts"]:
        target.unlink()
        return True
    write_local(target, yaml.safe_dump(current, sort_keys=False).encode(), 0o600)
    return True
