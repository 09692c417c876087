"""What the cluster must hold before the sandbox's controllers start, at the versions that run.

The components' CRDs, Argo CD's base config (what argocd-server would otherwise
create), a ``default`` AppProject that admits only the sandbox's own repository,
the Sealed Secrets controller's ServiceAccount with the chart's ClusterRole, Traefik's
ServiceAccount with its gateway provider's ClusterRole, and the wildcard certificate's
Secret the Gateway serves (self-signed here: cert-manager does not run on the sandbox).
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from homelab.apps.render import GATEWAY_NAMESPACE, namespace
from homelab.core import pins
from homelab.core.kube import Kube, KubeError, load_manifests
from homelab.core.paths import cache_dir
from homelab.core.plan import Action, Apply
from homelab.gitops import deploy
from homelab.gitops.platform import ARGOCD_NAMESPACE, CHART_NAMESPACES, WILDCARD_SECRET

# The versions the sandbox runs: what scripts/get-binaries.sh builds, from versions.toml, like the
# versions the rendered tree pins the real homelab to.
VERSIONS = {
    name: "v" + pins.load().binaries[name].version
    for name in ("argocd", "sealed-secrets", "metallb", "gateway-api", "traefik")
}
METALLB_NAMESPACE = CHART_NAMESPACES["metallb"]
SEALED_SECRETS_CLUSTER_ROLE = "secrets-unsealer"  # the chart's name for it
TRAEFIK_SERVICE_ACCOUNT = "traefik"  # the chart's, with release name traefik

Obj = dict[str, Any]


def crds() -> list[Obj]:
    """The CRDs of the components at the versions that run, and the Gateway API's (get-binaries.sh crds)."""
    found: list[Obj] = []
    for component, version in VERSIONS.items():
        directory = deploy.crd_dir() / f"{component}-{version}"
        files = sorted(directory.glob("*.yaml"))
        if not files:
            raise KubeError(f"no {component} {version} CRDs in {directory}; run scripts/get-binaries.sh crds")
        objects = load_manifests(f.read_text() for f in files)  # Traefik's directory holds a non-CRD file too
        found += [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
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
    return service_account_with_cluster_role(namespace, name, SEALED_SECRETS_CLUSTER_ROLE, rules, binding=name)


def service_account_with_cluster_role(
    namespace: str, name: str, role: str, rules: list[Obj], binding: str | None = None
) -> list[Obj]:
    """A controller's ServiceAccount, its ClusterRole and the binding between them (named ``binding`` or ``role``)."""
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": role}, "rules": rules},
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": binding or role},
            "roleRef": {"apiGroup": rbac.split("/")[0], "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


# What Traefik's Gateway API and CRD providers read and write: their RBAC manifests at the pinned version,
# traefik docs/content/reference/dynamic-configuration/kubernetes-{gateway,crd}-rbac.yml (the chart grants the same).
# The CRD provider is there for the Middlewares that routes name as ExtensionRef filters (body limits).
GATEWAY_KINDS = (
    "gatewayclasses", "gateways", "httproutes", "grpcroutes", "tcproutes", "tlsroutes", "referencegrants",
    "backendtlspolicies",
)  # fmt: skip
TRAEFIK_KINDS = (
    "middlewares", "middlewaretcps", "ingressroutes", "traefikservices", "ingressroutetcps", "ingressrouteudps",
    "tlsoptions", "tlsstores", "serverstransports", "serverstransporttcps",
)  # fmt: skip


def traefik_identity(namespace_name: str, name: str) -> list[Obj]:
    """Traefik's ServiceAccount bound to the gateway provider's ClusterRole: RBAC as on the real cluster."""
    rules = [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {
            "apiGroups": [""],
            "resources": ["services", "secrets", "configmaps", "nodes"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": ["traefik.io"], "resources": list(TRAEFIK_KINDS), "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": list(GATEWAY_KINDS),
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": [f"{kind}/status" for kind in GATEWAY_KINDS],
            "verbs": ["update"],
        },
    ]
    role = f"{name}-{namespace_name}"  # the chart's ClusterRole name (traefik.clusterRoleName)
    return service_account_with_cluster_role(namespace_name, name, role, rules)


def self_signed_wildcard(domain: str) -> Obj:
    """A ``kubernetes.io/tls`` Secret for ``domain`` and ``*.domain``, as cert-manager would write it, self-signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"*.{domain}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"*.{domain}")]), False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": WILDCARD_SECRET, "namespace": GATEWAY_NAMESPACE},
        "data": {
            "tls.crt": base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode(),
            "tls.key": base64.b64encode(pem_key).decode(),
        },
    }


def wildcard_certificate_actions(kube: Kube | None, domain: str) -> list[Action]:
    """Create the wildcard Secret the Gateway serves, once (cert-manager's job on the real homelab)."""
    if kube is not None and kube.get("v1", "Secret", WILDCARD_SECRET, GATEWAY_NAMESPACE):
        return []
    secret = self_signed_wildcard(domain)
    return [Apply((secret,), why="the wildcard certificate the Gateway serves (self-signed: no cert-manager here)")]


def cluster_objects(session: Any, repository_url: str) -> list[Obj]:
    """Namespaces, Argo CD's base config and project, the Sealed Secrets identity: in apply order.

    The namespaces are rendered as the tree renders them: both apply them under the
    same field manager, and two different bodies would be re-applied by each in turn.
    """
    secrets_ns = session.cfg.secrets.controller_namespace
    namespaces = sorted(
        {ARGOCD_NAMESPACE, METALLB_NAMESPACE, GATEWAY_NAMESPACE, secrets_ns} - {"default", "kube-system"}
    )
    return [
        *(namespace(n) for n in namespaces),
        *argocd_base_config(),
        default_project(repository_url),
        *sealed_secrets_identity(secrets_ns, session.cfg.secrets.controller_name),
        *traefik_identity(GATEWAY_NAMESPACE, TRAEFIK_SERVICE_ACCOUNT),
    ]
