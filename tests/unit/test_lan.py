"""The home LAN: bridged and shared networking, the router's DHCP range, the LAN DNS server's render.

Each refusal is asserted with the message the owner reads, at its key, and one
bad config per rule goes through the real CLI in ``tests/configs/bad`` (exit 2,
nothing run: ``test_config.test_bad_configs_exit_2_and_execute_nothing``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, loopback_data, run_cli
from homelab.apps import render as apps
from homelab.config import loader
from homelab.config.schema import HomelabConfig
from homelab.core.errors import ConfigError
from homelab.gitops import tree
from homelab.net import dns

BASE = loopback_data()
# A bridged homelab on a home LAN 192.168.1.0/24 whose router hands out .100-.199.
BRIDGED: dict[str, Any] = {
    "lima": {"mode": "bridged"},
    "host": {"ip": "192.168.1.20"},
    "network": {
        "subnet": "192.168.1.0/24",
        "gateway": "192.168.1.1",
        "dns": ["192.168.1.1"],
        "router_dhcp": {"start": "192.168.1.100", "end": "192.168.1.199"},
    },
    "nodes": [
        {"name": "a", "role": "server", "ip": "192.168.1.10"},
        {"name": "b", "role": "agent", "ip": "192.168.1.11"},
    ],
    "metallb": {"pool": {"start": "192.168.1.50", "end": "192.168.1.69"}},
    "ingress": {"load_balancer_ip": "192.168.1.50"},
    "lan_dns": {"enabled": True, "address": "192.168.1.53"},
    "lm_studio": {"host": "192.168.1.20"},
    "apps": {"web": {"image": "docker.io/library/nginx:1.27.1", "port": 8080, "hostname": "web", "egress": ["lan"]}},
}


def problems(data: dict[str, Any]) -> list[str]:
    try:
        loader.validate(data)
    except ConfigError as err:
        return [str(p) for p in err.problems]
    return []


def bridged(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BRIDGED)
    for section, values in changes.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    return data


def reference(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values}
    return data


def test_a_bridged_homelab_on_the_home_lan_validates() -> None:
    assert problems(bridged()) == []


def test_bridged_needs_the_routers_dhcp_range() -> None:
    data = bridged()
    del data["network"]["router_dhcp"]
    assert problems(data) == [
        "network.router_dhcp: required with lima.mode bridged: the start and end of your router's DHCP range, so the "
        "nodes, metallb.pool and lan_dns.address can be kept out of it"
    ]


def test_the_router_must_not_hand_out_the_nodes_or_the_pool() -> None:
    data = bridged(network={"router_dhcp": {"start": "192.168.1.2", "end": "192.168.1.60"}})
    assert problems(data) == [
        "network.router_dhcp: the router would hand out nodes[0].ip 192.168.1.10, nodes[1].ip 192.168.1.11, "
        "metallb.pool 192.168.1.50-192.168.1.69: shrink the router's DHCP range (and this key) or move them outside "
        "it, or two devices get the same address",
        "lan_dns.address: '192.168.1.53' is inside network.router_dhcp 192.168.1.2-192.168.1.60",
    ]


def test_the_routers_range_is_on_the_lan_and_not_the_router() -> None:
    data = bridged(network={"router_dhcp": {"start": "192.168.1.1", "end": "192.168.2.9"}})
    assert problems(data) == [
        "network.router_dhcp.end: '192.168.2.9' is outside the home LAN 192.168.1.0/24",
        "network.router_dhcp: range 192.168.1.1-192.168.2.9 contains network.gateway 192.168.1.1",
        "network.router_dhcp: the router would hand out nodes[0].ip 192.168.1.10, nodes[1].ip 192.168.1.11, "
        "metallb.pool 192.168.1.50-192.168.1.69: shrink the router's DHCP range (and this key) or move them outside "
        "it, or two devices get the same address",
        "lan_dns.address: '192.168.1.53' is inside network.router_dhcp 192.168.1.1-192.168.2.9",
    ]
    backwards = bridged(network={"router_dhcp": {"start": "192.168.1.199", "end": "192.168.1.100"}})
    assert problems(backwards) == ["network.router_dhcp: start 192.168.1.199 is after end 192.168.1.100"]


def test_bridged_has_no_socket_vmnet_dhcp_and_no_user_v2() -> None:
    assert problems(bridged(network={"dhcp_end": "192.168.1.9"})) == [
        "network.dhcp_end: is socket_vmnet's DHCP in shared mode; with lima.mode bridged the router hands out the "
        "LAN's addresses: remove it and set network.router_dhcp to the router's DHCP range"
    ]
    assert "lima.mode: bridged is a socket_vmnet mode: set lima.network: socket_vmnet" in problems(
        bridged(lima={"mode": "bridged", "network": "user-v2", "vm_type": "qemu"})
    )


def test_a_bridged_lan_must_hold_the_node_subnet() -> None:
    assert problems(bridged(network={"lan": "10.0.0.0/24"}))[0] == (
        "network.lan: 10.0.0.0/24 must contain network.subnet 192.168.1.0/24: bridged nodes are on the home LAN"
    )


def test_the_dns_address_is_a_pool_address_of_its_own() -> None:
    assert problems(bridged(lan_dns={"address": "192.168.1.70"})) == [
        "lan_dns.address: '192.168.1.70' is outside metallb.pool 192.168.1.50-192.168.1.69"
    ]
    assert problems(bridged(lan_dns={"address": "192.168.1.50"})) == [
        "lan_dns.address: '192.168.1.50' is already ingress.load_balancer_ip"
    ]
    assert problems(bridged(metallb={"enabled": False})) == [
        "lan_dns.enabled: needs metallb.enabled: its address comes from the MetalLB pool"
    ]


def test_shared_mode_needs_the_macs_lan_address_and_the_home_lan() -> None:
    data = reference()
    data["target"] = "lima"
    del data["host"]["lan_ip"]
    assert (
        "host.lan_ip: required with lan_dns.enabled in shared mode: the Mac's address on the home LAN, which LAN "
        "clients are sent to and which forwards them to the homelab (give it a DHCP reservation)" in problems(data)
    )
    data = reference(host={"lan_ip": "10.1.1.1"})
    assert problems(data) == ["host.lan_ip: '10.1.1.1' is outside network.lan 127.0.1.0/24"]
    data = reference()
    del data["network"]["lan"]
    assert problems(data) == [
        "network.lan: required: apps home-assistant list lan in egress, and network.subnet is the Mac's NAT network, "
        "not your home LAN; set it to the home LAN's CIDR (e.g. 192.168.1.0/24)",
        "network.lan: required with host.lan_ip: the home LAN's CIDR it is on",
    ]


def test_in_shared_mode_the_home_lan_is_not_the_nat_network() -> None:
    data = reference(network={"lan": "127.0.0.0/16"})
    data["target"] = "lima"
    assert (
        "network.lan: 127.0.0.0/16 overlaps network.subnet 127.0.0.0/24, the Mac's NAT network: the home LAN must be "
        "another network (or set lima.mode: bridged)"
    ) in problems(data)


def test_lan_egress_reaches_the_home_lan_not_the_nat_network() -> None:
    def allow_lan(cfg: HomelabConfig, name: str) -> list[Any]:
        [policy] = [p for p in apps.network_policies(name, cfg.apps[name], cfg) if p["metadata"]["name"] == "allow-lan"]
        return policy["spec"]["egress"]

    shared = loader.validate(BASE)
    assert allow_lan(shared, "home-assistant") == [{"to": [{"ipBlock": {"cidr": "127.0.1.0/24"}}]}]
    home = loader.validate(bridged())
    assert allow_lan(home, "web") == [{"to": [{"ipBlock": {"cidr": "192.168.1.0/24"}}]}]


def test_the_dns_server_answers_with_the_address_that_serves_each_mode() -> None:
    home = loader.validate(bridged())
    assert dns.records(home) == {"grafana.home.example.com": "192.168.1.50", "web.home.example.com": "192.168.1.50"}
    data = reference()
    data["target"] = "lima"
    shared = loader.validate(data)
    assert set(dns.records(shared).values()) == {"127.0.1.20"}  # the Mac, which forwards into the NAT network
    assert set(dns.records(loader.validate(BASE)).values()) == {"127.0.0.50"}  # sandbox: the pool is reachable


def test_the_corefile_serves_only_the_domain_and_never_recurses() -> None:
    cfg = loader.validate(BASE)
    text = dns.corefile(cfg)
    assert text.startswith(f"{cfg.domain}:{dns.DNS_PORT} {{\n")
    assert text.count("{\n") == 2, "one server block (the domain) and its file block: no root zone"
    assert "forward" not in text and "fallthrough" not in text
    assert f"    file {dns.CONFIG_DIR}/{dns.ZONE_KEY} {cfg.domain} {{\n" in text
    zone = dns.zone_file(cfg)
    for host, address in dns.records(cfg).items():
        assert f"{host}. IN A {address}\n" in zone
    routed = {f"{a.hostname}.{cfg.domain}" for a in cfg.deployed_apps.values() if a.routed}
    assert routed | {f"grafana.{cfg.domain}"} == set(dns.records(cfg))


def test_the_zone_serial_changes_with_the_records_so_coredns_reloads_it() -> None:
    cfg = loader.validate(BASE)
    fewer = copy.deepcopy(BASE)
    fewer["apps"]["homepage"]["enabled"] = False
    serial = [line.split()[5] for line in dns.zone_file(cfg).splitlines() if " SOA " in line]
    other = [line.split()[5] for line in dns.zone_file(loader.validate(fewer)).splitlines() if " SOA " in line]
    assert serial != other
    assert dns.zone_file(cfg) == dns.zone_file(loader.validate(BASE)), "deterministic"


def test_the_dns_server_is_rendered_as_a_hardened_platform_part() -> None:
    cfg = loader.validate(BASE)
    [(chart, objects)] = dns.platform_parts(cfg).values()
    assert chart is None
    by_kind = {o["kind"]: o for o in objects}
    assert set(by_kind) == {"Namespace", "ConfigMap", "Deployment", "Service", "NetworkPolicy"}
    assert by_kind["ConfigMap"]["data"] == {"Corefile": dns.corefile(cfg), dns.ZONE_KEY: dns.zone_file(cfg)}
    service = by_kind["Service"]
    assert service["metadata"]["annotations"] == {"metallb.io/loadBalancerIPs": "127.0.0.53"}
    assert service["spec"]["type"] == "LoadBalancer"
    assert {(p["port"], p["targetPort"], p["protocol"]) for p in service["spec"]["ports"]} == {
        (53, dns.DNS_PORT, "UDP"),
        (53, dns.DNS_PORT, "TCP"),
    }
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "coredns/coredns:1.15.0"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] == {"cpu": "200m", "memory": "128Mi"}
    policy = by_kind["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and "egress" not in policy  # no egress rule: none allowed
    off = copy.deepcopy(BASE)
    off["lan_dns"]["enabled"] = False
    assert dns.platform_parts(loader.validate(off)) == {}


def test_argo_cd_syncs_the_dns_server_like_the_other_platform_parts() -> None:
    rendered = tree.render(loader.validate(BASE))
    assert rendered.files["platform/lan-dns/manifests.yaml"][0]["kind"] == "Namespace"
    argo = [o["metadata"]["name"] for objs in rendered.files.values() for o in objs if o.get("kind") == "Application"]
    assert "lan-dns-config" in argo


def test_the_reference_config_turns_the_lan_dns_on() -> None:
    reference_cfg = yaml.safe_load((REPO / "config" / "homelab.yaml").read_text())
    assert reference_cfg["lan_dns"]["enabled"] is True
    assert reference_cfg["lima"]["mode"] == "shared"


@pytest.mark.parametrize(
    ("name", "key"),
    [("bridged_node_in_router_dhcp", "network.router_dhcp"), ("lan_dns_outside_the_pool", "lan_dns.address")],
)
def test_validate_exits_2_naming_the_key(name: str, key: str, tmp_path: Path) -> None:
    result = run_cli(["config.validate"], {"HOMELAB_CONFIG": str(REPO / "tests" / "configs" / "bad" / f"{name}.yaml")})
    assert result.code == 2, result.output
    assert f"config error: {key}: " in result.stderr


def test_no_lan_dns_on_limas_user_v2_network_which_the_lan_cannot_reach() -> None:
    data = reference(lima={"network": "user-v2", "vm_type": "qemu"})
    data["target"] = "lima"
    assert (
        "lan_dns.enabled: Lima's user-v2 network is reachable from its VMs only, so no LAN client could reach the "
        "DNS server or the gateway: set it to false"
    ) in problems(data)


def test_existing_machines_at_home_are_on_the_lan_so_lan_egress_needs_no_network_lan() -> None:
    data = reference()
    data["target"] = "existing"
    del data["network"]["lan"]
    data["host"] = {k: v for k, v in data["host"].items() if k != "lan_ip"}
    cfg = loader.validate(data)
    [policy] = [
        p
        for p in apps.network_policies("home-assistant", cfg.apps["home-assistant"], cfg)
        if p["metadata"]["name"] == "allow-lan"
    ]
    assert policy["spec"]["egress"] == [{"to": [{"ipBlock": {"cidr": cfg.network.subnet}}]}]
