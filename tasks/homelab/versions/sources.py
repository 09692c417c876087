"""Every upstream source the homelab pulls from, collected from the config and its render (pure).

What Argo CD and the nodes fetch on the real homelab: each chart Application's
repository, chart and version; every container image of the rendered workloads
(init containers too) and every image pin of the version manifest (the charts'
controller images are pinned there); the K3S release the installer downloads and
the installer itself; Argo CD's install manifest. Each source carries the key to
change when it is broken: the config key when a config layer set the value, else
the version manifest's key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from homelab.config.schema import HomelabConfig
from homelab.core.pins import Pins

Obj = dict[str, Any]
Origin = Callable[[str], str]  # config key -> the layer that set it ("default" when none did)
DEFAULT_LAYER = "default"

CHART, IMAGE, K3S_RELEASE, K3S_INSTALLER, INSTALL_MANIFEST = (
    "chart",
    "image",
    "k3s-release",
    "k3s-installer",
    "install-manifest",
)
KINDS = (CHART, IMAGE, K3S_RELEASE, K3S_INSTALLER, INSTALL_MANIFEST)
# Which layer of `inv up` pulls which kind of source (the others pull none of these).
LAYER_KINDS = {"k3s": {K3S_RELEASE, K3S_INSTALLER}, "gitops": {CHART, IMAGE, INSTALL_MANIFEST}}
# The config key that overrides a chart's version from the manifest, by component.
CHART_VERSION_KEYS = {
    "sealed-secrets": "secrets.chart_version",
    "metallb": "metallb.chart_version",
    "cert-manager": "tls.chart_version",
    "traefik": "ingress.chart_version",
    "kube-prometheus-stack": "monitoring.chart_version",
}
# install.sh's ARCH for the nodes' architecture (setup_verify_arch: x86_64 -> amd64, aarch64 -> arm64).
K3S_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# Pod templates by workload kind.
POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class Source:
    """One thing pulled from upstream, and what to change when it is broken."""

    kind: str
    component: str
    address: str  # chart: the repository URL; image: the reference; else the URL fetched
    version: str
    chart: str = ""  # the chart's name in its repository
    version_key: str = ""  # what to change when the version is missing upstream
    address_key: str = ""  # what to change when the address moved or is wrong

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What makes two sources the same check (the cache key holds these, sorted)."""
        return (self.kind, self.address, self.chart, self.version)

    def shown(self) -> str:
        """The address as one line shows it."""
        if self.kind == CHART:
            return f"{self.address} {self.chart} {self.version}"
        return self.address


def key_for(origin: Origin, config_key: str, manifest: str, manifest_key: str) -> str:
    """Where a value comes from: the config layer that set it, else the manifest's key."""
    layer = origin(config_key)
    if layer == DEFAULT_LAYER:
        return f"{manifest_key} in {manifest}"
    return f"{config_key} in the config (set by {layer})"


def collect(cfg: HomelabConfig, pins: Pins, files: dict[str, list[Obj]], origin: Origin, manifest: str) -> list[Source]:
    """Every source, charts first, in a stable order, each address once.

    ``files`` is the rendered tree (``Rendered.files``); ``manifest`` names the
    version manifest in messages (``versions.toml``).
    """
    found: list[Source] = [*charts(files, origin, manifest), *images(cfg, pins, files, origin, manifest)]
    if cfg.k3s.install_method != "airgap":  # airgap: INSTALL_K3S_SKIP_DOWNLOAD, the binary is uploaded
        arch = K3S_ARCH.get(cfg.lima.arch, "amd64")
        found.append(
            Source(
                K3S_RELEASE,
                "k3s",
                f"{pins.k3s_releases.rstrip('/')}/{cfg.k3s.version}/sha256sum-{arch}.txt",
                cfg.k3s.version,
                version_key=key_for(origin, "k3s.version", manifest, "k3s.version"),
                address_key=f"k3s.releases in {manifest}",
            )
        )
    if not cfg.k3s.installer_file:  # a local copy is uploaded instead of downloaded
        installer_key = key_for(origin, "k3s.installer_url", manifest, "k3s.installer")
        found.append(
            Source(
                K3S_INSTALLER,
                "k3s installer",
                cfg.k3s.installer_url,
                "",
                version_key=installer_key,
                address_key=installer_key,
            )
        )
    install = cfg.gitops.install_manifest.format(version=cfg.gitops.argocd_version)
    if install.startswith(("https://", "http://")):  # a local file (a path, file://) is not pulled from upstream
        found.append(
            Source(
                INSTALL_MANIFEST,
                "argocd",
                install,
                cfg.gitops.argocd_version,
                version_key=key_for(origin, "gitops.argocd_version", manifest, "argocd.version"),
                address_key=key_for(origin, "gitops.install_manifest", manifest, "argocd.install_manifest"),
            )
        )
    return _unique(found)


def charts(files: dict[str, list[Obj]], origin: Origin, manifest: str) -> Iterator[Source]:
    """Each Helm chart an Application of the tree installs (repoURL, chart, targetRevision)."""
    for objects in files.values():
        for obj in objects:
            if obj.get("kind") != "Application":
                continue
            spec = obj.get("spec") or {}
            name = obj["metadata"]["name"]
            for source in [spec.get("source") or {}, *(spec.get("sources") or [])]:
                if not source.get("chart"):
                    continue
                config_key = CHART_VERSION_KEYS.get(name, "")
                yield Source(
                    CHART,
                    name,
                    str(source["repoURL"]).rstrip("/"),
                    str(source.get("targetRevision") or ""),
                    chart=str(source["chart"]),
                    version_key=key_for(origin, config_key, manifest, f"charts.{name}.version")
                    if config_key
                    else f"charts.{name}.version in {manifest}",
                    address_key=f"charts.{name}.repository in {manifest}",
                )


def workload_images(files: dict[str, list[Obj]]) -> Iterator[tuple[str, str]]:
    """(``namespace/name``, image) of every container of every rendered workload, init containers included."""
    for objects in files.values():
        for obj in objects:
            path = POD_SPEC_PATHS.get(str(obj.get("kind")))
            if path is None:
                continue
            spec: Any = obj
            for step in path:
                spec = (spec or {}).get(step)
            meta = obj.get("metadata") or {}
            where = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
            for field in CONTAINER_FIELDS:
                for container in (spec or {}).get(field) or []:
                    if container.get("image"):
                        yield where, str(container["image"])


def images(cfg: HomelabConfig, pins: Pins, files: dict[str, list[Obj]], origin: Origin, manifest: str) -> list[Source]:
    """Every image of the render, then every image pin the render does not name (chart controller images)."""
    pinned = {reference: name for name, reference in pins.images.items()}
    apps = {app.image: name for name, app in sorted(cfg.deployed_apps.items())}

    def source(component: str, reference: str) -> Source:
        app = apps.get(reference)
        if app is not None and (origin(f"apps.{app}.image") != DEFAULT_LAYER or reference not in pinned):
            key = f"apps.{app}.image in the config (set by {origin(f'apps.{app}.image')})"
        elif reference in pinned:
            key = f"images.{pinned[reference]} in {manifest}"
        else:
            key = f"the image of {component} in the render"
        component = pinned.get(reference, app or component)
        return Source(IMAGE, component, reference, _tag(reference), version_key=key, address_key=key)

    found = [source(where, reference) for where, reference in workload_images(files)]
    found += [source(name, reference) for name, reference in pins.images.items()]
    return _unique(found)


def _tag(reference: str) -> str:
    rest, at, digest = reference.partition("@")
    if at:
        return digest
    last = rest.rfind(":")
    return rest[last + 1 :] if last > rest.rfind("/") else "latest"


def _unique(sources: Iterable[Source]) -> list[Source]:
    seen: set[tuple[str, str, str, str]] = set()
    kept = []
    for source in sources:
        if source.identity not in seen:
            seen.add(source.identity)
            kept.append(source)
    return kept


def for_layers(sources: list[Source], layers: Iterable[str]) -> list[Source]:
    """The sources the given layers of ``inv up`` pull."""
    kinds = set().union(*(LAYER_KINDS.get(layer, set()) for layer in layers))
    return [source for source in sources if source.kind in kinds]
