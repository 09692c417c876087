"""Text view of the effective config, optionally with each value's layer."""

from __future__ import annotations

from typing import Any

import yaml

from homelab.config.loader import LoadedConfig


def flatten(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Leaf values with their key paths (``nodes[0].ip``), in document order."""
    if isinstance(value, dict) and value:
        return [pair for key, item in value.items() for pair in flatten(item, f"{path}.{key}" if path else key)]
    if isinstance(value, list) and value:
        return [pair for i, item in enumerate(value) for pair in flatten(item, f"{path}[{i}]")]
    return [(path, value)]


def render(loaded: LoadedConfig, with_origins: bool = False) -> str:
    # None stays: dropping it would turn an app's "storage: null" back into the default size.
    data = loaded.config.model_dump(mode="json")
    if not with_origins:
        return yaml.safe_dump(data, sort_keys=False).rstrip()
    rows = flatten(data)
    width = max(len(path) for path, _ in rows)
    return "\n".join(f"{path:<{width}}  {value!r:<40}  [{loaded.origin(path)}]" for path, value in rows)
