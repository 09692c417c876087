"""Load the config from its layers and remember where each value came from.

Precedence, lowest first (the same order invoke uses for its own config):
schema defaults < ``config/homelab.yaml`` < the git-ignored
``config/homelab.local.yaml`` < ``HOMELAB__SECTION__KEY`` environment variables
< CLI flags of the task being run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from homelab.config.checks import semantic_problems
from homelab.config.schema import HomelabConfig
from homelab.config.urls import HIDDEN
from homelab.core.errors import ConfigError, Problem
from homelab.core.paths import project_root

ENV_PREFIX = "HOMELAB__"
DEFAULT_LAYER = "default"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass
class Layer:
    """One source of config values, by name."""

    name: str
    data: dict[str, Any]


@dataclass
class LoadedConfig:
    """The validated config plus the layer that set each leaf value."""

    config: HomelabConfig
    origins: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def origin(self, path: str) -> str:
        return self.origins.get(path, DEFAULT_LAYER)


def default_config_path() -> Path:
    return Path(os.environ.get("HOMELAB_CONFIG", project_root() / "config" / "homelab.yaml"))


def local_override_path(main: Path) -> Path:
    return main.with_name(main.stem + ".local" + main.suffix)


def read_yaml_file(path: Path, layer: str, required: bool = False) -> dict[str, Any]:
    """Parse one YAML layer; a syntax error or a non-mapping is a config problem.

    ``required`` is for the main file: when it holds nothing (blank, only comments)
    every value would silently be a default, so say the file is empty instead.
    """
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError([Problem(where, f"invalid YAML: {problem}")]) from None
    if data is None:
        if required:
            raise ConfigError(
                [
                    Problem(
                        str(path),
                        "the config file is empty (nothing but blank lines or comments); "
                        "start from config/homelab.yaml",
                    )
                ]
            )
        return {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(str(path), "the top level must be a mapping of sections")])
    return data


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """``HOMELAB__K3S__VERSION=v1.34.2+k3s1`` becomes ``{"k3s": {"version": ...}}``."""
    data: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = yaml.safe_load(raw) if raw else raw
    return data


def _merge(base: dict[str, Any], top: Mapping[str, Any], layer: str, path: str, origins: dict[str, str]) -> None:
    for key, value in top.items():
        key_path = f"{path}.{key}" if path else str(key)
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, layer, key_path, origins)
            continue
        base[key] = _copy(value)
        for stale in [p for p in origins if p.startswith(key_path + ".") or p.startswith(key_path + "[")]:
            del origins[stale]
        _record(value, key_path, layer, origins)


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _record(value: Any, path: str, layer: str, origins: dict[str, str]) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _record(item, f"{path}.{key}", layer, origins)
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            _record(item, f"{path}[{i}]", layer, origins)
    else:
        origins[path] = layer


def merge_layers(layers: list[Layer]) -> tuple[dict[str, Any], dict[str, str]]:
    """Deep-merge layers in order; later layers win, key by key."""
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for layer in layers:
        _merge(merged, layer.data, layer.name, "", origins)
    return merged, origins


def validate(data: dict[str, Any]) -> HomelabConfig:
    """Build the typed config; every problem is collected, then raised together."""
    try:
        cfg = HomelabConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError([_problem_from(e) for e in err.errors()]) from None
    problems = semantic_problems(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


def _problem_from(error: Mapping[str, Any]) -> Problem:
    path = ""
    for part in error["loc"]:
        if part == "[key]":  # a bad dict key: the path already ends with it
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    value = error.get("input")
    if error["type"] == HIDDEN:
        # The value may be a secret (a token in a URL, a secret pasted into a reference).
        return Problem(path or "(top level)", str(error["msg"]))
    if error["type"] == "extra_forbidden":
        return Problem(path, "unknown key (misspelled? see README's config reference)")
    if error["type"] == "missing":
        return Problem(path, "required key is missing")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in ("model_type", "model_attributes_type"):
        # A scalar where a section or secret reference belongs: never echo it,
        # it may be a secret pasted in place of its reference.
        return Problem(path, "must be a mapping (for secrets: {file: ...}, {env: ...} or {keychain: ...}), not a value")
    if "secret reference" in message or isinstance(value, (dict, list)):
        return Problem(path or "(top level)", message)
    return Problem(path or "(top level)", f"{message} (got {value!r})" if repr(value) not in message else message)


def load(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Read every layer, merge, validate; raise ``ConfigError`` listing all problems."""
    main = path or default_config_path()
    if not main.is_file():
        raise ConfigError([Problem(str(main), "config file not found (set HOMELAB_CONFIG or create it)")])
    layers = [Layer(f"file {main.name}", read_yaml_file(main, main.name, required=True))]
    files = [main]
    local = local_override_path(main)
    if local.is_file():
        layers.append(Layer(f"local {local.name}", read_yaml_file(local, local.name)))
        files.append(local)
    layers.append(Layer("env", env_layer(os.environ if environ is None else environ)))
    if overrides:
        layers.append(Layer("cli", dict(overrides)))
    merged, origins = merge_layers(layers)
    return LoadedConfig(validate(merged), origins, files)
