"""The whole ``k8s/`` tree as text, deterministically, and writing or checking it.

The renderer owns only files that start with its header; anything else in
``k8s/`` (sealed secrets written by ``secrets.seal``, notes) is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from homelab.apps import render as apps
from homelab.config.schema import HomelabConfig
from homelab.core.paths import project_root, resolve_in_project
from homelab.gitops import checksums, platform


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


def render(cfg: HomelabConfig, local_controllers: bool = False, sealed_files: dict[str, str] | None = None) -> Rendered:
    """The tree for the real homelab; ``local_controllers`` is the sandbox's one switch.

    ``sealed_files``: the SealedSecret files by name, when the caller is about to write them
    (``secrets.rotate``); otherwise those in ``secrets.sealed_dir``. Their checksums
    roll the pods that read them (``checksums``).

    With it, no component is installed from its Helm chart (Argo CD, Sealed
    Secrets and MetalLB run as the sandbox's own processes; the other charts
    cannot be fetched there) and the gateway's LoadBalancer Service, which
    Traefik's chart would make, is rendered on its own. Everything else is the
    same tree (``switch_differences`` lists it; a test holds it to that).
    """
    out = Rendered()
    out.files["root.yaml"] = [platform.root_application(cfg)]
    parts = platform.platform(cfg)
    if parts["argocd"][0] is None:
        out.notes.append(
            "Argo CD does not manage itself: gitops.install_manifest is not a file of a GitHub repository "
            "(https://raw.githubusercontent.com/OWNER/REPO/REF/PATH), so no Application can read it"
        )
    if local_controllers and cfg.ingress.enabled:
        chart, manifests = parts["traefik"]
        parts["traefik"] = (chart, [*manifests, platform.gateway_service(cfg)])
    if local_controllers and "kube-prometheus-stack" in parts:  # its chart makes Grafana's Service, the backend
        chart, manifests = parts["kube-prometheus-stack"]
        parts["kube-prometheus-stack"] = (chart, [o for o in manifests if o["kind"] != "HTTPRoute"])
    for component, (chart, manifests) in parts.items():
        argo: list[Obj] = []
        if chart is not None and not local_controllers:
            argo.append(chart)
        if manifests:
            wave = int(chart["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) + 1 if chart else 0
            argo.append(
                platform.git_app(cfg, f"{component}-config", f"platform/{component}", _namespace_of(manifests), wave)
            )
            out.files[f"platform/{component}/manifests.yaml"] = manifests
        out.files[f"argocd/{component}.yaml"] = argo
    sealed = sealed_repo_path(cfg)
    if sealed is None:
        out.notes.append(
            f"secrets.sealed_dir {cfg.secrets.sealed_dir} is outside the repository: no Application delivers its "
            "SealedSecrets; keep it inside the repository (default k8s/sealed)"
        )
    else:
        out.files["argocd/sealed.yaml"] = [platform.repo_app(cfg, "sealed-secrets-sealed", sealed, "kube-system", -4)]
        inside = PurePosixPath(sealed).relative_to(cfg.gitops.path) if _under(sealed, cfg.gitops.path) else None
        if inside is not None:  # Git keeps no empty directory; Argo CD fails on a path that does not exist
            out.files[str(inside / SEALED_PLACEHOLDER)] = []
    for name, app in sorted(cfg.deployed_apps.items()):
        objects, notes = apps.render_app(name, app, cfg)
        out.files[f"apps/{name}/app.yaml"] = objects
        out.files[f"argocd/app-{name}.yaml"] = [platform.git_app(cfg, f"app-{name}", f"apps/{name}", name, 1)]
        out.notes.extend(notes)
    texts = sealed_texts(cfg) if sealed_files is None else sealed_files
    checksums.stamp([o for objs in out.files.values() for o in objs], checksums.sealed_contents(texts.values()))
    return out


def changed_by_sealing(cfg: HomelabConfig, written: dict[str, str]) -> dict[str, str]:
    """Rendered files (paths under k8s/) whose text changes once the SealedSecret files ``written`` are on disk.

    A resealed secret changes the checksum in the pod template of every Deployment that
    reads it; those files go into the same commit, or the pods would never roll.
    """
    current = sealed_texts(cfg)
    before = render(cfg, sealed_files=current)
    after = render(cfg, sealed_files={**current, **written})
    return {p: after.text(p) for p in after.files if p not in before.files or before.text(p) != after.text(p)}


def sealed_texts(cfg: HomelabConfig) -> dict[str, str]:
    """The SealedSecret files in ``secrets.sealed_dir`` by name.

    None when the directory does not exist, or lies outside the repository: then no
    Application delivers them (``render``'s note says so), and a checksum of files
    that never reach the cluster would roll nothing that changed.
    """
    directory = resolve_in_project(cfg.secrets.sealed_dir)
    if not directory.is_dir() or sealed_repo_path(cfg) is None:
        return {}
    return {path.name: path.read_text() for path in sorted(directory.glob("*.yaml"))}


SEALED_PLACEHOLDER = "_keep.yaml"


def sealed_repo_path(cfg: HomelabConfig) -> str | None:
    """``secrets.sealed_dir`` as a path from the repository's top (the project root); None when outside it."""
    path = Path(cfg.secrets.sealed_dir).expanduser()
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(project_root())
        except ValueError:
            return None
    parts = PurePosixPath(path.as_posix()).parts
    if ".." in parts or not parts:
        return None
    return str(PurePosixPath(*parts))


def _under(path: str, directory: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(directory))


def switch_differences(cfg: HomelabConfig) -> list[str]:
    """What ``local_controllers`` (the sandbox) changes in the tree, one line each, for plans and docs."""
    charts = [name for name, (chart, _) in platform.platform(cfg).items() if chart is not None]
    lines = [
        f"no Application installs {', '.join(charts)} from upstream (Helm charts; Argo CD's install manifest): "
        "their CRDs are installed by the sandbox"
    ]
    if cfg.ingress.enabled:
        lines.append(
            f"Service {apps.GATEWAY_NAMESPACE}/{platform.GATEWAY_SERVICE} rendered on its own "
            "(the traefik chart makes it)"
        )
        if cfg.monitoring.enabled:
            lines.append(
                "no HTTPRoute for Grafana (its backend, a Service of the kube-prometheus-stack chart, is absent)"
            )
    return lines


def applications(rendered: Rendered) -> dict[str, Obj]:
    """Every Argo CD Application of the tree, by name."""
    return {o["metadata"]["name"]: o for objs in rendered.files.values() for o in objs if o["kind"] == "Application"}


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
