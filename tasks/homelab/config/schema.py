"""The typed schema of ``config/homelab.yaml``.

Every field is typed with the kind of value it holds (``kinds``, ``urls``):
the kind's validator rejects a bad value at load time, naming the key path.
Rules that relate several fields (pool inside the subnet, unique hostnames,
private paths) live in ``checks.py`` so that each problem names its own key.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from homelab.config.kinds import (
    CIDR,
    AbsolutePath,
    ChartVersion,
    Command,
    ContainerEnvName,
    ContainerPath,
    ContextName,
    CpuAmount,
    CronSchedule,
    DnsLabel,
    Email,
    Fqdn,
    GitRef,
    ImageReference,
    Int,
    InterfaceName,
    IPv4,
    K3sOption,
    K3sVersion,
    KubeName,
    KubeSubdomain,
    LabelKey,
    LabelValue,
    PathText,
    Port,
    PosixUser,
    PrometheusDuration,
    ReleaseTag,
    RepoPath,
    SecretEnv,
    SecretFile,
    SecretKeychain,
    Size,
    SqliteFile,
    Taint,
    Text,
    TunnelName,
    VolumeSubPath,
)
from homelab.config.urls import (
    ApiEndpoint,
    DownloadUrl,
    GitUrl,
    ManifestSource,
    NotifyApi,
    PingUrl,
    ResticRepository,
    VmImage,
)
from homelab.core import pins
from homelab.core.secret_refs import SecretLocation

Target = Literal["lima", "sandbox", "k3d", "existing"]
Arch = Literal["aarch64", "x86_64"]
Item = TypeVar("Item")
# What an owner may accept when publishing an app (App.accept_risks; the contracts say which apply to which image).
Risk = Literal["first-visitor", "bulk-media"]


def _unique(items: list[Item]) -> list[Item]:
    repeated = sorted({str(item) for item in items if items.count(item) > 1})
    if repeated:
        raise ValueError(f"lists {', '.join(repr(r) for r in repeated)} more than once")
    return items


Unique = AfterValidator(_unique)


class Strict(BaseModel):
    """Base for every section: unknown or misspelled keys are errors."""

    # hide_input_in_errors: a ValidationError printed anywhere never shows a value.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class SecretRef(Strict):
    """Where a secret lives. Exactly one of ``file``, ``env``, ``keychain``."""

    file: SecretFile | None = None
    env: SecretEnv | None = None
    keychain: SecretKeychain | None = None

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
    socket_vmnet_path: AbsolutePath = "/opt/socket_vmnet/bin/socket_vmnet"
    # The Mac's own address on the home LAN (give it a DHCP reservation on the router). In shared mode the
    # LAN reaches the homelab only through it: lan_dns answers every app hostname with it, and the Mac
    # forwards its ports 53, 80 and 443 to the DNS and gateway pool addresses (homelab.net.forwarder).
    lan_ip: IPv4 | None = None
    # Kept for the host itself when the Lima nodes are sized (homelab.host.sizing): macOS's own needs plus
    # LM Studio's loaded model. The nodes' memory together may use the rest, and no more.
    reserved_memory: Size = "6GiB"
    # CPUs kept for the host: a node may have at most the host's CPUs less these. vCPUs are time-shared
    # threads, so the nodes together may have more (said, not refused); memory is not shared that way.
    reserved_cpus: Annotated[Int, Field(ge=0, le=64)] = 0


class DhcpRange(Strict):
    """An inclusive range of addresses a DHCP server hands out."""

    start: IPv4
    end: IPv4


class Network(Strict):
    """The node network: socket_vmnet's shared (NAT) network on the Mac, or the home LAN itself when bridged."""

    subnet: CIDR = "192.168.105.0/24"
    gateway: IPv4 = "192.168.105.1"
    # resolv.conf uses at most three nameservers.
    dns: Annotated[list[IPv4], Unique] = Field(default_factory=lambda: ["192.168.105.1"], min_length=1, max_length=3)
    # The last address socket_vmnet's DHCP hands out (its --vmnet-dhcp-end; the range starts after the
    # gateway). It must stay below the node addresses and the MetalLB pool; the doctor compares it with
    # the running socket_vmnet. Unset: not managed (socket_vmnet's own default runs to .254).
    dhcp_end: IPv4 | None = None
    # The real home LAN (the router's network) that the apps' `lan` egress reaches. Unset: network.subnet
    # when lima.mode is bridged (the nodes sit on the LAN); required in shared mode for an app with `lan`
    # egress, since network.subnet is then the Mac's NAT network, not the home LAN.
    lan: CIDR | None = None
    # The home router's DHCP range (bridged mode: the router, not socket_vmnet, hands out LAN addresses).
    # The nodes, the MetalLB pool and the LAN DNS address must stay out of it; validation checks that.
    router_dhcp: DhcpRange | None = None

    def lan_cidr(self, bridged: bool) -> str | None:
        """The home LAN's CIDR: ``lan``, else the node subnet when bridged (it is the LAN), else unknown."""
        return self.lan or (self.subnet if bridged else None)


class SshAccess(Strict):
    """How the toolkit reaches a node over SSH."""

    user: PosixUser = "homelab"
    port: Port = 22
    private_key: PathText = "~/.ssh/homelab_ed25519"
    public_key: PathText = "~/.ssh/homelab_ed25519.pub"


class Node(Strict):
    """One K3S node: a Lima VM on the Mac, or an existing Linux host over SSH."""

    name: DnsLabel
    role: Literal["server", "agent"]
    provider: Literal["lima", "ssh"] = "lima"
    ip: IPv4
    cpus: Annotated[Int, Field(ge=1, le=64)] = 2
    memory: Size = "4GiB"
    # What K3S and the guest system keep of that memory, away from pods; unset: 1536MiB on a server, 512MiB on an
    # agent (K3S's resource profiling, homelab.apps.sizing). The apps' memory requests must fit the rest.
    reserved_memory: Size | None = None
    disk: Size = "40GiB"
    ssh_port: Port | None = None
    ssh_user: PosixUser | None = None
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    taints: Annotated[list[Taint], Unique] = Field(default_factory=list)


class Lima(Strict):
    """Settings shared by every Lima VM (rendered into ``lima/`` templates)."""

    vm_type: Literal["vz", "qemu"] = "vz"
    arch: Arch = "aarch64"
    images: dict[Arch, VmImage] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "aarch64": "https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-arm64.img",
            "x86_64": "https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img",
        }
    )
    socket: AbsolutePath = "/var/run/socket_vmnet"
    interface: InterfaceName = "lima0"
    # socket_vmnet: the Mac's shared network (the host reaches every node and MetalLB address).
    # user-v2: Lima's own user-mode network, for Linux hosts (socket_vmnet is macOS only): the VMs
    # reach each other and the host; the host reaches each node through Lima's forwarded SSH port
    # (nodes[].ssh_port on 127.0.0.1).
    network: Literal["socket_vmnet", "user-v2"] = "socket_vmnet"
    # socket_vmnet's mode (its --vmnet-mode; https://github.com/lima-vm/socket_vmnet#bridged-mode). shared:
    # a NAT network only the Mac reaches. bridged: the VMs join the LAN of bridge_interface, so the nodes
    # and the MetalLB pool are home-LAN addresses; there the router is the gateway and runs DHCP (Lima's
    # networks.yaml: a bridged network has no gateway of its own). Run a socket_vmnet with
    # --vmnet-mode=bridged --vmnet-interface=<bridge_interface> and set lima.socket to its socket.
    mode: Literal["shared", "bridged"] = "shared"
    bridge_interface: InterfaceName = "en0"
    # QEMU's accelerator on a Linux host: auto uses KVM when /dev/kvm is a usable Intel/AMD KVM, else TCG.
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    # A directory made by scripts/build-guest-image.sh (disk.qcow2, vmlinuz, initrd.img): Lima boots
    # its kernel directly. For Linux hosts that cannot download a cloud image; replaces images[arch].
    guest_image: PathText | None = None


class Terraform(Strict):
    """Which binary drives the VM lifecycle module."""

    binary: Literal["terraform", "tofu"] = "terraform"
    parallelism: Annotated[Int, Field(ge=1, le=32)] = 3


class K3s(Strict):
    """K3S on the nodes. Options are written to /etc/rancher/k3s/config.yaml, not passed as flags."""

    version: K3sVersion = Field(default_factory=lambda: pins.load().k3s_version)  # versions.toml
    datastore: Literal["sqlite", "etcd"] = "sqlite"
    flannel_backend: Literal["vxlan", "host-gw", "wireguard-native", "none"] = "vxlan"
    install_method: Literal["script", "airgap"] = "script"
    installer_url: DownloadUrl = Field(default_factory=lambda: pins.load().k3s_installer)
    installer_file: PathText | None = None
    airgap_binary: PathText | None = None
    airgap_images: PathText | None = None
    token: SecretRef = SecretRef(file="~/.config/homelab/k3s-token")
    api_endpoint: ApiEndpoint | None = None
    extra_server_config: dict[K3sOption, Text] = Field(default_factory=dict)
    min_free_disk: Size = "5GiB"
    drain_timeout: Annotated[Int, Field(ge=5, le=86400)] = 300  # seconds, at most a day
    ready_timeout: Annotated[Int, Field(ge=5, le=86400)] = 300  # seconds an upgraded node may take to be Ready again


class IpPool(Strict):
    start: IPv4
    end: IPv4


class MetalLB(Strict):
    enabled: bool = True
    chart_version: ChartVersion = Field(default_factory=lambda: pins.load().chart("metallb").version)
    pool: IpPool = IpPool(start="192.168.105.50", end="192.168.105.99")


class LanDns(Strict):
    """The home LAN's DNS server for ``domain`` (CoreDNS on a MetalLB address; ``homelab.net.dns``).

    It answers every routed hostname with the address that serves it at home and
    nothing else: point the router's DNS (or a Pi-hole conditional forward for
    ``domain``) at ``address``.
    """

    enabled: bool = False
    address: IPv4 = "192.168.105.53"  # inside metallb.pool, not ingress.load_balancer_ip


def _not_ingress_nginx(version: str) -> str:
    """Refuse an ingress-nginx chart version: the key now pins the Traefik chart.

    ingress-nginx's charts are 4.x; Traefik's have been 10.0 and above since
    Traefik v2.5 (https://github.com/traefik/traefik-helm-chart releases).
    """
    major = version.lstrip("v").split(".")[0]
    if major.isdigit() and int(major) < 10:
        raise ValueError(
            f"{version} is an ingress-nginx chart version, but the edge is now Traefik (chart traefik from "
            f"{pins.load().chart('traefik').repository}): remove ingress.chart_version to use "
            f"{pins.load().chart('traefik').version}, or set a traefik chart version"
        )
    return version


class Ingress(Strict):
    """The edge: Traefik, the Gateway API controller and proxy, on ``load_balancer_ip`` (a MetalLB address)."""

    enabled: bool = True
    chart_version: Annotated[ChartVersion, AfterValidator(_not_ingress_nginx)] = Field(
        default_factory=lambda: pins.load().chart("traefik").version
    )
    load_balancer_ip: IPv4 = "192.168.105.50"


class Cloudflare(Strict):
    """Cloudflare Tunnel (outbound only) and the DNS-01 API token."""

    tunnel_enabled: bool = True
    tunnel_name: TunnelName = "homelab"
    zone: Fqdn | None = None  # the Cloudflare zone holding domain; default: domain's last two labels
    tunnel_credentials: SecretRef = SecretRef(file="~/.config/homelab/cloudflared.json")
    api_token: SecretRef = SecretRef(env="CLOUDFLARE_API_TOKEN")

    def zone_of(self, domain: str) -> str:
        return self.zone or ".".join(domain.split(".")[-2:])


class Tls(Strict):
    """cert-manager with Let's Encrypt wildcard certificates via DNS-01."""

    chart_version: ChartVersion = Field(default_factory=lambda: pins.load().chart("cert-manager").version)
    email: Email = "admin@example.com"
    issuer: Literal["letsencrypt-staging", "letsencrypt-prod"] = "letsencrypt-prod"


class GitOps(Strict):
    """ArgoCD app-of-apps; Argo CD manages itself from ``install_manifest``, the file it is bootstrapped from."""

    repo_url: GitUrl = "https://github.com/example/homelab.git"
    revision: GitRef = "main"
    path: RepoPath = "k8s"
    repo_credentials: SecretRef | None = None  # a private repository: its ssh key, or an https token
    repo_username: Text = "git"  # who the https token belongs to (GitHub accepts any name with a token)
    argocd_version: ReleaseTag = Field(default_factory=lambda: pins.load().argocd_version)  # the sandbox runs it too
    install_manifest: ManifestSource = Field(default_factory=lambda: pins.load().argocd_install_manifest)


class Telegram(Strict):
    bot_token: SecretRef = SecretRef(env="TELEGRAM_BOT_TOKEN")
    chat_id: Int = 0


class Monitoring(Strict):
    enabled: bool = True
    chart_version: ChartVersion = Field(default_factory=lambda: pins.load().chart("kube-prometheus-stack").version)
    retention: PrometheusDuration = "15d"
    storage: Size = "20GiB"
    grafana_hostname: DnsLabel = "grafana"
    grafana_public: bool = False  # true: also through the tunnel; its login is always a generated password
    # Grafana's admin password (user admin), sealed into the Secret its chart reads (never the chart's default).
    # Unset: the toolkit generates one on the first inv up into <state_dir>/grafana-admin-password (0600) and
    # reuses it after; inv secrets.grafana says where. A reference here is used as is (file, env or keychain).
    grafana_admin_password: SecretRef | None = None
    telegram: Telegram = Telegram()


class LmStudio(Strict):
    """LM Studio runs bare-metal on the Mac; apps reach it by an ExternalName."""

    host: IPv4 = "192.168.105.1"  # on the node network, not loopback (checks.py)
    port: Port = 1234


class App(Strict):
    """One catalog entry: everything the renderer needs for an app.

    What the app's image itself requires (port, paths it writes, user) is its
    contract (``homelab.apps.contracts``); validation holds each entry to it.
    """

    enabled: bool = True  # false keeps an entry in the catalog without deploying it (opt-in apps)
    image: ImageReference
    port: Port
    hostname: DnsLabel  # the app is served at <hostname>.<domain>
    # Private by default: every routed app is served to the home LAN through the gateway at <hostname>.<domain>;
    # public: true also routes it through the Cloudflare tunnel, from the internet (homelab.apps.exposure).
    public: bool = False
    routed: bool = True  # false: no route at all, reachable only in-cluster (a bot that only calls out)
    # Risks of publishing it that its image's contract names and the owner accepts (homelab.apps.contracts):
    # first-visitor (whoever reaches it first takes it over), bulk-media (video or bulk files through the tunnel).
    accept_risks: Annotated[list[Risk], Unique] = Field(default_factory=list)
    storage: Size | None = "1GiB"
    storage_class: KubeSubdomain = "local-path"
    replicas: Annotated[Int, Field(ge=0, le=20)] = 1
    critical: bool = False
    # Requests and limits: unset, each comes from the image's contract, measured or documented figures with
    # their sources (homelab.apps.contracts.resources_for); a value here wins over the contract's. No CPU limit
    # unless set: a limit throttles an app that has idle cores beside it, and a request already shares them fairly.
    cpu_request: CpuAmount | None = None
    cpu_limit: CpuAmount | None = None
    memory_request: Size | None = None
    memory_limit: Size | None = None
    env: dict[ContainerEnvName, Text] = Field(default_factory=dict)
    secrets: dict[ContainerEnvName, SecretRef] = Field(default_factory=dict)
    # internet: the public internet; lan: network.lan (devices on the home network); lm-studio: its port on the Mac
    egress: Annotated[list[Literal["internet", "lan", "lm-studio"]], Unique] = Field(default_factory=list)
    # Databases at the volume's top, by engine, for images without a contract (a contract's own are known:
    # homelab.apps.volume_data); each is copied consistently while the app runs, never read by tar.
    sqlite_databases: Annotated[list[SqliteFile], Unique] = Field(default_factory=list)
    bolt_databases: Annotated[list[SqliteFile], Unique] = Field(default_factory=list)
    mount_path: ContainerPath = "/data"
    mounts: dict[ContainerPath, VolumeSubPath] = Field(default_factory=dict)  # more paths on the same volume
    host_network: bool = False  # the node's network (mDNS/SSDP discovery); NetworkPolicies no longer apply
    non_root: bool = True
    run_as_user: Annotated[Int, Field(ge=0, le=2**31 - 1)] = 1000
    quiesce: list[Command] = Field(default_factory=list)


class Retention(Strict):
    daily: Annotated[Int, Field(ge=0, le=10000)] = 7
    weekly: Annotated[Int, Field(ge=0, le=10000)] = 4
    monthly: Annotated[Int, Field(ge=0, le=10000)] = 6


# restic's documented variables for the remote backends an offsite copy may use
# (https://restic.readthedocs.io/en/stable/040_backup.html#environment-variables), by backend.
OFFSITE_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    "b2": ("B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"),
    "rest": ("RESTIC_REST_USERNAME", "RESTIC_REST_PASSWORD"),
    "sftp": (),  # restic runs ssh: its keys and known_hosts are ssh's own
}
OFFSITE_REQUIRED: dict[str, tuple[str, ...]] = {
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    "b2": ("B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"),
}
OffsiteCredential = Literal[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "B2_ACCOUNT_ID",
    "B2_ACCOUNT_KEY",
    "RESTIC_REST_USERNAME",
    "RESTIC_REST_PASSWORD",
]


class Offsite(Strict):
    """A second restic repository away from this machine; every run copies its snapshot there.

    A backup on the same SSD as the VMs is lost with the Mac; this one is not.
    """

    repository: ResticRepository
    password: SecretRef | None = None  # default: backup.password
    credentials: dict[OffsiteCredential, SecretRef] = Field(default_factory=dict)
    copy_timeout: Annotated[Int, Field(ge=5, le=86400)] = 4 * 3600  # seconds any offsite call may take
    region: DnsLabel = "us-east-1"  # s3 only; most S3-compatible servers ignore it

    @property
    def backend(self) -> str:
        return self.repository.partition(":")[0]

    @model_validator(mode="after")
    def _away_and_complete(self) -> Offsite:
        backend = self.backend
        if self.repository.startswith(("/", "~")) or backend == "local":
            raise ValueError(
                "repository: an offsite copy on this machine is lost with it; use s3:, b2:, sftp: or rest:"
            )
        if backend not in OFFSITE_CREDENTIALS:
            raise ValueError(
                f"repository: the {backend}: backend is not offered for offsite copies; use s3:, b2:, sftp: or rest:"
            )
        location = self.repository.partition(":")[2]
        if "@" in location.split("/")[2 if "://" in location else 0] and backend in ("s3", "rest"):
            raise ValueError(
                "repository: holds a user name or password; put them in credentials "
                f"({', '.join(OFFSITE_CREDENTIALS[backend][:2])}) as secret references"
            )
        scheme, _, rest = location.partition("://")
        host = rest.split("/")[0].rpartition(":")[0] or rest.split("/")[0]
        if scheme == "http" and host not in ("127.0.0.1", "localhost", "[::1]"):
            raise ValueError("repository: plain http sends the backups' keys and data in the clear; use https://")
        foreign = sorted(set(self.credentials) - set(OFFSITE_CREDENTIALS[backend]))
        if foreign:
            raise ValueError(f"credentials: {', '.join(foreign)} is not read by restic's {backend}: backend")
        missing = [name for name in OFFSITE_REQUIRED.get(backend, ()) if name not in self.credentials]
        if missing:
            raise ValueError(
                f"credentials: the {backend}: backend needs {', '.join(missing)}; "
                f"add credentials.{missing[0]}: {{file: ...}} (a file only you can read)"
            )
        return self


class Velero(Strict):
    """Velero's scheduled backups of the cluster's objects (options.velero), kept in backup.offsite's S3 store.

    The owner's choices; the rest (endpoint, bucket, region, credentials) comes from
    backup.offsite, so one S3 store and one set of keys serve both (homelab.backup.velero).
    """

    schedule: CronSchedule | None = None  # default: the first whole hour 2 or more hours before backup.schedule
    ttl_hours: Annotated[Int, Field(ge=1, le=87600)] = 720  # how long Velero keeps each backup (30 days)
    namespaces: Annotated[list[KubeName], Unique] | None = None  # default: every deployed app
    prefix: KubeName = "velero"  # Velero's folder in the offsite bucket, beside restic's
    max_age_hours: Annotated[Int, Field(ge=1, le=8760)] = 26  # alert when the last Completed backup is older
    node_agent_memory_request: Size = "256MiB"
    node_agent_memory_limit: Size = "1GiB"  # Kopia holds its indexes in memory while it uploads


class Backup(Strict):
    """restic backups, run from cron."""

    repository: ResticRepository = "/var/backups/homelab/restic"
    password: SecretRef = SecretRef(file="~/.config/homelab/restic-password")
    schedule: CronSchedule = "0 3 * * *"
    retention: Retention = Retention()
    keep_verified: Annotated[Int, Field(ge=1, le=10000)] = 3
    notify_on_success: bool = False
    notify_api: NotifyApi = "https://api.telegram.org"
    deadman_url: PingUrl | None = None
    max_age_hours: Annotated[Int, Field(ge=1, le=8760)] = 26  # at most a year
    verify_read_percent: Annotated[Int, Field(ge=1, le=100)] = 10
    components: Annotated[list[Literal["config", "cluster", "sealed-keys", "datastore", "volumes"]], Unique] = Field(
        default_factory=lambda: ["config", "cluster", "sealed-keys", "datastore", "volumes"]  # type: ignore[arg-type]
    )
    offsite: Offsite | None = None
    velero: Velero = Velero()  # used when options.velero is on

    @model_validator(mode="after")
    def _offsite_is_another_repository(self) -> Backup:
        if self.offsite is not None and self.offsite.repository.rstrip("/") == self.repository.rstrip("/"):
            raise ValueError("offsite.repository: is backup.repository itself; a copy needs a second repository")
        return self


class Secrets(Strict):
    """Sealed Secrets: plaintext only in a git-ignored file or in references."""

    controller_namespace: DnsLabel = "kube-system"
    controller_name: KubeName = "sealed-secrets-controller"
    chart_version: ChartVersion = Field(default_factory=lambda: pins.load().chart("sealed-secrets").version)
    plaintext_file: PathText = "config/secrets.local.yaml"
    cert_file: PathText | None = None
    sealed_dir: PathText = "k8s/sealed"


class Media(Strict):
    """One media directory shared by apps (Plex reads what qBittorrent downloads).

    Apps live in namespaces of their own, and a claim belongs to one namespace,
    so the share is a directory on one node that every listed app mounts, and
    those apps run on that node. Not backed up: media can be fetched again.
    """

    enabled: bool = False
    node: KubeName | None = None  # default: the first agent (the server when there is none)
    host_path: AbsolutePath = "/var/lib/homelab/media"
    mounts: dict[KubeName, ContainerPath] = Field(default_factory=dict)  # app -> where it sees the directory


class Options(Strict):
    """Opt-in components."""

    longhorn: bool = False
    # Longhorn's replica count; default 1 when every node is a Lima VM on the Mac's one SSD (replicas on one
    # disk protect nothing against it and multiply writes), else 3 capped at the node count (storage/longhorn.py)
    longhorn_replicas: Annotated[Int, Field(ge=1, le=3)] | None = None
    velero: bool = False


class HomelabConfig(Strict):
    """The whole homelab, as one document."""

    name: DnsLabel = "homelab"
    target: Target = "lima"
    kube_context: ContextName | None = None
    kubeconfig: PathText | None = None
    domain: Fqdn = "home.example.com"
    state_dir: PathText = ".homelab"
    host: Host = Host()
    network: Network = Network()
    ssh: SshAccess = SshAccess()
    lima: Lima = Lima()
    terraform: Terraform = Terraform()
    nodes: list[Node] = Field(default_factory=list)
    k3s: K3s = K3s()
    metallb: MetalLB = MetalLB()
    ingress: Ingress = Ingress()
    lan_dns: LanDns = LanDns()
    cloudflare: Cloudflare = Cloudflare()
    tls: Tls = Tls()
    gitops: GitOps = GitOps()
    monitoring: Monitoring = Monitoring()
    lm_studio: LmStudio = LmStudio()
    apps: dict[KubeName, App] = Field(default_factory=dict)  # the name is the app's namespace
    media: Media = Media()
    backup: Backup = Backup()
    secrets: Secrets = Secrets()
    options: Options = Options()

    @model_validator(mode="before")
    @classmethod
    def _catalog_images(cls, data: object) -> object:
        """An app entry without ``image`` runs the catalog's pinned image (``versions.toml`` [images])."""
        if not isinstance(data, dict) or not isinstance(data.get("apps"), dict):
            return data
        images = pins.load().images
        apps = {
            name: {**entry, "image": images[name]}
            if isinstance(entry, dict) and "image" not in entry and isinstance(name, str) and name in images
            else entry
            for name, entry in data["apps"].items()
        }
        return {**data, "apps": apps}

    @model_validator(mode="after")
    def _longhorn_replicas_fit(self) -> HomelabConfig:
        wanted = self.options.longhorn_replicas
        if wanted is not None and self.nodes and wanted > len(self.nodes):
            raise ValueError(
                f"options.longhorn_replicas: {wanted} replicas need {wanted} nodes (Longhorn keeps each replica "
                f"on another node) and there are {len(self.nodes)}; lower it to {len(self.nodes)} or add nodes"
            )
        return self

    @property
    def deployed_apps(self) -> dict[str, App]:
        """The catalog entries that are deployed (``enabled``), by name; what every layer acts on."""
        return {name: app for name, app in self.apps.items() if app.enabled}

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
