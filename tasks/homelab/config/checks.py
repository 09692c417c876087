"""Rules that relate several config fields, each reported at its own key path."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from homelab.apps import contracts
from homelab.apps import sizing as app_sizing
from homelab.backup.velero import velero_problems
from homelab.config.image_ref import repository
from homelab.config.kinds import cpu_millicores, size_mib
from homelab.config.published import published_path_problems
from homelab.config.schema import HomelabConfig, SecretRef
from homelab.config.token_shapes import pasted_token_problems
from homelab.core.errors import Problem
from homelab.core.paths import resolve_in_project
from homelab.core.pins import Pins, minor_of
from homelab.core.pins import load as load_pins
from homelab.net.checks import lan_problems

# Namespaces the platform itself renders into (gitops/platform.py) or Kubernetes owns:
# an app of that name would put its default-deny NetworkPolicy into them.
RESERVED_NAMESPACES = frozenset(
    {
        "default",
        "argocd",
        "metallb-system",
        "traefik",
        "cert-manager",
        "cloudflared",
        "lan-dns",
        "monitoring",
        "lm-studio",
        "longhorn-system",
        "velero",
    }
)


def semantic_problems(cfg: HomelabConfig) -> list[Problem]:
    """Every cross-field problem in ``cfg``; empty when the config is coherent.

    Whether the apps' memory requests fit the nodes is judged last, on a config with
    no other problem: it renders the platform, which needs the rest to hold.
    """
    found = _field_problems(cfg)
    return found or app_sizing.problems(cfg)


def _field_problems(cfg: HomelabConfig) -> list[Problem]:
    return [
        *_network_problems(cfg),
        *_node_problems(cfg),
        *_pool_problems(cfg),
        *_app_problems(cfg),
        *_k3s_problems(cfg),
        *_private_path_problems(cfg),
        *published_path_problems(cfg),
        *pasted_token_problems(cfg),
        *_lm_studio_problems(cfg),
        *_lima_problems(cfg),
        *_dhcp_problems(cfg),
        *lan_problems(cfg),
        *velero_problems(cfg),
    ]


USER_V2_SUBNET = "192.168.104.0/24"  # Lima's user-v2 network (networks.yaml); its gateway and DNS are .2


def dhcp_collisions(cfg: HomelabConfig, end: str) -> list[str]:
    """Config addresses inside a DHCP range from after the gateway to ``end``: each names its key."""
    first, last = ipaddress.IPv4Address(cfg.network.gateway) + 1, ipaddress.IPv4Address(end)
    inside = [
        f"nodes[{i}].ip {n.ip}"
        for i, n in enumerate(cfg.nodes)
        if n.provider == "lima" and first <= ipaddress.IPv4Address(n.ip) <= last
    ]
    pool_start = ipaddress.IPv4Address(cfg.metallb.pool.start)
    if cfg.metallb.enabled and pool_start <= last and ipaddress.IPv4Address(cfg.metallb.pool.end) >= first:
        inside.append(f"metallb.pool {cfg.metallb.pool.start}-{cfg.metallb.pool.end}")
    return inside


def _dhcp_problems(cfg: HomelabConfig) -> list[Problem]:
    end = cfg.network.dhcp_end
    subnet = ipaddress.IPv4Network(cfg.network.subnet)
    if end is None or not _usable(ipaddress.IPv4Address(cfg.network.gateway), subnet):
        return []  # a bad gateway is its own problem; the range starts after it
    if not _usable(ipaddress.IPv4Address(end), subnet):
        return [Problem("network.dhcp_end", f"'{end}' is not a host address in network.subnet {subnet}")]
    if ipaddress.IPv4Address(end) <= ipaddress.IPv4Address(cfg.network.gateway):
        return [Problem("network.dhcp_end", f"'{end}' is not after network.gateway {cfg.network.gateway}")]
    inside = dhcp_collisions(cfg, end)
    if inside:
        return [
            Problem(
                "network.dhcp_end",
                f"DHCP would hand out {', '.join(inside)}: set it below them (the range starts after the gateway)",
            )
        ]
    return []


def _lima_problems(cfg: HomelabConfig) -> list[Problem]:
    """What Lima's user-v2 network and a built guest image need from the rest of the config."""
    lima_nodes = [(i, n) for i, n in enumerate(cfg.nodes) if n.provider == "lima"]
    problems: list[Problem] = []
    if cfg.lima.guest_image is not None:
        if cfg.lima.arch != "x86_64":
            problems.append(Problem("lima.guest_image", "the built guest image is x86_64: set lima.arch: x86_64"))
        if cfg.lima.vm_type != "qemu":
            problems.append(Problem("lima.guest_image", "boots only with lima.vm_type: qemu"))
    if cfg.lima.network != "user-v2" or not lima_nodes:
        return problems
    if cfg.network.subnet != USER_V2_SUBNET:
        problems.append(
            Problem("network.subnet", f"lima.network user-v2 is Lima's {USER_V2_SUBNET}: set network.subnet to it")
        )
    if cfg.lima.vm_type != "qemu":
        problems.append(Problem("lima.network", "user-v2 is for Linux hosts: set lima.vm_type: qemu"))
    ports = Counter(n.ssh_port for _, n in lima_nodes)
    for i, node in lima_nodes:
        if node.ssh_port is None:
            problems.append(
                Problem(f"nodes[{i}].ssh_port", "required with lima.network user-v2 (Lima forwards it on 127.0.0.1)")
            )
        elif ports[node.ssh_port] > 1:
            problems.append(Problem(f"nodes[{i}].ssh_port", f"{node.ssh_port} is used by more than one node"))
    return problems


def _lm_studio_problems(cfg: HomelabConfig) -> list[Problem]:
    address = ipaddress.IPv4Address(cfg.lm_studio.host)
    if address.is_loopback:
        return [
            Problem(
                "lm_studio.host",
                f"'{address}' is loopback; pods cannot reach the host there, use its node-network address",
            )
        ]
    return []


def _usable(address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> bool:
    """Inside ``subnet`` and not its network or broadcast address (a /31 or /32 has neither)."""
    edges = () if subnet.prefixlen >= 31 else (subnet.network_address, subnet.broadcast_address)
    return address in subnet and address not in edges


def _reachable_via_gateway(address: ipaddress.IPv4Address) -> bool:
    """An address outside the subnet that a router can forward to (not link-local, loopback, ...)."""
    return not (
        address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address == ipaddress.IPv4Address("255.255.255.255")
    )


def _network_problems(cfg: HomelabConfig) -> list[Problem]:
    problems: list[Problem] = []
    subnet = ipaddress.IPv4Network(cfg.network.subnet)
    gateway = ipaddress.IPv4Address(cfg.network.gateway)
    if not _usable(gateway, subnet):
        where = "is the network or broadcast address of" if gateway in subnet else "is outside"
        problems.append(Problem("network.gateway", f"'{gateway}' {where} network.subnet {subnet}"))
    for i, text in enumerate(cfg.network.dns):
        server = ipaddress.IPv4Address(text)
        if server in subnet and not _usable(server, subnet):
            problems.append(Problem(f"network.dns[{i}]", f"'{server}' is the network or broadcast address of {subnet}"))
        elif server not in subnet and not _reachable_via_gateway(server):
            problems.append(
                Problem(
                    f"network.dns[{i}]",
                    f"'{server}' is outside network.subnet {subnet} and cannot be reached through the gateway "
                    "(loopback, link-local, multicast or reserved)",
                )
            )
    host = ipaddress.IPv4Address(cfg.host.ip)
    if cfg.target == "lima" and not _usable(host, subnet):
        problems.append(Problem("host.ip", f"'{host}' is not a host address in network.subnet {subnet}"))
    return problems


def _node_problems(cfg: HomelabConfig) -> list[Problem]:
    problems: list[Problem] = []
    subnet = ipaddress.IPv4Network(cfg.network.subnet)
    servers = [n for n in cfg.nodes if n.role == "server"]
    if cfg.target in ("lima", "k3d") and len(servers) != 1:
        problems.append(Problem("nodes", f"needs exactly one node with role server, found {len(servers)}"))
    for field in ("name", "ip"):
        counts = Counter(getattr(n, field) for n in cfg.nodes)
        for i, node in enumerate(cfg.nodes):
            value = getattr(node, field)
            if counts[value] > 1:
                problems.append(Problem(f"nodes[{i}].{field}", f"{value!r} is used by more than one node"))
    taken: dict[str, list[str]] = {}
    for key, address in (("network.gateway", cfg.network.gateway), ("host.ip", cfg.host.ip)):
        taken.setdefault(address, []).append(key)
    for i, node in enumerate(cfg.nodes):
        if node.provider != "lima":
            continue
        if ipaddress.IPv4Address(node.ip) not in subnet:
            problems.append(Problem(f"nodes[{i}].ip", f"{node.ip!r} is outside network.subnet {subnet}"))
        elif not _usable(ipaddress.IPv4Address(node.ip), subnet):
            problems.append(Problem(f"nodes[{i}].ip", f"{node.ip!r} is the network or broadcast address of {subnet}"))
        elif node.ip in taken:
            problems.append(Problem(f"nodes[{i}].ip", f"{node.ip!r} is already {' and '.join(taken[node.ip])}"))
    return problems


def _fixed_addresses(cfg: HomelabConfig) -> list[tuple[str, str]]:
    """Every address the config gives to something other than a Service: MetalLB must never hand one out."""
    named = [("network.gateway", cfg.network.gateway), ("host.ip", cfg.host.ip)]
    named += [(f"network.dns[{i}]", server) for i, server in enumerate(cfg.network.dns)]
    return [*named, ("lm_studio.host", cfg.lm_studio.host)]


def _pool_problems(cfg: HomelabConfig) -> list[Problem]:
    if not cfg.metallb.enabled:
        return []
    problems: list[Problem] = []
    subnet = ipaddress.IPv4Network(cfg.network.subnet)
    start = ipaddress.IPv4Address(cfg.metallb.pool.start)
    end = ipaddress.IPv4Address(cfg.metallb.pool.end)
    for key, addr in (("start", start), ("end", end)):
        if addr not in subnet:
            problems.append(Problem(f"metallb.pool.{key}", f"'{addr}' is outside network.subnet {subnet}"))
    if start > end:
        problems.append(Problem("metallb.pool", f"start {start} is after end {end}"))
        return problems
    for i, node in enumerate(cfg.nodes):
        if start <= ipaddress.IPv4Address(node.ip) <= end:
            problems.append(Problem("metallb.pool", f"range {start}-{end} contains nodes[{i}].ip {node.ip}"))
    for key, text in _fixed_addresses(cfg):
        if start <= ipaddress.IPv4Address(text) <= end:
            problems.append(Problem("metallb.pool", f"range {start}-{end} contains {key} {text}"))
    if subnet.prefixlen < 31:
        for what, edge in (("network", subnet.network_address), ("broadcast", subnet.broadcast_address)):
            if start <= edge <= end:
                problems.append(Problem("metallb.pool", f"range {start}-{end} contains {subnet}'s {what} address"))
    if cfg.ingress.enabled and not start <= ipaddress.IPv4Address(cfg.ingress.load_balancer_ip) <= end:
        problems.append(
            Problem("ingress.load_balancer_ip", f"{cfg.ingress.load_balancer_ip!r} is outside metallb.pool")
        )
    return problems


def _app_problems(cfg: HomelabConfig) -> list[Problem]:
    problems: list[Problem] = []
    hostnames: dict[str, str] = {}
    if cfg.monitoring.enabled:
        hostnames[cfg.monitoring.grafana_hostname] = "monitoring.grafana_hostname"
    reserved = RESERVED_NAMESPACES | {cfg.secrets.controller_namespace}
    for name, app in cfg.apps.items():
        at = f"apps.{name}"
        if name in reserved or name.startswith("kube-"):
            problems.append(Problem(at, f"{name!r} is a namespace the platform or Kubernetes uses; rename the app"))
        if app.hostname in hostnames:
            problems.append(Problem(f"{at}.hostname", f"{app.hostname!r} is also {hostnames[app.hostname]}"))
        hostnames.setdefault(app.hostname, f"{at}.hostname")
        if len(f"{app.hostname}.{cfg.domain}") > 253:
            problems.append(Problem(f"{at}.hostname", f"{app.hostname}.{cfg.domain} is longer than 253 characters"))
        sizing = contracts.resources_for(app)
        if sizing.cpu_limit and cpu_millicores(sizing.cpu_request) > cpu_millicores(sizing.cpu_limit):
            problems.append(
                Problem(f"{at}.cpu_request", f"{sizing.cpu_request!r} is above cpu_limit {sizing.cpu_limit!r}")
            )
        if size_mib(sizing.memory_request) > size_mib(sizing.memory_limit):
            given = "" if app.memory_request else f" (its image's figure: {sizing.source})"
            fix = "" if app.memory_request else ": raise memory_limit, or set memory_request if yours uses less"
            problems.append(
                Problem(
                    f"{at}.memory_request",
                    f"{sizing.memory_request!r}{given} is above memory_limit {sizing.memory_limit!r}{fix}",
                )
            )
        for key in sorted(set(app.env) & set(app.secrets)):
            problems.append(Problem(f"{at}.secrets.{key}", f"{key!r} is also set in env; keep one"))
        if app.sqlite_databases and not app.storage:
            problems.append(
                Problem(f"{at}.sqlite_databases", "the databases live in the app's volume, but storage is null")
            )
        if app.mounts and not app.storage:
            problems.append(Problem(f"{at}.mounts", "these paths are on the app's volume, but storage is null"))
        if app.mount_path in app.mounts:
            problems.append(Problem(f"{at}.mounts", f"{app.mount_path} is already mount_path"))
        if app.enabled and placeholder_image(app.image):
            problems.append(
                Problem(
                    f"{at}.image",
                    f"{app.image} is a placeholder, not a published image: build and push yours and name it here, "
                    f"or set {at}.enabled: false",
                )
            )
        problems += contracts.problems(name, app)
        problems += contracts.publishing_problems(name, app)
    return problems + _media_problems(cfg)


# Names that only ever appear in examples: RFC 2606 domains and top-level names, and an "example" organisation.
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net")
EXAMPLE_TLDS = ("example", "test", "invalid")


def placeholder_image(reference: str) -> bool:
    """Whether ``reference`` names an image that cannot exist (an example registry or organisation)."""
    parts = repository(reference).split("/")
    host = parts[0] if len(parts) > 1 and ("." in parts[0] or ":" in parts[0]) else "docker.io"
    host = host.split(":")[0]
    path = parts[1:] if host != "docker.io" or parts[0] == "docker.io" else parts
    example_host = host in EXAMPLE_DOMAINS or host.endswith(tuple("." + d for d in EXAMPLE_DOMAINS))
    return example_host or host.rsplit(".", 1)[-1] in EXAMPLE_TLDS or (len(path) > 1 and path[0] == "example")


def _media_problems(cfg: HomelabConfig) -> list[Problem]:
    media = cfg.media
    if not media.enabled:
        return []
    problems = []
    names = {n.name for n in cfg.nodes}
    if media.node and cfg.nodes and media.node not in names:
        problems.append(Problem("media.node", f"{media.node!r} is not one of nodes: {', '.join(sorted(names))}"))
    if not media.mounts:
        problems.append(Problem("media.mounts", "no app mounts the media directory; name each app and its path"))
    for app_name, path in sorted(media.mounts.items()):
        app = cfg.deployed_apps.get(app_name)
        if app is None:
            problems.append(Problem(f"media.mounts.{app_name}", f"{app_name!r} is not a deployed app"))
        elif app.storage and path in (app.mount_path, *app.mounts):
            problems.append(Problem(f"media.mounts.{app_name}", f"{path} is already a path of its volume"))
    return problems


def _k3s_problems(cfg: HomelabConfig) -> list[Problem]:
    problems: list[Problem] = []
    k3s = cfg.k3s
    if k3s.install_method == "airgap":
        for key in ("airgap_binary", "airgap_images"):
            if not getattr(k3s, key):
                problems.append(Problem(f"k3s.{key}", "required when k3s.install_method is airgap"))
    for key in ("installer_file", "airgap_binary", "airgap_images"):
        given = getattr(k3s, key)
        if given and not Path(given).expanduser().is_file():
            problems.append(Problem(f"k3s.{key}", f"{given!r} is not a file"))
    return problems


def exposure(path: Path) -> str | None:
    """Why another local user could change ``path`` or what is in it, or None.

    Any world-writable directory on the way up exposes everything below it,
    except the sticky kind (``/tmp``) when the next entry on the path already
    exists and belongs to us or root: the sticky bit then stops others renaming
    it, and the entry's own mode is checked in turn. An entry that does not exist
    yet in a sticky directory can be created first by anyone, so it is refused.
    """
    chain = [path, *path.parents]
    owners = {0, os.geteuid()}
    for i, directory in enumerate(chain):
        try:
            mode = directory.stat().st_mode
        except OSError:
            continue
        if not stat.S_ISDIR(mode) or not mode & stat.S_IWOTH:
            continue
        sticky = " (sticky)" if mode & stat.S_ISVTX else ""
        if i == 0:
            return f"{directory} is a world-writable directory{sticky}; use a private one (chmod o-w)"
        if not sticky:
            return f"{directory} above it is world-writable: anyone can replace what is below; chmod o-w it"
        below = chain[i - 1]
        try:
            owner = below.lstat().st_uid
        except OSError:
            return (
                f"{directory} is world-writable and {below} does not exist yet, so anyone could create it "
                f"first; create {below} yourself (mkdir -m 700) or choose another path"
            )
        if owner not in owners:
            return f"{directory} is world-writable and {below} belongs to another user (uid {owner})"
    return None


def _private_path_problems(cfg: HomelabConfig) -> list[Problem]:
    """Paths that hold credentials or backups: nobody else may be able to change them."""
    problems: list[Problem] = []
    repo = cfg.backup.repository
    if repo.startswith(("/", "~", "local:")):
        local = Path(repo.removeprefix("local:")).expanduser()
        if why := exposure(local):
            problems.append(Problem("backup.repository", f"{repo!r} is not private: {why}"))
    state = resolve_in_project(cfg.state_dir)
    if why := exposure(state):
        problems.append(Problem("state_dir", f"{cfg.state_dir!r} is not private: {why}"))
    plaintext = resolve_in_project(cfg.secrets.plaintext_file)
    if why := exposure(plaintext.parent):
        problems.append(Problem("secrets.plaintext_file", f"{cfg.secrets.plaintext_file!r} is not private: {why}"))
    for key, given in (
        ("secrets.plaintext_file", plaintext),
        ("ssh.private_key", resolve_in_project(cfg.ssh.private_key)),
    ):
        try:
            mode = given.stat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(Problem(key, f"{str(given)!r} can be read by other users; chmod 600 it"))
    return problems


def secret_refs(cfg: HomelabConfig) -> list[tuple[str, SecretRef]]:
    """Every secret reference in the config with its key path."""
    found: list[tuple[str, SecretRef]] = []

    def walk(value: object, path: str) -> None:
        if isinstance(value, SecretRef):
            found.append((path, value))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{path}.{name}" if path else name)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")

    walk(cfg, "")
    return found


def missing_secret_problems(cfg: HomelabConfig) -> list[Problem]:
    """References whose file or env var is absent (the value is never read)."""
    problems = []
    for path, ref in secret_refs(cfg):
        location = ref.location()
        if not location.exists():
            problems.append(Problem(path, f"secret reference not found: {location.describe()}"))
        elif location.file:
            file_mode = os.stat(Path(location.file).expanduser()).st_mode
            if file_mode & (stat.S_IRWXG | stat.S_IRWXO):
                problems.append(Problem(path, f"secret file {location.file} is readable by others; chmod 600 it"))
    return problems


def tunnel_warnings(cfg: HomelabConfig) -> list[Problem]:
    """Public hostnames Cloudflare's free certificate does not cover; warnings, since an Advanced Certificate does.

    Universal SSL covers the zone and one label below it (``*.zone``). Every public
    hostname is ``<label>.<domain>``, so they all sit as deep as the domain allows:
    one warning, at ``domain``, says it for all of them.
    """
    from homelab.gitops.platform import public_hostnames

    hosts = sorted(public_hostnames(cfg))
    if not cfg.cloudflare.tunnel_enabled or not hosts:
        return []
    domain, zone = cfg.domain, cfg.cloudflare.zone_of(cfg.domain)
    if domain != zone and not domain.endswith("." + zone):
        return [Problem("cloudflare.zone", f"domain {domain} is outside the Cloudflare zone {zone}")]
    depth = domain.count(".") - zone.count(".") + 1
    if depth <= 1:
        return []
    return [
        Problem(
            "domain",
            f"public hostnames such as {hosts[0]} ({len(hosts)} in all) are {depth} labels below the Cloudflare "
            f"zone {zone}: free Universal SSL covers only {zone} and *.{zone}, so browsers would refuse them; set "
            f"domain to {zone} (or cloudflare.zone to {domain} if it is a zone of its own), or buy an Advanced "
            "Certificate",
        )
    ]


def support_warnings(
    cfg: HomelabConfig, today: datetime.date | None = None, manifest: Pins | None = None
) -> list[Problem]:
    """k3s.version's Kubernetes minor past its end of upstream support, or with no known date; warnings.

    The dates are versions.toml's ``[kubernetes] end_of_support``; ``today`` defaults to the
    real date and ``manifest`` to the loaded versions.toml (tests pass their own). The
    release to move to is the newest in ``[k3s.upgrade_path]`` whose minor is still supported.
    """
    from homelab.k3s import versions

    manifest = manifest or load_pins()
    day = today or datetime.date.today()
    version = cfg.k3s.version
    minor = minor_of(version)
    ends = manifest.end_of_support.get(minor)
    if ends is None:
        return [
            Problem(
                "k3s.version",
                f"{version}: Kubernetes {minor} has no end-of-support date in {manifest.path} "
                f'[kubernetes] end_of_support; add "{minor}" = its "End of Life" date from https://kubernetes.io/releases/',
            )
        ]
    if day <= ends:
        return []
    target = versions.newest_supported(manifest, day)
    move = (
        f"move to {target} (supported until {manifest.end_of_support[target.minor]}): set k3s.version to it and "
        "run inv k3s.upgrade --yes, which goes one minor at a time"
        if target
        else f"no release in {manifest.path} [k3s.upgrade_path] is still supported; add a newer one"
    )
    return [
        Problem(
            "k3s.version",
            f"{version}: Kubernetes {minor} left upstream support on {ends} (no more security fixes); {move}",
        )
    ]
