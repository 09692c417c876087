"""The version manifest (``versions.toml``): every version and source address the homelab pins.

One file, so that the render, the config's defaults, the setup's builds and the
source check can never disagree, and so that an updater (Renovate) can see and
bump every pin. Read once per process; ``HOMELAB_VERSIONS`` points at another
file (tests, or an owner trying a newer set before committing it).
"""

from __future__ import annotations

import datetime
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from homelab.core.errors import HomelabError

ENV = "HOMELAB_VERSIONS"


@dataclass(frozen=True)
class Chart:
    """A Helm chart in an HTTP chart repository, as an Argo CD Application names it."""

    repository: str
    chart: str
    version: str


@dataclass(frozen=True)
class Binary:
    """A program setup builds from a Go module at a version."""

    module: str
    version: str


@dataclass(frozen=True)
class Pins:
    """The manifest's content, typed."""

    path: Path
    digest: str
    end_of_support: dict[str, datetime.date]
    k3s_version: str
    k3s_releases: str
    k3s_installer: str
    k3s_upgrade_path: dict[str, str]
    argocd_version: str
    argocd_install_manifest: str
    charts: dict[str, Chart]
    images: dict[str, str]
    binaries: dict[str, Binary]
    toolchains: dict[str, str]

    def chart(self, component: str) -> Chart:
        if component not in self.charts:
            raise HomelabError(f"{self.path}: no [charts.{component}] entry; add it (repository, chart, version)")
        return self.charts[component]

    def image(self, name: str) -> str:
        if name not in self.images:
            raise HomelabError(f'{self.path}: no image {name!r} under [images]; add it as {name} = "repo:tag"')
        return self.images[name]


def manifest_path() -> Path:
    """``versions.toml`` beside the toolkit's own code: the pins belong to the code, not to a project directory
    (``HOMELAB_ROOT`` may point elsewhere); ``HOMELAB_VERSIONS`` names another file."""
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[3] / "versions.toml"


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise HomelabError(f"{where}: [{key}] is missing or not a table")
    return value


def _text(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value or value != value.strip():
        raise HomelabError(f"{where}: {key} must be a non-empty string without surrounding spaces")
    return value


def parse(raw: bytes, path: Path) -> Pins:
    """Typed pins from the manifest's bytes; every problem names the file and the key."""
    import hashlib

    where = str(path)
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HomelabError(f"{where}: not a valid TOML file ({exc}); restore it from git") from None
    kube = _table(data, "kubernetes", where)
    eos = kube.get("end_of_support")
    if not isinstance(eos, dict) or not all(isinstance(d, datetime.date) for d in eos.values()):
        raise HomelabError(f'{where}: kubernetes.end_of_support must map each minor ("1.35") to a date')
    k3s = _table(data, "k3s", where)
    upgrade_path = _table(k3s, "upgrade_path", f"{where}: k3s")
    argocd = _table(data, "argocd", where)
    charts = {}
    for name, entry in _table(data, "charts", where).items():
        at = f"{where}: charts.{name}"
        charts[name] = Chart(_text(entry, "repository", at), _text(entry, "chart", at), _text(entry, "version", at))
    images = {name: _text(_table(data, "images", where), name, f"{where}: images") for name in data["images"]}
    binaries = {}
    for name, entry in _table(data, "binaries", where).items():
        at = f"{where}: binaries.{name}"
        binaries[name] = Binary(_text(entry, "module", at), _text(entry, "version", at))
    return Pins(
        path=path,
        digest=hashlib.sha256(raw).hexdigest(),
        end_of_support=dict(eos),
        k3s_version=_text(k3s, "version", f"{where}: k3s"),
        k3s_releases=_text(k3s, "releases", f"{where}: k3s"),
        k3s_installer=_text(k3s, "installer", f"{where}: k3s"),
        k3s_upgrade_path={str(k): _text(upgrade_path, k, f"{where}: k3s.upgrade_path") for k in upgrade_path},
        argocd_version=_text(argocd, "version", f"{where}: argocd"),
        argocd_install_manifest=_text(argocd, "install_manifest", f"{where}: argocd"),
        charts=charts,
        images=images,
        binaries=binaries,
        toolchains={
            k: _text(data.get("toolchains", {}), k, f"{where}: toolchains") for k in data.get("toolchains", {})
        },
    )


@cache
def load() -> Pins:
    """The manifest this process runs with (read once)."""
    path = manifest_path()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HomelabError(f"cannot read the version manifest {path}: {exc.strerror}; restore it from git") from None
    return parse(raw, path)


def minor_of(version: str) -> str:
    """``"1.35"`` from a K3S release (``v1.35.0+k3s1``) or a Kubernetes version (``1.35.0``)."""
    parts = version.lstrip("v").split(".")
    return ".".join(parts[:2])
