"""Load the config from its layers and remember where each value came from.

Precedence, lowest first (the same order invoke uses for its own config):
schema defaults < ``config/homelab.yaml`` < the git-ignored
``config/homelab.local.yaml`` < ``HOMELAB__SECTION__KEY`` environment variables
< CLI flags of the task being run.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from homelab.config.checks import exposure, semantic_problems
from homelab.config.schema import HomelabConfig
from homelab.config.urls import HIDDEN, shown
from homelab.core import reading
from homelab.core.errors import ConfigError, Problem
from homelab.core.paths import project_root

ENV_PREFIX = "HOMELAB__"
DEFAULT_LAYER = "default"


MAX_FILE_BYTES = 1024 * 1024
MAX_ALIASED_NODES = 10_000
MAX_DEPTH = 100
MERGE_TAG = "tag:yaml.org,2002:merge"
# The core schema's tags, plus the ones PyYAML's resolver gives plain values (dates, '<<').
ALLOWED_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str", "seq", "map", "merge", "timestamp")
)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that checks the composed document before building any value.

    Refused, with the line: tags outside the core schema, keys that are not plain
    values, duplicate keys (a key merged in with ``<<`` and set again is an override,
    not a duplicate), recursive aliases, nesting past ``MAX_DEPTH``, and aliases
    that expand to more than ``MAX_ALIASED_NODES`` values ("billion laughs").
    """

    def get_single_data(self) -> Any:
        try:
            node = self.get_single_node()
        except RecursionError:
            raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep") from None
        if node is None:
            return None
        _check_tree(self, node)
        return self.construct_document(node)

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Resolve ``<<`` as the merge-key spec says (PyYAML loses overrides made in a merged mapping).

        Keys set in the mapping itself win over merged ones; in ``<<: [*a, *b]`` a key
        from ``a`` wins over the same key from ``b``. Pairs are ordered so the later wins.
        """
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != MERGE_TAG:
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in reversed(sources):
                if not isinstance(source, yaml.MappingNode):
                    raise _Refused(
                        "'<<' merges mappings: give it an alias of a mapping, or a list of them", source.start_mark
                    )
                self.flatten_mapping(source)
                merged.extend(source.value)
        node.value = merged + own


class _Refused(yaml.MarkedYAMLError):
    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_tree(loader: _BoundedLoader, root: yaml.Node) -> None:
    """One pass over the node graph (aliases are shared nodes), without expanding it."""
    sizes: dict[int, int] = {}  # node id -> values it stands for once expanded
    ancestors: set[int] = set()
    aliased = 0
    stack: list[tuple[yaml.Node, int, bool, yaml.Mark]] = [(root, 0, False, root.start_mark)]
    while stack:
        node, depth, finished, parent_mark = stack.pop()
        if finished:
            ancestors.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in _children(node))
            continue
        if id(node) in sizes:  # seen before: an alias, expanded once more
            aliased += sizes[id(node)]
            if aliased > MAX_ALIASED_NODES:
                raise _Refused(
                    f"aliases expand to more than {MAX_ALIASED_NODES} values (a 'billion laughs' file?); "
                    "write the values out or use fewer aliases",
                    parent_mark,
                )
            continue
        if id(node) in ancestors:
            raise _Refused("an alias refers to a collection that contains it (recursive aliases)", node.start_mark)
        if node.tag not in ALLOWED_TAGS:
            raise _Refused(f"tag {node.tag!r} is not allowed (plain values, lists and mappings only)", node.start_mark)
        if depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            _check_keys(loader, node)
        ancestors.add(id(node))
        stack.append((node, depth, True, parent_mark))
        stack.extend((child, depth + 1, False, node.start_mark) for child in reversed(_children(node)))


def _check_keys(loader: _BoundedLoader, node: yaml.MappingNode) -> None:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            raise _Refused("a key must be a plain value, not a list or mapping", key_node.start_mark)
        if key_node.tag not in ALLOWED_TAGS:
            raise _Refused(f"tag {key_node.tag!r} is not allowed", key_node.start_mark)
        key = loader.construct_object(key_node)
        if key in seen:
            raise _Refused(f"duplicate key {shown(key)}", key_node.start_mark)
        seen.add(key)


def parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed by the bounded loader; a problem is a ``ConfigError`` at ``where`` (and its line)."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError([Problem(at, f"invalid YAML: {problem}")]) from None


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


def writable_by_others(path: Path) -> str | None:
    """Why another local user could change this config file, or None.

    The config names what ``inv up`` applies and the commands the scheduled backup
    runs, so it is held to the rule of the repository and state directory.
    """
    if path.stat().st_mode & stat.S_IWOTH:
        return f"the config file is world-writable: anyone here could change what runs; chmod o-w {path}"
    if why := exposure(path.resolve()):
        return f"the config file is not private: {why}"
    return None


def read_yaml_file(path: Path, layer: str, required: bool = False) -> dict[str, Any]:
    """Parse one YAML layer; a syntax error or a non-mapping is a config problem.

    ``required`` is for the main file: when it holds nothing (blank, only comments)
    every value would silently be a default, so say the file is empty instead.
    """
    try:
        text = reading.read_text(path, "config file", MAX_FILE_BYTES)
    except reading.ReadProblem as err:
        raise ConfigError([Problem(str(path), err.message)]) from None
    if why := writable_by_others(path):
        raise ConfigError([Problem(str(path), why)])
    data = parse_yaml(text, str(path))
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
        target[keys[-1]] = parse_yaml(raw, f"environment variable {name}") if raw else raw
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
        return Problem(path, "unknown key (misspelled? see the config reference, docs/reference/config.md)")
    if error["type"] == "missing":
        return Problem(path, "required key is missing")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in ("model_type", "model_attributes_type"):
        # A scalar where a section or secret reference belongs: never echo it,
        # it may be a secret pasted in place of its reference.
        return Problem(path, "must be a mapping (for secrets: {file: ...}, {env: ...} or {keychain: ...}), not a value")
    if "secret reference" in message or isinstance(value, (dict, list)):
        return Problem(path or "(top level)", message)
    got = shown(value)
    return Problem(path or "(top level)", f"{message} (got {got})" if got not in message else message)


def load(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Read every layer, merge, validate; raise ``ConfigError`` listing all problems."""
    main = path or default_config_path()
    if not main.exists():
        raise ConfigError([Problem(str(main), "config file not found (set HOMELAB_CONFIG or create it)")])
    layers = [Layer(f"file {main.name}", read_yaml_file(main, main.name, required=True))]
    files = [main]
    local = local_override_path(main)
    if local.exists() or local.is_symlink():
        layers.append(Layer(f"local {local.name}", read_yaml_file(local, local.name)))
        files.append(local)
    layers.append(Layer("env", env_layer(os.environ if environ is None else environ)))
    if overrides:
        layers.append(Layer("cli", dict(overrides)))
    merged, origins = merge_layers(layers)
    return LoadedConfig(validate(merged), origins, files)
