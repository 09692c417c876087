"""A Helm chart repository's ``index.yaml``, read as Helm (and Argo CD's Helm source) reads it (pure).

``helm pull --repo URL CHART --version V`` fetches ``URL/index.yaml``; its
``entries`` map each chart name to its releases, each with a ``version``. A
version matches exactly, or as the same semantic version with or without a
leading ``v`` (Helm parses both ``v1.2.3`` and ``1.2.3``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

SHOWN = 5  # how many of the newest versions a "not found" names
SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: a large index in a second, not a minute


class IndexProblem(ValueError):
    """The answer is not a Helm repository index."""


@dataclass(frozen=True)
class Lookup:
    """A chart version looked up in an index: found, or the versions that exist."""

    found: bool
    chart_known: bool
    newest: tuple[str, ...] = ()
    charts: tuple[str, ...] = ()


def index_url(repository: str) -> str:
    return repository.rstrip("/") + "/index.yaml"


def version_key(version: str) -> tuple[Any, ...]:
    """Order versions newest last: semantic versions by number (a pre-release before its release)."""
    match = SEMVER.match(version)
    if match is None:
        return (0, version)
    major, minor, patch, pre = match.groups()
    return (1, int(major), int(minor), int(patch), pre is None, pre or "")


def parse_index(body: bytes) -> dict[str, list[str]]:
    """Chart name -> its versions, from an ``index.yaml``; ``IndexProblem`` when it is not one."""
    try:
        data = yaml.load(body, Loader=_Loader)  # noqa: S506 (a safe loader, C or pure Python)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise IndexProblem(f"not YAML{where} ({getattr(error, 'problem', None) or type(error).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        shape = type(data).__name__ if not isinstance(data, dict) else "a mapping without entries"
        raise IndexProblem(f"YAML but not a Helm repository index (no entries: {shape})")
    charts: dict[str, list[str]] = {}
    for name, releases in data["entries"].items():
        versions = [str(r["version"]) for r in releases or [] if isinstance(r, dict) and r.get("version") is not None]
        charts[str(name)] = versions
    return charts


def same_version(wanted: str, listed: str) -> bool:
    if wanted == listed:
        return True
    a, b = SEMVER.match(wanted), SEMVER.match(listed)
    return a is not None and b is not None and wanted.lstrip("v") == listed.lstrip("v")


def lookup(index: dict[str, list[str]], chart: str, version: str) -> Lookup:
    """Whether ``chart`` at ``version`` is in the index, else what is there instead."""
    if chart not in index:
        return Lookup(False, False, charts=tuple(sorted(index)[:SHOWN]))
    versions = index[chart]
    if any(same_version(version, listed) for listed in versions):
        return Lookup(True, True)
    newest = sorted(set(versions), key=version_key, reverse=True)[:SHOWN]
    return Lookup(False, True, newest=tuple(newest))
