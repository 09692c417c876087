"""The config's JSON Schema, exported from the pydantic model for editors.

YAML language servers (VS Code's YAML extension, yaml-language-server in Neovim,
JetBrains) read the first line of ``config/homelab.yaml``,
``# yaml-language-server: $schema=homelab.schema.json``, and then complete keys, show
each section's docstring and underline an unknown key as you type. The committed
``config/homelab.schema.json`` is ``inv config.schema``'s output; a unit test fails when
it no longer matches the model. The model stays the only authority: what the schema
cannot say (cross-field rules, an app's image contract) ``inv config.validate`` checks.
"""

from __future__ import annotations

import json
from typing import Any

SCHEMA_FILE = "config/homelab.schema.json"
# pydantic keeps an Annotated integer's bounds under their Python names when a validator wraps the type.
STANDARD = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}
# Keys whose values are maps of names (properties, definitions), not schema keywords.
NAMED = {"properties", "$defs", "patternProperties"}


def json_schema() -> dict[str, Any]:
    """The schema of one config file (every key optional at the top: files are layers)."""
    from homelab.config.schema import HomelabConfig

    schema = _standard(HomelabConfig.model_json_schema(mode="validation"))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def text() -> str:
    """The schema as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _standard(node: Any) -> Any:
    if isinstance(node, list):
        return [_standard(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    key: str
    for key, value in node.items():
        if key in NAMED and isinstance(value, dict):
            out[key] = {name: _standard(sub) for name, sub in value.items()}
        else:
            out[STANDARD.get(key) or key] = _standard(value)
    return out
