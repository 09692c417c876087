"""Text view of the effective config, optionally with each value's layer.

Secrets are references in the config, so showing them reveals nothing; a few
plain values are credentials themselves (a dead-man's-switch URL, whose path
lets anyone report for the job; URLs with passwords are refused outright).
Those are masked here, as the logs mask them, so the output can be pasted into
an issue.
"""

from __future__ import annotations

import typing
from typing import Any

import yaml
from pydantic import BaseModel

from homelab.config.loader import LoadedConfig
from homelab.config.urls import CREDENTIAL_PATH, host_only


def flatten(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Leaf values with their key paths (``nodes[0].ip``), in document order."""
    if isinstance(value, dict) and value:
        return [pair for key, item in value.items() for pair in flatten(item, f"{path}.{key}" if path else key)]
    if isinstance(value, list) and value:
        return [pair for i, item in enumerate(value) for pair in flatten(item, f"{path}[{i}]")]
    return [(path, value)]


def _marked(annotation: Any) -> bool:
    """Whether a field's type (through ``X | None`` and ``Annotated``) carries the credential-path marker."""
    if any(meta is CREDENTIAL_PATH for meta in getattr(annotation, "__metadata__", ())):
        return True
    return any(_marked(arg) for arg in typing.get_args(annotation))


def credential_paths(model: BaseModel, path: str = "") -> set[str]:
    """Key paths (as ``flatten`` names them) of every field whose whole path is a credential."""
    found: set[str] = set()
    for name, field in type(model).model_fields.items():
        here = f"{path}.{name}" if path else name
        value = getattr(model, name)
        if _marked(field.annotation) or any(meta is CREDENTIAL_PATH for meta in field.metadata):
            found.add(here)
        if isinstance(value, BaseModel):
            found |= credential_paths(value, here)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    found |= credential_paths(item, f"{here}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found |= credential_paths(item, f"{here}[{i}]")
    return found


def masked(value: Any, path: str, whole: set[str]) -> Any:
    """``value`` with the strings at credential paths cut to their host."""
    if isinstance(value, dict):
        return {key: masked(item, f"{path}.{key}" if path else key, whole) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item, f"{path}[{i}]", whole) for i, item in enumerate(value)]
    if isinstance(value, str) and path in whole:
        return host_only(value)
    return value


def render(loaded: LoadedConfig, with_origins: bool = False) -> str:
    # None stays: dropping it would turn an app's "storage: null" back into the default size.
    data = masked(loaded.config.model_dump(mode="json"), "", credential_paths(loaded.config))
    if not with_origins:
        return yaml.safe_dump(data, sort_keys=False).rstrip()
    rows = flatten(data)
    width = max(len(path) for path, _ in rows)
    return "\n".join(f"{path:<{width}}  {value!r:<40}  [{loaded.origin(path)}]" for path, value in rows)
