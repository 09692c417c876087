"""The cluster connection: one kubeconfig file, one explicit context, discovery and reads.

Every other part of the Kubernetes client (the apply engine, node maintenance,
waits) builds on this class; it holds the only API client and discovery cache.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from homelab.core.errors import HomelabError


class KubeError(HomelabError):
    """The API server refused something, or a wait timed out."""


def object_ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {ns}{meta.get('name', '?')}"


_FastSafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: CRDs are large


class _ManifestLoader(_FastSafeLoader):  # type: ignore[misc]
    """SafeLoader reading ``=`` as the string it is in Kubernetes (YAML 1.1 calls it a 'value' tag)."""


def _value_as_string(loader: Any, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_ManifestLoader.add_constructor("tag:yaml.org,2002:value", _value_as_string)


def load_manifests(texts: Iterable[str]) -> list[dict[str, Any]]:
    """Objects from YAML streams; empty documents are skipped, Lists unpacked."""
    objects: list[dict[str, Any]] = []
    for text in texts:
        for doc in yaml.load_all(text, Loader=_ManifestLoader):
            if not doc:
                continue
            if doc.get("kind", "").endswith("List") and "items" in doc:
                objects.extend(doc["items"])
            else:
                objects.append(doc)
    return objects


def api_message(err: Exception) -> str:
    """The API server's own message out of an ApiException body."""
    body = getattr(err, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):
            return str(body)
    return str(getattr(err, "reason", None) or err)


class KubeClient:
    """A client bound to one kubeconfig file and one context: discovery, get, list, delete."""

    def __init__(self, kubeconfig: Path, context: str) -> None:
        from kubernetes import config as kube_config
        from kubernetes.dynamic import DynamicClient

        if not kubeconfig.is_file():
            raise KubeError(f"kubeconfig {kubeconfig} does not exist; bring the cluster up first (inv up)")
        try:
            self.api = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig), context=context
            )
        except kube_config.ConfigException as err:
            raise KubeError(f"kubeconfig {kubeconfig}: context {context!r} unusable: {err}") from None
        self.context = context
        self.kubeconfig = kubeconfig
        self._dynamic_factory = DynamicClient
        self._dynamic: Any = None

    def ready(self, timeout: float = 5.0) -> bool:
        """True when the API server answers (its /version endpoint, authenticated)."""
        from kubernetes.client import VersionApi

        try:
            VersionApi(self.api).get_code(_request_timeout=timeout)
        except Exception:
            return False
        return True

    @property
    def dynamic(self) -> Any:
        if self._dynamic is None:
            # The client's default discovery cache is a file in /tmp keyed by the server URL; a
            # re-created sandbox on a reused port would read another cluster's API list from it.
            self._cache_dir = tempfile.TemporaryDirectory(prefix="homelab-discovery-")
            cache = str(Path(self._cache_dir.name) / "discovery.json")
            self._dynamic = self._dynamic_factory(self.api, cache_file=cache)  # type: ignore[no-untyped-call]
        return self._dynamic

    def resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            self.dynamic.resources.invalidate_cache()
            try:
                return self.dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise KubeError(f"the cluster does not serve {kind} ({api_version}); is its CRD installed?") from None

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()  # type: ignore[no-any-return]
        except ApiException as err:
            if err.status == 404:
                return None
            raise KubeError(f"get {kind} {name}: {api_message(err)}") from None

    def list_objects(
        self, api_version: str, kind: str, namespace: str | None = None, **selectors: str
    ) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.resource(api_version, kind).get(namespace=namespace, **selectors).to_dict()
        except ApiException as err:
            raise KubeError(f"list {kind}: {api_message(err)}") from None
        return list(found.get("items", []))

    def merge_patch(self, api_version: str, kind: str, name: str, namespace: str | None, body: dict[str, Any]) -> None:
        """A JSON merge patch (``None`` removes a key): for small operational changes, not for desired state."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.resource(api_version, kind).patch(
                name=name, namespace=namespace, content_type="application/merge-patch+json", body=body
            )
        except ApiException as err:
            raise KubeError(f"patch {kind} {name}: {api_message(err)}") from None

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.resource(api_version, kind).delete(name=name, namespace=namespace)
        except ApiException as err:
            if err.status == 404:
                return False
            raise KubeError(f"delete {kind} {name}: {api_message(err)}") from None
        return True
