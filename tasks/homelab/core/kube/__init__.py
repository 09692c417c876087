"""The one way the toolkit talks to a cluster: the kubernetes Python client, split by job.

``client`` connects and reads, ``apply`` is the server-side apply engine,
``nodes`` cordons and drains, ``waits`` polls. ``Kube`` is all four on one
connection; the kubeconfig file and context are always explicit.
"""

from __future__ import annotations

from homelab.core.kube.apply import FIELD_MANAGER, Applied, ApplyEngine, holds, strip_volatile
from homelab.core.kube.client import KubeClient, KubeError, api_message, load_manifests, object_ref
from homelab.core.kube.nodes import SINGLE_REPLICA_LABEL, NodeMaintenance
from homelab.core.kube.waits import Waits, deployment_waiting


class Kube(ApplyEngine, NodeMaintenance, Waits):
    """A client bound to one kubeconfig file and one context."""


__all__ = [
    "FIELD_MANAGER",
    "SINGLE_REPLICA_LABEL",
    "Applied",
    "Kube",
    "KubeClient",
    "KubeError",
    "api_message",
    "deployment_waiting",
    "holds",
    "load_manifests",
    "object_ref",
    "strip_volatile",
]
