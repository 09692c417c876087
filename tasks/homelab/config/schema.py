"""The typed schema of ``config/homelab.yaml``.

Field-level rules (types, formats, unknown keys) live here as pydantic models;
rules that relate several fields (pool inside the subnet, unique names) live in
``checks.py`` so that each problem can name its own key path.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from homelab.core.secret_refs import SecretLocation

SIZE_PATTERN = re.compile(r"^[1-9][0-9]*(MiB|GiB|TiB)$")
K3S_VERSION_PATTERN = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$")
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
Target = Literal["lima", "sandbox", "k3d", "existing"]
Arch = Literal["aarch64", "x86_64"]


def _size(value: str) -> str:
    if not SIZE_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a size like 4GiB or 512MiB")
    return value


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 network in CIDR form") from None
    return value


def _dns_name(value: str) -> str:
    if not NAME_PATTERN.match(value) or len(value) > 63:
        raise ValueError(f"{value!r} is not a lowercase DNS label")
    return value


def _k3s_version(value: str) -> str:
    if not K3S_VERSION_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a K3S version like v1.33.5+k3s1")
    return value


Size = Annotated[str, AfterValidator(_size)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
CIDR = Annotated[str, AfterValidator(_cidr)]
DnsName = Annotated[str, AfterValidator(_dns_name)]
K3sVersion = Annotated[str, AfterValidator(_k3s_version)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    """Base for every section: unknown or misspelled keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Strict):
    """Where a secret lives. Exactly one of ``file``, ``env``, ``keychain``."""

    file: str | None = None
    env: str | None = None
    keychain: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("file", "env", "keychain") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a secret reference needs exactly one of file, env or keychain")
        return self

    def location(self) -> SecretLocation:
        return SecretLocation(file=self.file, env=self.env, keychain=self.keychain)


class Host(Strict):
    """The machine that runs the toolkit and hosts the VMs (the Mac)."""

    kind: Literal["macos", "linux"] = "macos"
    ip: IPv4 = "192.168.105.1"
    socket_vmnet_path: str = "/opt/socket_vmnet/bin/socket_vmnet"


class Network(Strict):
    """The node network (socket_vmnet's shared network on the Mac)."""

    subnet: CIDR = "192.168.105.0/24"
    gateway: IPv4 = "192.168.105.1"
    dns: list[IPv4] = Field(default_factory=lambda: ["192.168.105.1"])


class SshAccess(Strict):
    """How the toolkit reaches a node over SSH."""

    user: str = "homelab"
    port: Port = 22
    private_key: str = "~/.ssh/homelab_ed25519"
    public_key: str = "~/.ssh/homelab_ed25519.pub"


class Node(Strict):
    """One K3S node: a Lima VM on the Mac, or an existing Linux host over SSH."""

    name: DnsName
    role: Literal["server", "agent"]
    provider: Literal["lima", "ssh"] = "lima"
    ip: IPv4
    cpus: int = Field(default=2, ge=1, le=64)
    memory: Size = "4GiB"
    disk: Size = "40GiB"
    ssh_port: Port | None = None
    ssh_user: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[str] = Field(default_factory=list)


class Lima(Strict):
    """Settings shared by every Lima VM (rendered into ``lima/`` templates)."""

    vm_type: Literal["vz", "qemu"] = "vz"
    arch: Arch = "aarch64"
    images: dict[Arch, str] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "aarch64": "https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-arm64.img",
            "x86_64": "https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img",
        }
    )
    socket: str = "/var/run/socket_vmnet"
    interface: str = "lima0"


class Terraform(Strict):
    """Which binary drives the VM lifecycle module."""

    binary: Literal["terraform", "tofu"] = "terraform"
    parallelism: int = Field(default=3, ge=1, le=32)


class K3s(Strict):
    """K3S on the nodes. Options are written to /etc/rancher/k3s/config.yaml, not passed as flags."""

    version: K3sVersion = "v1.33.5+k3s1"
    datastore: Literal["sqlite", "etcd"] = "sqlite"
    flannel_backend: Literal["vxlan", "host-gw", "wireguard-native", "none"] = "vxlan"
    install_method: Literal["script", "airgap"] = "script"
    installer_url: str = "https://get.k3s.io"
    installer_file: str | None = None
    airgap_binary: str | None = None
    airgap_images: str | None = None
    token: SecretRef = SecretRef(file="~/.config/homelab/k3s-token")
    api_endpoint: str | None = None
    extra_server_config: dict[str, str] = Field(default_factory=dict)
    min_free_disk: Size = "5GiB"
    drain_timeout: int = Field(default=300, ge=5)
    ready_timeout: int = Field(default=300, ge=5)  # seconds an upgraded node may take to be Ready again


class IpPool(Strict):
    start: IPv4
    end: IPv4


class MetalLB(Strict):
    enabled: bool = True
    chart_version: str = "0.15.2"
    pool: IpPool = IpPool(start="192.168.105.50", end="192.168.105.99")


class Ingress(Strict):
    enabled: bool = True
    chart_version: str = "4.13.3"
    load_balancer_ip: IPv4 = "192.168.105.50"


class Cloudflare(Strict):
    """Cloudflare Tunnel (outbound only) and the DNS-01 API token."""

    tunnel_enabled: bool = True
    tunnel_name: str = "homelab"
    tunnel_credentials: SecretRef = SecretRef(file="~/.config/homelab/cloudflared.json")
    api_token: SecretRef = SecretRef(env="CLOUDFLARE_API_TOKEN")


class Tls(Strict):
    """cert-manager with Let's Encrypt wildcard certificates via DNS-01."""

    chart_version: str = "v1.18.2"
    email: str = "admin@example.com"
    issuer: Literal["letsencrypt-staging", "letsencrypt-prod"] = "letsencrypt-prod"


class GitOps(Strict):
    """ArgoCD app-of-apps."""

    chart_version: str = "8.3.0"
    repo_url: str = "https://github.com/example/homelab.git"
    revision: str = "main"
    path: str = "k8s"
    repo_credentials: SecretRef | None = None
    argocd_version: str = "v3.1.8"
    install_manifest: str = "https://raw.githubusercontent.com/argoproj/argo-cd/{version}/manifests/install.yaml"


class Telegram(Strict):
    bot_token: SecretRef = SecretRef(env="TELEGRAM_BOT_TOKEN")
    chat_id: int = 0


class Monitoring(Strict):
    enabled: bool = True
    chart_version: str = "77.0.0"
    retention: str = "15d"
    storage: Size = "20GiB"
    grafana_hostname: str = "grafana"
    telegram: Telegram = Telegram()


class LmStudio(Strict):
    """LM Studio runs bare-metal on the Mac; apps reach it by an ExternalName."""

    host: str = "192.168.105.1"
    port: Port = 1234


class App(Strict):
    """One catalog entry: everything the renderer needs for an app."""

    image: str
    port: Port
    hostname: str
    storage: Size | None = "1GiB"
    storage_class: str = "local-path"
    replicas: int = Field(default=1, ge=0, le=20)
    critical: bool = False
    cpu_request: str = "50m"
    cpu_limit: str = "500m"
    memory_request: Size = "64MiB"
    memory_limit: Size = "512MiB"
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    egress: list[Literal["internet", "lm-studio"]] = Field(default_factory=list)
    sqlite_databases: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]] = Field(default_factory=list)
    mount_path: str = "/data"
    non_root: bool = True
    run_as_user: int = Field(default=1000, ge=0)
    quiesce: list[str] = Field(default_factory=list)


class Retention(Strict):
    daily: int = Field(default=7, ge=0)
    weekly: int = Field(default=4, ge=0)
    monthly: int = Field(default=6, ge=0)


class Backup(Strict):
    """restic backups, run from cron."""

    repository: str = "/var/backups/homelab/restic"
    password: SecretRef = SecretRef(file="~/.config/homelab/restic-password")
    schedule: str = "0 3 * * *"
    retention: Retention = Retention()
    keep_verified: int = Field(default=3, ge=1)
    notify_on_success: bool = False
    notify_api: str = "https://api.telegram.org"
    deadman_url: str | None = None
    max_age_hours: int = Field(default=26, ge=1)
    verify_read_percent: int = Field(default=10, ge=1, le=100)
    components: list[Literal["config", "cluster", "sealed-keys", "datastore", "volumes"]] = Field(
        default_factory=lambda: ["config", "cluster", "sealed-keys", "datastore", "volumes"]  # type: ignore[arg-type]
    )


class Secrets(Strict):
    """Sealed Secrets: plaintext only in a git-ignored file or in references."""

    controller_namespace: str = "kube-system"
    controller_name: str = "sealed-secrets-controller"
    chart_version: str = "2.17.3"
    plaintext_file: str = "config/secrets.local.yaml"
    cert_file: str | None = None
    sealed_dir: str = "k8s/sealed"


class Options(Strict):
    """Opt-in components."""

    longhorn: bool = False
    velero: bool = False


class HomelabConfig(Strict):
    """The whole homelab, as one document."""

    name: DnsName = "homelab"
    target: Target = "lima"
    kube_context: str | None = None
    kubeconfig: str | None = None
    domain: str = "home.example.com"
    state_dir: str = ".homelab"
    host: Host = Host()
    network: Network = Network()
    ssh: SshAccess = SshAccess()
    lima: Lima = Lima()
    terraform: Terraform = Terraform()
    nodes: list[Node] = Field(default_factory=list)
    k3s: K3s = K3s()
    metallb: MetalLB = MetalLB()
    ingress: Ingress = Ingress()
    cloudflare: Cloudflare = Cloudflare()
    tls: Tls = Tls()
    gitops: GitOps = GitOps()
    monitoring: Monitoring = Monitoring()
    lm_studio: LmStudio = LmStudio()
    apps: dict[str, App] = Field(default_factory=dict)
    backup: Backup = Backup()
    secrets: Secrets = Secrets()
    options: Options = Options()

    @property
    def server(self) -> Node:
        return next(n for n in self.nodes if n.role == "server")

    @property
    def agents(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "agent"]

    def context_name(self) -> str:
        """The kubeconfig context this homelab's cluster layers act on."""
        if self.kube_context:
            return self.kube_context
        return f"{self.name}-sandbox" if self.target == "sandbox" else self.name
