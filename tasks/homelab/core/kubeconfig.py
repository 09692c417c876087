"""Project-local kubeconfig files: merge one context in, take one out, never clobber others.

Files are written with mode 0600 because they hold client keys. The merge is
computed as text first (``merged``), so a task can plan it as a ``WriteFile``
and show it under ``--dry-run`` without writing anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from homelab.core.executor import write_local
from homelab.core.plan import LOCAL, Note, Run, WriteFile
from homelab.core.secret_refs import Secret


def merged(current_text: str | None, source: dict[str, Any], context: str, server: str | None = None) -> str:
    """The kubeconfig text with ``source``'s first context put in as ``context``; others kept.

    ``server`` replaces the API URL (k3s writes 127.0.0.1, which only works on the node).
    The current context is kept when there is one, so merging never switches the user's kubectl.
    """
    cluster = dict(source["clusters"][0]["cluster"])
    if server:
        cluster["server"] = server
    user = source["users"][0]["user"]
    current: dict[str, Any] = (yaml.safe_load(current_text) or {}) if current_text else {}
    doc = {
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
    return yaml.safe_dump(doc, sort_keys=False)


def merge_action(target: Path, source: dict[str, Any], context: str, server: str | None = None) -> WriteFile | Note:
    """The write that merges ``source`` into ``target`` (0600), or a note when it already holds it.

    Reads ``target`` (an observation); the written text is a ``Secret`` because it
    carries client keys, so a plan shows only its size.
    """
    current = target.read_text() if target.is_file() else None
    text = merged(current, source, context, server)
    if current == text and target.stat().st_mode & 0o777 == 0o600:
        return Note(f"{target}: context {context} is current", host=LOCAL)
    return WriteFile(str(target), Secret(text, f"kubeconfig {target}"), 0o600, why=f"merge context {context}")


def merge_kubeconfig(target: Path, source: dict[str, Any], context: str, server: str | None = None) -> None:
    """Put ``source``'s first context into ``target`` as ``context``; keep all others. Mode 0600."""
    current = target.read_text() if target.is_file() else None
    write_local(target, merged(current, source, context, server).encode(), 0o600)


def without_context(current_text: str, context: str) -> str | None:
    """The kubeconfig text without ``context`` (and its cluster and user); None when it has no such context.

    An empty string means no context is left: the file goes.
    """
    current = yaml.safe_load(current_text) or {}
    if context not in [c["name"] for c in current.get("contexts", [])]:
        return None
    for key in ("clusters", "users", "contexts"):
        current[key] = [item for item in current.get(key, []) if item["name"] != context]
    if current.get("current-context") == context:
        current["current-context"] = current["contexts"][0]["name"] if current["contexts"] else ""
    return yaml.safe_dump(current, sort_keys=False) if current["contexts"] else ""


def remove_action(target: Path, context: str) -> WriteFile | Run | Note:
    """The write that takes ``context`` out of ``target`` (removing the file when it was the last one)."""
    text = without_context(target.read_text(), context) if target.is_file() else None
    if text is None:
        return Note(f"{target}: no context {context}", host=LOCAL)
    if not text:
        return Run(("rm", "-f", "--", str(target)), why=f"its only context was {context}")
    return WriteFile(str(target), Secret(text, f"kubeconfig {target}"), 0o600, why=f"remove context {context}")


def remove_context(target: Path, context: str) -> bool:
    """Drop ``context`` (and its cluster and user) from ``target``; others stay."""
    text = without_context(target.read_text(), context) if target.is_file() else None
    if text is None:
        return False
    if not text:
        target.unlink()
    else:
        write_local(target, text.encode(), 0o600)
    return True
