"""What each app's upstream image requires, written down once and checked.

Pods never run on the sandbox, so nothing in a test run would notice that an
image listens on another port, writes a path that is not on its volume, must
start as root, or refuses proxied requests without a setting. Each contract
records those facts with the upstream file or page they come from; the
renderer satisfies them (``env_for``, ``init_containers``, ``scratch_paths``)
and the config checks reject a catalog entry that breaks one (``problems``),
naming the key to change.

Contracts are keyed by image repository, so a catalog entry that runs an image
we know is held to it whatever the entry is called; images without a contract
(your own) are rendered from the entry alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from homelab.apps import volume_data
from homelab.apps.volume_data import Engine
from homelab.config.image_ref import repository
from homelab.config.kinds import size_mib
from homelab.core.errors import Problem

if TYPE_CHECKING:
    from homelab.config.schema import App, HomelabConfig

Egress = Literal["internet", "lan", "lm-studio"]
K3S_DEFAULT_POD_CIDR = "10.42.0.0/16"

# Cloudflare's Service-Specific Terms, "Content Delivery Network (Free, Pro, or Business)": without one of its
# paid services (Stream, Images, the Developer Platform), serving video or a disproportionate share of pictures,
# audio or other large files through the CDN may get the account limited or disabled; the tunnel's traffic is
# proxied through that CDN. The page that says what happens then: Cloudflare's "Delivering Videos with Cloudflare".
CLOUDFLARE_TERMS = "https://www.cloudflare.com/service-specific-terms-application-services/"
CLOUDFLARE_VIDEO = (
    "https://developers.cloudflare.com/fundamentals/reference/policies-compliances/delivering-videos-with-cloudflare/"
)


@dataclass(frozen=True)
class Takeover:
    """How the first visitor of a fresh install takes the app over, and the setting that closes that door.

    ``closed_by`` maps container settings to the value that closes it (any one of them
    suffices, compared without case); empty when no setting can, and only finishing the
    setup from the LAN before publishing does (then the owner acknowledges the risk).
    """

    what: str
    closed_by: dict[str, str]
    source: str
    advice: str = ""  # what else the owner should know when closing it


@dataclass(frozen=True)
class Limits:
    """What the gateway allows one request to the app: its body, how long it may take, whether answers stream.

    ``max_body``: a size (``10MiB``) enforced by a Traefik Buffering middleware on the
    app's route; None leaves the body to the app. Buffering holds the whole response
    too (oxy's buffer, which Traefik's Middleware exposes without its switch to turn
    that off), so an app whose answers stream (``streams``: server-sent events,
    websockets, video, large downloads) never gets one. ``timeout``: a Gateway API
    duration for the route's ``timeouts.request`` ("0s": none, for streams).
    """

    max_body: str | None
    timeout: str
    streams: bool
    source: str


# Apps without a contract (your own image): small API bodies, no streams assumed, a minute per request
# (Traefik's own entry point read timeout, https://doc.traefik.io/traefik/reference/install-configuration/entrypoints/).
DEFAULT_LIMITS = Limits("100MiB", "60s", False, "default for an image without a contract")


@dataclass(frozen=True)
class Resources:
    """What the app's container asks the scheduler for, and the memory it may not pass; ``source`` backs each figure.

    ``memory_request`` is the app's steady use, measured or documented upstream: the
    scheduler places pods by it, so a token figure packs apps onto a node that then runs
    out and the kernel kills one. ``memory_limit`` is where the kernel stops it, above the
    request for peaks (a scan, a transcode, a big upload). No CPU limit: CPU is shared by
    the requests' weights, and a limit only throttles an app beside idle cores.
    """

    cpu_request: str
    memory_request: str
    memory_limit: str
    source: str


# An image without a contract (your own): a small service; set memory_request and memory_limit to what yours uses.
DEFAULT_RESOURCES = Resources("50m", "64MiB", "512MiB", "the toolkit's default for an image without a contract")


@dataclass(frozen=True)
class Sizing:
    """The requests and limits an app's container gets: the entry's own values, else its contract's."""

    cpu_request: str
    cpu_limit: str | None
    memory_request: str
    memory_limit: str
    source: str  # where the memory request comes from: "config" or the contract's source


@dataclass(frozen=True)
class Contract:
    """One image's requirements; ``source`` names where each fact was read."""

    source: str
    port: int
    writes: dict[str, str]  # container path -> what the image keeps there
    regenerated: frozenset[str] = frozenset()  # written paths it recreates at start: losing them loses nothing
    runs_as_root: bool = False  # its start script needs uid 0 (s6-overlay, chown, su-exec)
    root_unless_secret: str | None = None  # ...unless this setting comes from the app's secrets
    port_env: str | None = None  # the setting that moves the port, when the image has one
    reaches: dict[Egress, str] = field(default_factory=dict)  # egress it cannot work without -> why
    env: Callable[[str, App, HomelabConfig], dict[str, str]] | None = None  # settings it cannot serve without
    note: str = ""  # what a homelab owner should know that no field expresses
    needs: str = ""  # the settings it cannot serve without, and who provides them, for the one-line summary
    # What a backup must know (homelab.apps.volume_data): each database file and its engine, the paths
    # that are caches or logs (tar patterns; ``*`` also matches ``/``), and where those facts were read.
    databases: dict[str, Engine] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    backup_source: str = ""
    # Publishing it through the tunnel (App.public): a fresh install the first visitor can take over, and what it
    # serves that Cloudflare's terms keep off the tunnel (video, bulk files); each refused unless closed or accepted.
    takeover: Takeover | None = None
    bulk: str = ""
    limits: Limits = DEFAULT_LIMITS  # what its route allows a request (homelab.apps.render.app_route)
    resources: Resources = DEFAULT_RESOURCES  # its requests and memory limit (homelab.apps.render.container)


def pod_cidr(cfg: HomelabConfig) -> str:
    """The pod network: where proxied requests come from (the ingress controller's pods)."""
    return cfg.k3s.extra_server_config.get("cluster-cidr", K3S_DEFAULT_POD_CIDR).split(",")[0]


def _homepage_env(name: str, app: App, cfg: HomelabConfig) -> dict[str, str]:
    # Homepage >= 1.0 answers "Host validation failed" unless the Host header is listed.
    return {"HOMEPAGE_ALLOWED_HOSTS": f"{app.hostname}.{cfg.domain}"}


def _vaultwarden_env(name: str, app: App, cfg: HomelabConfig) -> dict[str, str]:
    # DOMAIN must be the address clients use, scheme included: without it attachment downloads, e-mailed links
    # and WebAuthn/U2F (which needs https) break (.env.template, "Domain settings").
    # IP_HEADER (default X-Real-IP, .env.template "Client IP Header") names where the client's address is read
    # for its login rate limits and logs. Traefik sets X-Real-Ip to the hop that connected, cloudflared's pod for
    # tunnel traffic (pkg/middlewares/forwardedheaders); X-Forwarded-For starts with the visitor's address
    # (cloudflared's, which Traefik trusts from the pod network) or, from the LAN, the client's own (an
    # untrusted sender's header is dropped first), and Vaultwarden takes its first entry (src/auth.rs, ClientIp).
    return {"DOMAIN": f"https://{app.hostname}.{cfg.domain}", "IP_HEADER": "X-Forwarded-For"}


PLEX_DATA = "/config/Library/Application Support/Plex Media Server"
PLEX_DATABASES = ("com.plexapp.plugins.library.db", "com.plexapp.plugins.library.blobs.db")
# Home Assistant's own backup leaves these out (EXCLUDE_FROM_BACKUP): logs, TTS audio, its own backups.
HA_SKIP = tuple(
    f"/config/{p}" for p in ("*.log", "*.log.*", "tts/*", "backups/*.tar", "tmp_backups/*.tar", "*/__pycache__")
)

LINUXSERVER = "runs s6-overlay as root, which drops to PUID/PGID (https://docs.linuxserver.io/general/understanding-puid-and-pgid/)"

CONTRACTS: dict[str, Contract] = {
    "ghcr.io/gethomepage/homepage": Contract(
        source="https://gethomepage.dev/installation/#homepage_allowed_hosts; src/skeleton copied into /app/config",
        port=3000,
        writes={"/app/config": "settings copied from its skeleton at start"},
        regenerated=frozenset({"/app/config"}),
        env=_homepage_env,
        needs="HOMEPAGE_ALLOWED_HOSTS = its hostname (rendered)",
        limits=Limits("1MiB", "30s", False, "a dashboard: reads its config, takes no uploads"),
        # A Next.js server that polls its widgets; the cluster template's pod was OOM-killed with only the default
        # widgets until its memory was raised.
        resources=Resources("50m", "128MiB", "512MiB", "https://github.com/onedr0p/cluster-template/pull/1140"),
    ),
    "ghcr.io/home-assistant/home-assistant": Contract(
        source="https://www.home-assistant.io/integrations/http/#reverse-proxies; image runs s6-overlay as root",
        port=8123,
        writes={"/config": "configuration.yaml, the recorder database, .storage"},
        runs_as_root=True,
        reaches={
            "internet": "integrations, weather, updates and cloud services",
            "lan": "devices on the home network",
        },
        note="discovery (mDNS, SSDP, DHCP) needs host_network: true; then NetworkPolicies no longer apply to it",
        takeover=Takeover(
            what="until onboarding is finished, its first page lets whoever opens it create the owner account",
            closed_by={},
            source="https://www.home-assistant.io/getting-started/onboarding/; home-assistant/core "
            "homeassistant/components/onboarding/views.py (UserOnboardingView needs no login while the user step "
            "is not done)",
            advice="finish onboarding from the LAN first (public: false), then publish it",
        ),
        needs="http.use_x_forwarded_for and trusted_proxies = the pod network (an init container adds them)",
        databases={"/config/home-assistant_v2.db": "sqlite"},  # the recorder, in WAL mode
        skip=HA_SKIP,
        backup_source="home-assistant/core homeassistant/components/backup/const.py (EXCLUDE_FROM_BACKUP, "
        "EXCLUDE_DATABASE_FROM_BACKUP); homeassistant/components/recorder (home-assistant_v2.db, WAL)",
        limits=Limits(
            None,
            "0s",
            True,
            "its frontend lives on a websocket (https://developers.home-assistant.io/docs/api/"
            "websocket/); camera streams; backup uploads of gigabytes",
        ),
        # A whole Home Assistant system wants 2 GB of RAM (its OS included); Core alone settles near 500 MB with a
        # few integrations, and grows with each integration and the recorder's history.
        resources=Resources(
            "100m",
            "512MiB",
            "2GiB",
            "https://www.home-assistant.io/installation/generic-x86-64/ (2 GB RAM for the system); "
            "https://github.com/mpospisil/gleanvolt/wiki/Deployment (Core measured near 485 MB steady)",
        ),
    ),
    "lscr.io/linuxserver/plex": Contract(
        source=f"https://docs.linuxserver.io/images/docker-plex/; {LINUXSERVER}",
        port=32400,
        writes={"/config": "the Plex library database and metadata"},
        runs_as_root=True,
        reaches={"internet": "plex.tv sign-in and claim"},
        bulk="video streams",
        databases={f"{PLEX_DATA}/Plug-in Support/Databases/{db}": "sqlite" for db in PLEX_DATABASES},
        skip=tuple(f"{PLEX_DATA}/{cache}" for cache in ("Cache", "Codecs", "Crash Reports", "Diagnostics", "Logs")),
        limits=Limits(None, "0s", True, "streams video"),
        # Plex asks for 2 GB of RAM on the machine that runs the server; idle it uses a few hundred MiB, and each
        # transcode adds its own (the limit leaves room for a few).
        resources=Resources(
            "200m",
            "512MiB",
            "4GiB",
            "https://support.plex.tv/articles/200375666-plex-media-server-requirements/ (2 GB RAM)",
        ),
        backup_source="https://support.plex.tv/articles/201539237-backing-up-plex-media-server-data/ (the Cache "
        "folder is not needed); https://support.plex.tv/articles/202915258-where-is-the-plex-media-server-data-"
        "directory-located/ (linuxserver: /config/Library/Application Support/Plex Media Server)",
    ),
    "lscr.io/linuxserver/qbittorrent": Contract(
        source=f"https://docs.linuxserver.io/images/docker-qbittorrent/; {LINUXSERVER}",
        port=8080,
        port_env="WEBUI_PORT",
        writes={"/config": "qBittorrent.conf and torrent state"},
        runs_as_root=True,
        reaches={"internet": "trackers and peers"},
        bulk="downloaded files (its web UI and the files it fetches)",
        # Resume data is BT_backup/*.fastresume by default; torrents.db when "resume data storage" is SQLite.
        databases={"/config/qBittorrent/torrents.db": "sqlite"},
        skip=("/config/qBittorrent/logs", "/config/.cache"),
        # The Web UI's uploads are .torrent files, which qBittorrent itself caps at 100 MiB (MAX_TORRENT_SIZE,
        # qbittorrent/qBittorrent#10464); its answers are small JSON.
        limits=Limits("100MiB", "60s", False, "qbittorrent/qBittorrent#10464 (MAX_TORRENT_SIZE 100 MiB)"),
        # Its disk cache grows with the torrents it serves until the memory it may use is full (libtorrent 2 maps
        # the files): the limit is what keeps that cache from taking the node.
        resources=Resources(
            "100m",
            "256MiB",
            "1GiB",
            "https://github.com/qbittorrent/qBittorrent/issues/13699 (the cache fills its container's limit); "
            "https://github.com/linuxserver/docker-qbittorrent/issues/311 (grows until OOM without one)",
        ),
        backup_source="qBittorrent src/base/bittorrent/bencoderesumedatastorage.cpp (BT_backup) and "
        "dbresumedatastorage.cpp (torrents.db, the SQLite resume data storage); linuxserver: profile under /config",
    ),
    "vaultwarden/server": Contract(
        source="https://github.com/dani-garcia/vaultwarden/wiki/Configuration-overview (ROCKET_PORT, DATA_FOLDER); "
        "dani-garcia/vaultwarden .env.template (DOMAIN, SIGNUPS_ALLOWED)",
        port=80,
        port_env="ROCKET_PORT",
        env=_vaultwarden_env,
        takeover=Takeover(
            what="SIGNUPS_ALLOWED defaults to true: anyone who reaches it can register an account and store data",
            closed_by={"SIGNUPS_ALLOWED": "false"},
            source="dani-garcia/vaultwarden .env.template (SIGNUPS_ALLOWED=true by default; a value saved in the "
            "admin page's config.json overrides the environment)",
            advice="create your account from the LAN first, or invite users from /admin (ADMIN_TOKEN)",
        ),
        writes={"/data": "db.sqlite3, rsa_key.pem, attachments"},
        databases={"/data/db.sqlite3": "sqlite"},
        skip=("/data/icon_cache", "/data/tmp"),
        # Attachments up to 500 MB (Bitwarden's clients' cap, https://bitwarden.com/help/attachments/), checked by
        # Vaultwarden itself (ATTACHMENTS_*_LIMIT); live sync notifications ride a websocket (/notifications/hub).
        limits=Limits(None, "0s", True, "https://bitwarden.com/help/attachments/; /notifications/hub websocket"),
        # A Rust server: its maintainers measure about 12 MB with a handful of users and devices.
        resources=Resources(
            "20m",
            "64MiB",
            "256MiB",
            "https://github.com/dani-garcia/vaultwarden/issues/277 and /issues/645 (about 12 MB in use)",
        ),
        backup_source="https://github.com/dani-garcia/vaultwarden/wiki/Backing-up-your-vault (db.sqlite3 through "
        "SQLite's backup; icon_cache optional)",
    ),
    "filebrowser/filebrowser": Contract(
        source="filebrowser docker/common/defaults/settings.json and docker/alpine/init.sh (user 1000)",
        port=80,
        writes={
            "/srv": "the files it serves",
            "/database": "filebrowser.db (users, settings, shares)",
            "/config": "settings.json, copied from the image's defaults at start",
        },
        regenerated=frozenset({"/config"}),
        databases={"/database/filebrowser.db": "bolt"},
        bulk="whole files from /srv, downloads and uploads of any size",
        # Uploads come in chunks of 10 MB (filebrowser/filebrowser#5365, its tus chunk size), any file size in all;
        # downloads of any size stream back.
        limits=Limits(None, "0s", True, "filebrowser/filebrowser#5365 (10 MB upload chunks); downloads stream"),
        # A Go server, small at rest; previews of large images and zip downloads hold the file in memory, so the
        # limit is what bounds them.
        resources=Resources(
            "20m",
            "64MiB",
            "512MiB",
            "https://github.com/filebrowser/filebrowser/issues/2400 and /issues/1671 (memory grows with large "
            "images and archives)",
        ),
        backup_source="filebrowser (pinned release) docker/common/defaults/settings.json "
        "(database /database/filebrowser.db); cmd/utils.go opens it with storm.Open (BoltDB, storage/bolt)",
    ),
    "ghcr.io/open-webui/open-webui": Contract(
        source="open-webui backend/start.sh: writes .webui_secret_key next to itself unless WEBUI_SECRET_KEY is set",
        port=8080,
        port_env="PORT",
        writes={"/app/backend/data": "webui.db, uploads, vector store"},
        runs_as_root=True,
        root_unless_secret="WEBUI_SECRET_KEY",  # noqa: S106 - the setting's name, not a value
        reaches={"lm-studio": "the models it chats with"},
        needs="root, or WEBUI_SECRET_KEY in its secrets",
        takeover=Takeover(
            what="the first account to sign up on an empty database becomes its admin",
            closed_by={"ENABLE_SIGNUP": "false"},
            source="open-webui backend/open_webui/routers/auths.py signup(): role admin when there are no users, "
            "403 while ENABLE_SIGNUP is false; config.py: ENABLE_SIGNUP is a persistent setting (the env value "
            "seeds it at first start)",
            advice="create your admin account from the LAN first (Open WebUI then closes signups itself)",
        ),
        databases={
            "/app/backend/data/webui.db": "sqlite",  # DATABASE_URL's default
            "/app/backend/data/vector_db/chroma.sqlite3": "sqlite",  # the default vector store, Chroma
        },
        skip=("/app/backend/data/cache",),
        # Documents of any size (FILE_MAX_SIZE unset by default, backend/open_webui/config.py); answers stream as
        # server-sent events for as long as the model writes: no timeout, no buffering.
        limits=Limits(None, "0s", True, "open-webui backend/open_webui/config.py (FILE_MAX_SIZE); streamed answers"),
        # It loads a local embedding model and a speech-to-text model at start even when the chat model is
        # elsewhere (LM Studio here): 500 to 650 MB from a cold start, often past 1 GB in use.
        resources=Resources(
            "200m",
            "1GiB",
            "2GiB",
            "https://github.com/open-webui/open-webui/issues/2582 (500 MB cold, often above 1 GB); "
            "/issues/4188 (650 MB after a restart); https://github.com/open-webui/docs/pull/159 (the models it "
            "loads)",
        ),
        backup_source="open-webui backend/open_webui/env.py (DATA_DIR, DATABASE_URL sqlite:///DATA_DIR/webui.db) "
        "and config.py (CACHE_DIR = DATA_DIR/cache, CHROMA_DATA_PATH = DATA_DIR/vector_db)",
    ),
}


# Platform components the homelab renders itself (the rest come from their own charts, which hold their contracts).
PLATFORM: dict[str, Contract] = {
    "cloudflare/cloudflared": Contract(
        source="cloudflared Dockerfile: USER 65532, ENTRYPOINT cloudflared --no-autoupdate, TUNNEL_METRICS :2000 "
        "with /ready",
        port=2000,
        writes={},
        reaches={"internet": "Cloudflare's edge, outbound only"},
    ),
}
CLOUDFLARED_USER = 65532  # the image's nonroot user


def contract_for(app: App) -> Contract | None:
    return CONTRACTS.get(repository(app.image))


def limits_for(app: App) -> Limits:
    """What the gateway allows one request to the app: its image's contract, else the default."""
    contract = contract_for(app)
    return contract.limits if contract else DEFAULT_LIMITS


def resources_for(app: App) -> Sizing:
    """The app's requests and limits: each value the entry sets, else its image's contract, else the default."""
    contract = contract_for(app)
    figures = contract.resources if contract else DEFAULT_RESOURCES
    request = app.memory_request or figures.memory_request
    # An unset limit is never below the request: an owner who raises only the request gets a limit to match.
    limit = app.memory_limit or max(figures.memory_limit, request, key=size_mib)
    return Sizing(
        cpu_request=app.cpu_request or figures.cpu_request,
        cpu_limit=app.cpu_limit,
        memory_request=request,
        memory_limit=limit,
        source="config" if app.memory_request else figures.source,
    )


def listening_port(app: App, contract: Contract) -> int:
    """The port the image will listen on, after the app's settings."""
    moved = app.env.get(contract.port_env) if contract.port_env else None
    return int(moved) if moved and moved.isdigit() else contract.port


def volume_paths(app: App) -> list[str]:
    """Container paths backed by the app's volume."""
    return [app.mount_path, *app.mounts] if app.storage else []


def _covered(path: str, mounted: list[str]) -> bool:
    return any(PurePosixPath(path).is_relative_to(PurePosixPath(m)) for m in mounted)


def scratch_paths(app: App) -> list[str]:
    """Paths the image writes that no volume holds: an emptyDir each, so a non-root start can still write them."""
    contract = contract_for(app)
    if contract is None:
        return []
    return [path for path in contract.writes if not _covered(path, volume_paths(app))]


def env_for(name: str, app: App, cfg: HomelabConfig) -> dict[str, str]:
    """Settings the image cannot serve without, computed from the config (the entry's own env wins)."""
    contract = contract_for(app)
    if contract is None or contract.env is None:
        return {}
    return {k: v for k, v in contract.env(name, app, cfg).items() if k not in app.env}


def problems(name: str, app: App) -> list[Problem]:
    """Where the catalog entry breaks its image's contract, each at the key to change."""
    contract = contract_for(app)
    if contract is None:
        return []
    at, image = f"apps.{name}", repository(app.image)
    found = []
    port = listening_port(app, contract)
    if app.port != port:
        how = f" (set {contract.port_env} in env to move it)" if contract.port_env else ""
        found.append(Problem(f"{at}.port", f"{app.port} is not where {image} listens: {port}{how}"))
    if (
        app.non_root
        and contract.runs_as_root
        and not (contract.root_unless_secret and contract.root_unless_secret in app.secrets)
    ):
        instead = f", or give {contract.root_unless_secret} in {at}.secrets" if contract.root_unless_secret else ""
        found.append(
            Problem(f"{at}.non_root", f"{image} must start as root ({contract.source}); set non_root: false{instead}")
        )
    for path, what in contract.writes.items():
        if app.storage and not _covered(path, volume_paths(app)) and path not in contract.regenerated:
            found.append(
                Problem(
                    f"{at}.mounts",
                    f"{image} writes {path} ({what}), which is not on its volume: add {path} to {at}.mounts "
                    "or make it mount_path",
                )
            )
    for egress, why in contract.reaches.items():
        if egress not in app.egress and not app.host_network:
            found.append(Problem(f"{at}.egress", f"{image} must reach {egress} ({why}); add {egress!r} to egress"))
    return found + volume_data.problems(name, app)


def _closed(app: App, takeover: Takeover) -> bool:
    """Whether the entry's env sets one of the settings that close the first-visitor door."""
    return any(app.env.get(key, "").strip().lower() == value for key, value in takeover.closed_by.items())


def publishing_problems(name: str, app: App) -> list[Problem]:
    """What publishing the app through the tunnel (``public: true``) would expose, each at the key to change.

    A contract's first-visitor takeover is refused unless a closing setting is in
    ``env`` or ``accept_risks`` lists ``first-visitor``; its video or bulk files are
    refused unless ``accept_risks`` lists ``bulk-media``. An accepted risk the image
    does not have is named too, so a stale acknowledgement does not linger.
    """
    if not app.enabled:
        return []  # an entry kept off is published by nothing; it is judged when turned on
    contract = contract_for(app)
    at = f"apps.{name}"
    found = []
    if app.public and not app.routed:
        found.append(Problem(f"{at}.routed", "false leaves nothing to publish: set routed: true or public: false"))
    if contract is None:
        return found
    image = repository(app.image)
    takeover, accepted = contract.takeover, set(app.accept_risks)
    if app.public and takeover and not _closed(app, takeover) and "first-visitor" not in accepted:
        settings = " or ".join(f"{key}: {value!r}" for key, value in takeover.closed_by.items())
        close = f"set {settings} in {at}.env, " if settings else ""
        then = f" ({takeover.advice})" if takeover.advice else ""
        found.append(
            Problem(
                f"{at}.public",
                f"{image} through the tunnel lets the first visitor from the internet take it over: {takeover.what} "
                f"({takeover.source}); {close}keep it on the LAN with public: false{then}, or accept the risk with "
                f"{at}.accept_risks: [first-visitor]",
            )
        )
    if app.public and contract.bulk and "bulk-media" not in accepted:
        found.append(
            Problem(
                f"{at}.public",
                f"{image} serves {contract.bulk}: Cloudflare's terms forbid video and bulk files through the "
                f"tunnel without a paid service ({CLOUDFLARE_TERMS}, Content Delivery Network); keep it on the LAN "
                f"with public: false, or accept the risk with {at}.accept_risks: [bulk-media]",
            )
        )
    has = {"first-visitor": takeover is not None, "bulk-media": bool(contract.bulk)}
    for risk in app.accept_risks:
        if not has[risk]:
            found.append(Problem(f"{at}.accept_risks", f"{image} has no {risk} risk to accept; remove {risk!r}"))
    return found


def home_assistant_init(app: App, cfg: HomelabConfig) -> dict[str, object]:
    """An init container that makes Home Assistant trust the ingress controller's forwarded headers.

    Without ``use_x_forwarded_for`` and ``trusted_proxies`` it answers 400 to
    every proxied request. The block is added once, only when the file has no
    ``http:`` section of its own (yours is left alone); a missing configuration
    is first created by Home Assistant's own ``ensure_config`` script.
    """
    cidr = str(ipaddress.ip_network(pod_cidr(cfg), strict=False))
    return {
        "name": "trust-ingress-proxy",
        "image": app.image,
        "command": ["sh", "-c", TRUST_PROXY_SCRIPT],
        "env": [{"name": "CONFIG_DIR", "value": app.mount_path}, {"name": "POD_CIDR", "value": cidr}],
        "volumeMounts": [{"name": "data", "mountPath": app.mount_path}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


# Values come from the environment, never from the script text; tests run it with sh as is.
TRUST_PROXY_SCRIPT = (
    'set -e; cd "$CONFIG_DIR"; '
    '[ -f configuration.yaml ] || python3 -m homeassistant --script ensure_config --config "$CONFIG_DIR"; '
    "grep -q '^http:' configuration.yaml || "
    "printf '\\nhttp:\\n  use_x_forwarded_for: true\\n  trusted_proxies:\\n    - %s\\n' \"$POD_CIDR\" "
    ">> configuration.yaml"
)


def qbittorrent_init(app: App, cfg: HomelabConfig) -> dict[str, object]:
    """An init container that makes qBittorrent read the client's address from the gateway's X-Forwarded-For.

    Without reverse proxy support its Web UI sees every client as the gateway's pod,
    so its ban after failed logins (WebUI\\MaxAuthenticationFailCount) locks out everyone at
    once. Its Web UI options "Enable reverse proxy support" and "Trusted proxies list" are
    the ``WebUI\\ReverseProxySupportEnabled`` and ``WebUI\\TrustedReverseProxiesList`` keys of
    ``[Preferences]`` in qBittorrent.conf (qbittorrent/wiki, NGINX-Reverse-Proxy-for-Web-UI:
    the X-Forwarded-For header it recognizes). Added once, before the first start of a fresh
    volume or when the file lacks the first key; an owner's own value is left alone.
    """
    cidr = str(ipaddress.ip_network(pod_cidr(cfg), strict=False))
    return {
        "name": "trust-gateway-proxy",
        "image": app.image,
        "command": ["sh", "-c", QBITTORRENT_PROXY_SCRIPT],
        "env": [{"name": "CONFIG_DIR", "value": app.mount_path}, {"name": "POD_CIDR", "value": cidr}],
        "volumeMounts": [{"name": "data", "mountPath": app.mount_path}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


# Values come from the environment, never from the script text; tests run it with sh as is.
QBITTORRENT_PROXY_SCRIPT = (
    'set -e; conf="$CONFIG_DIR/qBittorrent/qBittorrent.conf"; mkdir -p "$CONFIG_DIR/qBittorrent"; touch "$conf"; '
    "grep -q '^WebUI.ReverseProxySupportEnabled=' \"$conf\" && exit 0; "
    "grep -q '^\\[Preferences\\]$' \"$conf\" || printf '[Preferences]\\n' >> \"$conf\"; "
    'awk -v cidr="$POD_CIDR" \'{ print } /^\\[Preferences\\]$/ && !done { '
    'print "WebUI\\\\ReverseProxySupportEnabled=true"; print "WebUI\\\\TrustedReverseProxiesList=" cidr; done = 1 }'
    '\' "$conf" > "$conf.new"; mv "$conf.new" "$conf"'
)


INIT_CONTAINERS: dict[str, Callable[[App, HomelabConfig], dict[str, object]]] = {
    "ghcr.io/home-assistant/home-assistant": home_assistant_init,
    "lscr.io/linuxserver/qbittorrent": qbittorrent_init,
}


def init_containers(app: App, cfg: HomelabConfig) -> list[dict[str, object]]:
    make = INIT_CONTAINERS.get(repository(app.image))
    return [make(app, cfg)] if make and app.storage else []


def one_line(app: App) -> str:
    """The contract in one line, for the manual's app table (docs/guide/apps.md) and ``apps.list``."""
    contract = contract_for(app)
    if contract is None:
        return "no contract (your own image)"
    user = "root" if contract.runs_as_root else "any uid"
    reach = ", ".join(contract.reaches) or "DNS only"
    line = f"port {contract.port}; writes {', '.join(contract.writes)}; runs as {user}; reaches {reach}"
    return f"{line}; needs {contract.needs}" if contract.needs else line
