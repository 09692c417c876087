"""Which fields a manager owns, read from ``managedFields``, and their names in words.

The API server records, per field manager, every field that manager set, as a
``fieldsV1`` tree: ``f:key`` a map key, ``k:{...}`` a list item by its merge keys,
``v:...`` a member of a set, ``i:N`` a list index, ``.`` the node itself. What we
own now, compared with what a dry-run apply of the render would leave us owning,
names exactly the fields an apply would prune; no schema knowledge is needed,
because the server computed both trees.
"""

from __future__ import annotations

import json
from typing import Any

Fields = dict[str, Any]


def owned(obj: dict[str, Any], manager: str) -> Fields:
    """The fields ``manager`` set on ``obj`` by server-side apply (the main resource, not status)."""
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and not entry.get("subresource"):
            return dict(entry.get("fieldsV1") or {})
    return {}


def dropped(before: Fields, after: Fields, path: str = "") -> list[str]:
    """Fields in ``before`` that ``after`` lacks, each named once at the level that went.

    A list item or a plain field is named as a whole (``env[name=FOO]``,
    ``metadata.labels.tier``); a map that went entirely is opened up so that
    each field in it is named (a removed ``resources`` names ``resources.limits.cpu``).
    """
    names: list[str] = []
    for key, below in before.items():
        if key == ".":
            continue
        name = path + step(key)
        if key in after:
            names += dropped(below, after[key], name)
        elif key.startswith("f:") and any(k != "." for k in below):
            names += dropped(below, {}, name)
        else:
            names.append(name.lstrip("."))
    return names


def step(key: str) -> str:
    """One ``fieldsV1`` key as a path step: ``.name``, ``[name=app]``, ``[value]`` or ``[0]``."""
    kind, _, rest = key.partition(":")
    if kind == "f":
        return f".{rest}"
    if kind == "k":
        keys = json.loads(rest)
        return "[" + ",".join(f"{k}={_plain(v)}" for k, v in keys.items()) + "]"
    if kind == "v":
        return f"[{_plain(json.loads(rest))}]"
    return f"[{rest}]"


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
