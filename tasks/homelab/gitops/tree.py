"""The whole ``k8s/`` tree as text, deterministically, and writing or checking it.

The renderer owns only files that start with its header; anything else in
``k8s/`` (sealed secrets written by ``secrets.seal``, notes) is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from homelab.apps import render as apps
from homelab.config.schema import HomelabConfig
from homelab.gitops import platform


class _ReviewableDumper(yaml.SafeDumper):
    """Multi-line strings (embedded config files) as literal blocks a person can read in a diff."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_ReviewableDumper.add_representer(str, _str)

HEADER = "# Rendered by `inv gitops.render` from config/homelab.yaml; do not edit by hand.\n"
Obj = dict[str, Any]


@dataclass
class Rendered:
    """Files by path relative to k8s/, the objects in each, and the renderer's notes."""

    files: dict[str, list[Obj]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def text(self, path: str) -> str:
        docs = [yaml.dump(obj, Dumper=_ReviewableDumper, sort_keys=False, width=120) for obj in self.files[path]]
        return HEADER + "---\n".join(docs)


def render(cfg: HomelabConfig) -> Rendered:
    out = Rendered()
    out.files["root.yaml"] = [platform.root_application(cfg)]
    for component, (chart, manifests) in platform.platform(cfg).items():
        argo: list[Obj] = []
        if chart is not None:
            argo.append(chart)
        if manifests:
            wave = int(chart["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) + 1 if chart else 0
            argo.append(
                platform.git_app(cfg, f"{component}-config", f"platform/{component}", _namespace_of(manifests), wave)
            )
            out.files[f"platform/{component}/manifests.yaml"] = manifests
        out.files[f"argocd/{component}.yaml"] = argo
    for name, app in sorted(cfg.apps.items()):
        objects, notes = apps.render_app(name, app, cfg)
        out.files[f"apps/{name}/app.yaml"] = objects
        out.files[f"argocd/app-{name}.yaml"] = [platform.git_app(cfg, f"app-{name}", f"apps/{name}", name, 1)]
        out.notes.extend(notes)
    return out


def _namespace_of(objects: list[Obj]) -> str:
    for obj in objects:
        if obj.get("metadata", {}).get("namespace"):
            return str(obj["metadata"]["namespace"])
    return "default"


def owned_files(root: Path) -> set[str]:
    """Files under ``root`` that this renderer wrote (they carry its header)."""
    found = set()
    for path in root.rglob("*.yaml") if root.is_dir() else []:
        with path.open() as handle:
            if handle.readline() == HEADER.splitlines()[0] + "\n":
                found.add(str(path.relative_to(root)))
    return found


@dataclass
class Drift:
    changed: list[str]
    stale: list[str]

    @property
    def clean(self) -> bool:
        return not (self.changed or self.stale)


def drift(rendered: Rendered, root: Path) -> Drift:
    changed = [
        p for p in sorted(rendered.files) if not (root / p).is_file() or (root / p).read_text() != rendered.text(p)
    ]
    stale = sorted(owned_files(root) - set(rendered.files))
    return Drift(changed, stale)


def write(rendered: Rendered, root: Path) -> Drift:
    """Bring ``root`` in line with ``rendered``; returns what had to change."""
    found = drift(rendered, root)
    for path in found.changed:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rendered.text(path))
    for path in found.stale:
        (root / path).unlink()
    return found


def objects_in_apply_order(rendered: Rendered) -> list[Obj]:
    """Namespaces, then platform, then apps, then ArgoCD's own Applications."""
    ordered = [obj for key in _keys(rendered, "platform/") for obj in rendered.files[key]]
    ordered += [obj for key in _keys(rendered, "apps/") for obj in rendered.files[key]]
    ordered += [obj for key in _keys(rendered, "argocd/") for obj in rendered.files[key]]
    ordered += rendered.files["root.yaml"]
    namespaces = [o for o in ordered if o["kind"] == "Namespace"]
    unique = {o["metadata"]["name"]: o for o in namespaces}
    return list(unique.values()) + [o for o in ordered if o["kind"] != "Namespace"]


def _keys(rendered: Rendered, prefix: str) -> list[str]:
    """Files under ``prefix`` in the order they were rendered (dependency order)."""
    return [key for key in rendered.files if key.startswith(prefix)]
