"""Project-local kubeconfig files: merge one context in, take one out, never clobber others.

Files are written with mode 0600 because they hold client keys. The merge is
computed as text first (``merged``), so a task can plan it as a ``WriteFile``
and show it under ``--dry-run`` without writing anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from homelab.core import state_files
from homelab.core.executor import write_local
from homelab.core.plan import LOCAL, Note, Run, WriteFile
from homelab.core.secret_refs import Secret


class NotAKubeconfig(ValueError):
    """The text parses as something other than a kubeconfig's mapping of lists of named entries."""


def _document(text: str) -> dict[str, Any]:
    """The kubeconfig as a mapping whose clusters, users and contexts are lists of named entries."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise NotAKubeconfig(f"not valid YAML{f' (line {mark.line + 1})' if mark else ''}") from None
    if not isinstance(doc, dict):
        raise NotAKubeconfig("not a YAML mapping")
    for key in ("clusters", "users", "contexts"):
        entries = doc.get(key) or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "name" in e for e in entries):
            raise NotAKubeconfig(f"its {key} are not a list of named entries")
    return doc


def _read(target: Path) -> str | None:
    """The file's text (None when it does not exist), read through the state-file path."""
    text = state_files.read_text(target, state_files.KUBECONFIG)
    if text is not None:
        try:
            _document(text)
        except NotAKubeconfig as err:
            raise state_files.broken(target, state_files.KUBECONFIG, str(err)) from None
    return text


def _without(target: Path, context: str) -> str | None:
    text = _read(target)
    return without_context(text, context) if text is not None else None


def merged(current_text: str | None, source: dict[str, Any], context: str, server: str | None = None) -> str:
    """The kubeconfig text with ``source``'s first context put in as ``context``; others kept.

    ``server`` replaces the API URL (k3s writes 127.0.0.1, which only works on the node).
    The current context is kept when there is one, so merging never switches the user's kubectl.
    """
    cluster = dict(source["clusters"][0]["cluster"])
    if server:
        cluster["server"] = server
    user = source["users"][0]["user"]
    current = _document(current_text) if current_text else {}
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
    current = _read(target)
    text = merged(current, source, context, server)
    if current == text and target.stat().st_mode & 0o777 == 0o600:
        return Note(f"{target}: context {context} is current", host=LOCAL)
    return WriteFile(str(target), Secret(text, f"kubeconfig {target}"), 0o600, why=f"merge context {context}")


def merge_kubeconfig(target: Path, source: dict[str, Any], context: str, server: str | None = None) -> None:
    """Put ``source``'s first context into ``target`` as ``context``; keep all others. Mode 0600."""
    current = _read(target)
    write_local(target, merged(current, source, context, server).encode(), 0o600)


def without_context(current_text: str, context: str) -> str | None:
    """The kubeconfig text without ``context`` (and its cluster and user); None when it has no such context.

    An empty string means no context is left: the file goes.
    """
    current = _document(current_text)
    if context not in [c["name"] for c in current.get("contexts", [])]:
        return None
    for key in ("clusters", "users", "contexts"):
        current[key] = [item for item in current.get(key, []) if item["name"] != context]
    if current.get("current-context") == context:
        current["current-context"] = current["contexts"][0]["name"] if current["contexts"] else ""
    return yaml.safe_dump(current, sort_keys=False) if current["contexts"] else ""


def remove_action(target: Path, context: str) -> WriteFile | Run | Note:
    """The write that takes ``context`` out of ``target`` (removing the file when it was the last one)."""
    text = _without(target, context)
    if text is None:
        return Note(f"{target}: no context {context}", host=LOCAL)
    if not text:
        return Run(("rm", "-f", "--", str(target)), why=f"its only context was {context}")
    return WriteFile(str(target), Secret(text, f"kubeconfig {target}"), 0o600, why=f"remove context {context}")


def remove_context(target: Path, context: str) -> bool:
    """Drop ``context`` (and its cluster and user) from ``target``; others stay."""
    text = _without(target, context)
    if text is None:
        return False
    if not text:
        target.unlink()
    else:
        write_local(target, text.encode(), 0o600)
    return True
