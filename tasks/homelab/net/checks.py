"""What the home LAN needs from the config: bridged networking, the router's DHCP range, the LAN DNS server.

In socket_vmnet's bridged mode the nodes and the MetalLB pool are addresses on the
home LAN, and the owner's router, not socket_vmnet, runs DHCP there (Lima's
``networks.yaml``: a bridged network has no gateway or DHCP of its own;
https://github.com/lima-vm/socket_vmnet#bridged-mode). Nothing here can see the
router, so the config carries its DHCP range (``network.router_dhcp``) and these
rules keep every address the homelab takes for itself out of it. Each problem
names the key to change (``config.validate`` exits 2 on any).
"""

from __future__ import annotations

import ipaddress

from homelab.config.schema import HomelabConfig
from homelab.core.errors import Problem

Address = ipaddress.IPv4Address


def bridged(cfg: HomelabConfig) -> bool:
    """Whether the nodes sit on the home LAN itself (Lima VMs on a bridged socket_vmnet)."""
    return cfg.target == "lima" and cfg.lima.mode == "bridged"


def nodes_on_lan(cfg: HomelabConfig) -> bool:
    """Whether the node subnet is the home LAN itself: bridged Lima VMs, or existing machines at home."""
    return bridged(cfg) or cfg.target == "existing"


def lan_problems(cfg: HomelabConfig) -> list[Problem]:
    """Every LAN problem in ``cfg``, each at its own key."""
    return [*_bridged_problems(cfg), *_lan_cidr_problems(cfg), *_router_dhcp_problems(cfg), *_dns_problems(cfg)]


def _bridged_problems(cfg: HomelabConfig) -> list[Problem]:
    if not bridged(cfg):
        return []
    problems: list[Problem] = []
    if cfg.lima.network != "socket_vmnet":
        problems.append(Problem("lima.mode", "bridged is a socket_vmnet mode: set lima.network: socket_vmnet"))
    if cfg.network.dhcp_end is not None:
        problems.append(
            Problem(
                "network.dhcp_end",
                "is socket_vmnet's DHCP in shared mode; with lima.mode bridged the router hands out the LAN's "
                "addresses: remove it and set network.router_dhcp to the router's DHCP range",
            )
        )
    if cfg.network.router_dhcp is None:
        problems.append(
            Problem(
                "network.router_dhcp",
                "required with lima.mode bridged: the start and end of your router's DHCP range, so the nodes, "
                "metallb.pool and lan_dns.address can be kept out of it",
            )
        )
    return problems


def _lan_cidr_problems(cfg: HomelabConfig) -> list[Problem]:
    problems: list[Problem] = []
    subnet = ipaddress.IPv4Network(cfg.network.subnet)
    lan_text = cfg.network.lan_cidr(nodes_on_lan(cfg))
    if lan_text is None:
        users = sorted(name for name, app in cfg.deployed_apps.items() if "lan" in app.egress)
        if users:
            problems.append(
                Problem(
                    "network.lan",
                    f"required: apps {', '.join(users)} list lan in egress, and network.subnet is the Mac's NAT "
                    "network, not your home LAN; set it to the home LAN's CIDR (e.g. 192.168.1.0/24)",
                )
            )
        if cfg.lan_dns.enabled and cfg.host.lan_ip is not None:
            problems.append(Problem("network.lan", "required with host.lan_ip: the home LAN's CIDR it is on"))
        return problems
    lan = ipaddress.IPv4Network(lan_text)
    if bridged(cfg) and not subnet.subnet_of(lan):
        problems.append(
            Problem("network.lan", f"{lan} must contain network.subnet {subnet}: bridged nodes are on the home LAN")
        )
    if not bridged(cfg) and cfg.target == "lima" and lan.overlaps(subnet):
        problems.append(
            Problem(
                "network.lan",
                f"{lan} overlaps network.subnet {subnet}, the Mac's NAT network: the home LAN must be another "
                "network (or set lima.mode: bridged)",
            )
        )
    if cfg.host.lan_ip is not None and Address(cfg.host.lan_ip) not in lan:
        problems.append(Problem("host.lan_ip", f"{cfg.host.lan_ip!r} is outside network.lan {lan}"))
    return problems


def static_lan_addresses(cfg: HomelabConfig) -> list[tuple[str, str]]:
    """(key, address or range) of every home-LAN address the homelab takes for itself without DHCP."""
    taken: list[tuple[str, str]] = []
    if bridged(cfg):
        taken += [(f"nodes[{i}].ip", n.ip) for i, n in enumerate(cfg.nodes) if n.provider == "lima"]
        if cfg.metallb.enabled:
            taken.append(("metallb.pool", f"{cfg.metallb.pool.start}-{cfg.metallb.pool.end}"))
    return taken


def _router_dhcp_problems(cfg: HomelabConfig) -> list[Problem]:
    dhcp = cfg.network.router_dhcp
    lan_text = cfg.network.lan_cidr(nodes_on_lan(cfg))
    if dhcp is None:
        return []
    start, end = Address(dhcp.start), Address(dhcp.end)
    if start > end:
        return [Problem("network.router_dhcp", f"start {start} is after end {end}")]
    if lan_text is None:
        return [Problem("network.lan", "required with network.router_dhcp: the home LAN's CIDR the range is on")]
    lan = ipaddress.IPv4Network(lan_text)
    problems = [
        Problem(f"network.router_dhcp.{key}", f"'{value}' is outside the home LAN {lan}")
        for key, value in (("start", start), ("end", end))
        if value not in lan
    ]
    if bridged(cfg) and start <= Address(cfg.network.gateway) <= end:
        problems.append(
            Problem("network.router_dhcp", f"range {start}-{end} contains network.gateway {cfg.network.gateway}")
        )
    inside = []
    for key, text in static_lan_addresses(cfg):
        first, _, last = text.partition("-")
        if Address(first) <= end and Address(last or first) >= start:
            inside.append(f"{key} {text}")
    if inside:
        problems.append(
            Problem(
                "network.router_dhcp",
                f"the router would hand out {', '.join(inside)}: shrink the router's DHCP range (and this key) or "
                "move them outside it, or two devices get the same address",
            )
        )
    return problems


def _dns_problems(cfg: HomelabConfig) -> list[Problem]:
    dns = cfg.lan_dns
    if not dns.enabled:
        return []
    if cfg.target == "lima" and cfg.lima.network == "user-v2":
        return [
            Problem(
                "lan_dns.enabled",
                "Lima's user-v2 network is reachable from its VMs only, so no LAN client could reach the DNS "
                "server or the gateway: set it to false",
            )
        ]
    problems: list[Problem] = []
    address = Address(dns.address)
    if not cfg.metallb.enabled:
        problems.append(Problem("lan_dns.enabled", "needs metallb.enabled: its address comes from the MetalLB pool"))
    elif not Address(cfg.metallb.pool.start) <= address <= Address(cfg.metallb.pool.end):
        problems.append(
            Problem(
                "lan_dns.address",
                f"{dns.address!r} is outside metallb.pool {cfg.metallb.pool.start}-{cfg.metallb.pool.end}",
            )
        )
    if not cfg.ingress.enabled:
        problems.append(Problem("lan_dns.enabled", "needs ingress.enabled: it answers with the gateway's address"))
    elif dns.address == cfg.ingress.load_balancer_ip:
        problems.append(Problem("lan_dns.address", f"{dns.address!r} is already ingress.load_balancer_ip"))
    dhcp = cfg.network.router_dhcp
    if bridged(cfg) and dhcp is not None and Address(dhcp.start) <= address <= Address(dhcp.end):
        problems.append(
            Problem("lan_dns.address", f"{dns.address!r} is inside network.router_dhcp {dhcp.start}-{dhcp.end}")
        )
    if not bridged(cfg) and cfg.target == "lima" and cfg.host.lan_ip is None:
        problems.append(
            Problem(
                "host.lan_ip",
                "required with lan_dns.enabled in shared mode: the Mac's address on the home LAN, which LAN "
                "clients are sent to and which forwards them to the homelab (give it a DHCP reservation)",
            )
        )
    return problems
