"""What the cluster must hold before the sandbox's controllers start, at the versions that run.

The components' CRDs, Argo CD's base config (what argocd-server would otherwise
create), a ``default`` AppProject that admits only the sandbox's own repository,
and the Sealed Secrets controller's ServiceAccount with the chart's ClusterRole.
"""

from __future__ import annotations

from typing import Any

from homelab.apps.render import namespace
from homelab.core import pins
from homelab.core.kube import KubeError, load_manifests
from homelab.core.paths import cache_dir
from homelab.gitops import deploy
from homelab.gitops.platform import ARGOCD_NAMESPACE, CHART_NAMESPACES

# The versions the sandbox runs: what scripts/get-binaries.sh builds, from versions.toml, like the
# versions the rendered tree pins the real homelab to.
VERSIONS = {name: "v" + pins.load().binaries[name].version for name in ("argocd", "sealed-secrets", "metallb")}
METALLB_NAMESPACE = CHART_NAMESPACES["metallb"]
SEALED_SECRETS_CLUSTER_ROLE = "secrets-unsealer"  # the chart's name for it

Obj = dict[str, Any]


def crds() -> list[Obj]:
    """The CRDs of the three components at the versions that run (fetched by get-binaries.sh crds)."""
    found: list[Obj] = []
    for component, version in VERSIONS.items():
        directory = deploy.crd_dir() / f"{component}-{version}"
        files = sorted(directory.glob("*.yaml"))
        if not files:
            raise KubeError(f"no {component} {version} CRDs in {directory}; run scripts/get-binaries.sh crds")
        found += [o for o in load_manifests(f.read_text() for f in files) if o["kind"] == "CustomResourceDefinition"]
    return found


ARGOCD_BASE_CONFIG = (  # manifests/base/config: what Argo CD's components read at start
    "argocd-cm",
    "argocd-cmd-params-cm",
    "argocd-gpg-keys-cm",
    "argocd-rbac-cm",
    "argocd-ssh-known-hosts-cm",
    "argocd-tls-certs-cm",
    "argocd-secret",
)


def argocd_base_config() -> list[Obj]:
    """Argo CD's base ConfigMaps and Secret, taken from its install manifest at the running version."""
    path = cache_dir() / "manifests" / f"argocd-install-{VERSIONS['argocd']}.yaml"
    if not path.is_file():
        raise KubeError(f"no Argo CD install manifest at {path}; run scripts/get-binaries.sh crds")
    found = []
    for obj in load_manifests([path.read_text()]):
        if obj["kind"] in ("ConfigMap", "Secret") and obj["metadata"]["name"] in ARGOCD_BASE_CONFIG:
            obj["metadata"]["namespace"] = ARGOCD_NAMESPACE
            found.append(obj)
    return found


def default_project(source: str) -> Obj:
    """The project argocd-server would create, admitting only the local repository (no fetch leaves the machine)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "default", "namespace": ARGOCD_NAMESPACE},
        "spec": {
            "sourceRepos": [source],
            "destinations": [{"server": "*", "namespace": "*"}],
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
        },
    }


def sealed_secrets_identity(namespace: str, name: str) -> list[Obj]:
    """The controller's ServiceAccount and the chart's ClusterRole bound to it: RBAC as on the real cluster."""
    rules = [
        {"apiGroups": ["bitnami.com"], "resources": ["sealedsecrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["bitnami.com"], "resources": ["sealedsecrets/status"], "verbs": ["update"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get", "list", "create", "update", "delete", "watch"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": SEALED_SECRETS_CLUSTER_ROLE}, "rules": rules},
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": rbac.split("/")[0], "kind": "ClusterRole", "name": SEALED_SECRETS_CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def cluster_objects(session: Any, repository_url: str) -> list[Obj]:
    """Namespaces, Argo CD's base config and project, the Sealed Secrets identity: in apply order.

    The namespaces are rendered as the tree renders them: both apply them under the
    same field manager, and two different bodies would be re-applied by each in turn.
    """
    secrets_ns = session.cfg.secrets.controller_namespace
    namespaces = sorted({ARGOCD_NAMESPACE, METALLB_NAMESPACE, secrets_ns} - {"default", "kube-system"})
    return [
        *(namespace(n) for n in namespaces),
        *argocd_base_config(),
        default_project(repository_url),
        *sealed_secrets_identity(secrets_ns, session.cfg.secrets.controller_name),
    ]
