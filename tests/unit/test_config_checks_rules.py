"""Cross-field config rules, each with the exact problem a user reads, and the secret-reference walk."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from helpers import loopback_data
from homelab.config import loader
from homelab.config.checks import missing_secret_problems, secret_refs
from homelab.config.schema import SecretRef
from homelab.core import pins
from homelab.core.errors import ConfigError

BASE = loopback_data()


def problems_at(prefix: str, change: Any) -> list[str]:
    """The problems under ``prefix`` after ``change``; [] when the config is valid there."""
    data = copy.deepcopy(BASE)
    change(data)
    try:
        loader.validate(data)
    except ConfigError as err:
        return [str(p) for p in err.problems if p.path.startswith(prefix)]
    return []


def test_the_gateway_must_be_a_host_address_of_the_subnet() -> None:
    assert problems_at("network", lambda d: d["network"].update(gateway="127.0.1.1")) == [
        "network.gateway: '127.0.1.1' is outside network.subnet 127.0.0.0/24"
    ]
    for edge in ("127.0.0.0", "127.0.0.255"):
        assert problems_at("network", lambda d, e=edge: d["network"].update(gateway=e)) == [
            f"network.gateway: '{edge}' is the network or broadcast address of network.subnet 127.0.0.0/24"
        ]


def test_a_point_to_point_subnet_has_no_network_or_broadcast_address() -> None:
    for subnet, gateway in (("127.0.0.10/31", "127.0.0.10"), ("127.0.0.11/32", "127.0.0.11")):
        change = lambda d, s=subnet, g=gateway: d["network"].update(subnet=s, gateway=g, dns=[g], dhcp_end=None)  # noqa: E731
        assert problems_at("network", change) == [], subnet


def test_dns_inside_the_subnet_must_be_a_host_address() -> None:
    assert problems_at("network", lambda d: d["network"].update(dns=["127.0.0.1", "127.0.0.255"])) == [
        "network.dns[1]: '127.0.0.255' is the network or broadcast address of 127.0.0.0/24"
    ]


@pytest.mark.parametrize("server", ["169.254.1.1", "224.0.0.1", "240.0.0.1", "255.255.255.255", "0.0.0.0"])
def test_dns_outside_the_subnet_must_be_routable(server: str) -> None:
    assert problems_at("network", lambda d: d["network"].update(dns=[server])) == [
        f"network.dns[0]: '{server}' is outside network.subnet 127.0.0.0/24 and cannot be reached through "
        "the gateway (loopback, link-local, multicast or reserved)"
    ]


def test_dns_outside_the_subnet_through_the_gateway_is_fine() -> None:
    assert problems_at("network", lambda d: d["network"].update(dns=["1.1.1.1", "9.9.9.9"])) == []


def test_the_host_address_matters_only_for_lima() -> None:
    assert problems_at("host", lambda d: (d.update(target="lima"), d["host"].update(ip="127.0.0.0"))) == [
        "host.ip: '127.0.0.0' is not a host address in network.subnet 127.0.0.0/24"
    ]
    assert problems_at("host", lambda d: d["host"].update(ip="127.0.0.0")) == []


def test_lm_studio_on_loopback_is_refused() -> None:
    assert problems_at("lm_studio", lambda d: d["lm_studio"].update(host="127.0.0.5")) == [
        "lm_studio.host: '127.0.0.5' is loopback; pods cannot reach the host there, use its node-network address"
    ]
    assert problems_at("lm_studio", lambda d: d["lm_studio"].update(host="192.0.2.20")) == []


def test_a_list_that_repeats_names_every_repeated_item() -> None:
    assert problems_at("apps", lambda d: d["apps"]["qbittorrent"].update(egress=["internet"] * 2)) == [
        "apps.qbittorrent.egress: lists 'internet' more than once"
    ]
    change = lambda d: d["network"].update(dns=["1.1.1.1", "9.9.9.9", "1.1.1.1"])  # noqa: E731
    assert problems_at("network", change) == ["network.dns: lists '1.1.1.1' more than once"]
    both = lambda d: d["nodes"][0].update(taints=["a=b:NoSchedule", "c=d:NoSchedule"] * 2)  # noqa: E731
    assert problems_at("nodes", both) == ["nodes[0].taints: lists 'a=b:NoSchedule', 'c=d:NoSchedule' more than once"]


def test_every_secret_reference_is_found_with_its_key_path() -> None:
    cfg = loader.validate(copy.deepcopy(BASE))
    found = dict(secret_refs(cfg))
    assert found["k3s.token"] == cfg.k3s.token
    assert found["backup.password"] == cfg.backup.password
    assert found["apps.vaultwarden.secrets.ADMIN_TOKEN"] == SecretRef(env="VAULTWARDEN_ADMIN_TOKEN")
    assert all(isinstance(ref, SecretRef) for ref in found.values())
    assert len(found) == len(secret_refs(cfg)), "each reference once"


def test_missing_and_readable_secrets_are_named_and_present_ones_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = copy.deepcopy(BASE)
    good, loose = tmp_path / "good", tmp_path / "loose"
    good.write_text("v")
    good.chmod(0o600)
    loose.write_text("v")
    loose.chmod(0o640)
    data["apps"]["vaultwarden"]["secrets"] = {
        "PRESENT": {"file": str(good)},
        "LOOSE": {"file": str(loose)},
        "ABSENT": {"file": str(tmp_path / "absent")},
        "FROM_ENV": {"env": "HOMELAB_TEST_SET"},
        "NOT_SET": {"env": "HOMELAB_TEST_UNSET"},
    }
    monkeypatch.setenv("HOMELAB_TEST_SET", "value")
    monkeypatch.delenv("HOMELAB_TEST_UNSET", raising=False)
    cfg = loader.validate(data)
    mine = [str(p) for p in missing_secret_problems(cfg) if p.path.startswith("apps.vaultwarden")]
    assert mine == [
        f"apps.vaultwarden.secrets.LOOSE: secret file {loose} is readable by others; chmod 600 it",
        f"apps.vaultwarden.secrets.ABSENT: secret reference not found: file {tmp_path / 'absent'}",
        "apps.vaultwarden.secrets.NOT_SET: secret reference not found: environment variable HOMELAB_TEST_UNSET",
    ]
    assert os.stat(good).st_mode & 0o777 == 0o600


def test_lima_and_k3d_need_exactly_one_server() -> None:
    two = lambda d: (d.update(target="k3d"), d["nodes"][1].update(role="server"))  # noqa: E731
    assert problems_at("nodes", two) == ["nodes: needs exactly one node with role server, found 2"]
    none = lambda d: (d.update(target="lima"), d["nodes"][0].update(role="agent"))  # noqa: E731
    assert problems_at("nodes", none) == ["nodes: needs exactly one node with role server, found 0"]
    assert problems_at("nodes", lambda d: d["nodes"][1].update(role="server")) == [], "the sandbox takes any"


def test_node_names_and_addresses_are_unique() -> None:
    same = lambda d: d["nodes"][2].update(name="k3s-worker-1", ip="127.0.0.12")  # noqa: E731
    assert problems_at("nodes", same) == [
        "nodes[1].name: 'k3s-worker-1' is used by more than one node",
        "nodes[2].name: 'k3s-worker-1' is used by more than one node",
        "nodes[1].ip: '127.0.0.12' is used by more than one node",
        "nodes[2].ip: '127.0.0.12' is used by more than one node",
    ]


def test_a_lima_nodes_address_is_a_free_host_address_of_the_subnet() -> None:
    def lima(**changes: str) -> Any:
        return lambda d: (d.update(target="lima"), d["host"].update(ip="127.0.0.2"), d["nodes"][1].update(changes))

    assert problems_at("nodes", lima(ip="127.0.1.12")) == [
        "nodes[1].ip: '127.0.1.12' is outside network.subnet 127.0.0.0/24"
    ]
    assert problems_at("nodes", lima(ip="127.0.0.255")) == [
        "nodes[1].ip: '127.0.0.255' is the network or broadcast address of 127.0.0.0/24"
    ]
    assert problems_at("nodes", lima(ip="127.0.0.1")) == ["nodes[1].ip: '127.0.0.1' is already network.gateway"]
    assert problems_at("nodes", lima(ip="127.0.0.2")) == ["nodes[1].ip: '127.0.0.2' is already host.ip"]
    both = lambda d: (d.update(target="lima"), d["host"].update(ip="127.0.0.1"), d["nodes"][2].update(ip="127.0.0.1"))  # noqa: E731
    assert problems_at("nodes", both) == ["nodes[2].ip: '127.0.0.1' is already network.gateway and host.ip"]
    ssh = lambda d: d["nodes"][1].update(provider="ssh", ip="10.9.9.9")  # noqa: E731
    assert problems_at("nodes", ssh) == [], "an existing host over SSH may live anywhere"


def test_the_metallb_pool_lies_in_the_subnet_in_order_and_clear_of_every_address() -> None:
    assert problems_at("metallb", lambda d: d["metallb"]["pool"].update(start="127.0.1.50", end="127.0.1.99")) == [
        "metallb.pool.start: '127.0.1.50' is outside network.subnet 127.0.0.0/24",
        "metallb.pool.end: '127.0.1.99' is outside network.subnet 127.0.0.0/24",
    ]
    assert problems_at("metallb", lambda d: d["metallb"]["pool"].update(start="127.0.0.99", end="127.0.0.50")) == [
        "metallb.pool: start 127.0.0.99 is after end 127.0.0.50"
    ]
    one = lambda d: d["metallb"]["pool"].update(start="127.0.0.50", end="127.0.0.50")  # noqa: E731
    assert problems_at("metallb", one) == [], "a pool of one address is a pool"
    node = lambda d: d["metallb"]["pool"].update(start="127.0.0.12", end="127.0.0.12")  # noqa: E731
    assert problems_at("metallb", node) == ["metallb.pool: range 127.0.0.12-127.0.0.12 contains nodes[1].ip 127.0.0.12"]
    gateway = lambda d: d["metallb"]["pool"].update(start="127.0.0.1", end="127.0.0.1")  # noqa: E731
    assert problems_at("metallb", gateway) == [
        "metallb.pool: range 127.0.0.1-127.0.0.1 contains network.gateway 127.0.0.1",
        "metallb.pool: range 127.0.0.1-127.0.0.1 contains host.ip 127.0.0.1",
        "metallb.pool: range 127.0.0.1-127.0.0.1 contains network.dns[0] 127.0.0.1",
    ]


def test_the_metallb_pool_keeps_clear_of_dns_lm_studio_and_the_subnets_own_addresses() -> None:
    """A Service handed the DNS server's, LM Studio's or the broadcast address breaks what already answers there."""
    dns = lambda d: (d["network"].update(dns=["127.0.0.60"]), d["metallb"]["pool"].update(start="127.0.0.50"))  # noqa: E731
    pool = "metallb.pool: range 127.0.0.50-127.0.0.99 contains"
    assert problems_at("metallb", dns) == [f"{pool} network.dns[0] 127.0.0.60"]
    lm = lambda d: d.update(lm_studio={"host": "127.0.0.70"})  # noqa: E731
    assert problems_at("metallb", lm) == [f"{pool} lm_studio.host 127.0.0.70"]
    edges = lambda d: d["metallb"]["pool"].update(start="127.0.0.0", end="127.0.0.255")  # noqa: E731
    found = problems_at("metallb", edges)
    assert "metallb.pool: range 127.0.0.0-127.0.0.255 contains 127.0.0.0/24's network address" in found
    assert "metallb.pool: range 127.0.0.0-127.0.0.255 contains 127.0.0.0/24's broadcast address" in found
    top = lambda d: d["metallb"]["pool"].update(start="127.0.0.200", end="127.0.0.254")  # noqa: E731
    assert problems_at("metallb", top) == [], "the last host address is usable"


def test_the_ingress_address_is_inside_the_pool_including_its_ends() -> None:
    assert problems_at("ingress", lambda d: d["ingress"].update(load_balancer_ip="127.0.0.99")) == []
    assert problems_at("ingress", lambda d: d["ingress"].update(load_balancer_ip="127.0.0.100")) == [
        "ingress.load_balancer_ip: '127.0.0.100' is outside metallb.pool"
    ]


def test_apps_may_not_take_a_platform_namespace_or_another_apps_hostname() -> None:
    # A renamed entry is no longer the catalog's plex: it names its image itself.
    plex_image = pins.load().image("plex")
    rename = lambda new: lambda d: d["apps"].update({new: {**d["apps"].pop("plex"), "image": plex_image}})  # noqa: E731
    assert problems_at("apps", rename("kube-tools")) == [
        "apps.kube-tools: 'kube-tools' is a namespace the platform or Kubernetes uses; rename the app"
    ]
    assert problems_at("apps", rename("kubernetes-dashboard")) == []
    grafana = BASE["monitoring"].get("grafana_hostname", "grafana")
    assert problems_at("apps", lambda d: d["apps"]["plex"].update(hostname=grafana)) == [
        f"apps.plex.hostname: '{grafana}' is also monitoring.grafana_hostname"
    ]


def test_a_hostname_may_be_253_characters_long_and_no_longer() -> None:
    def hostname_of(total: int) -> Any:
        domain = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * (total - len("plexxx.") - 192)])
        return lambda d: (d.update(domain=domain), d["apps"]["plex"].update(hostname="plexxx"))

    assert [p for p in problems_at("apps.plex", hostname_of(253)) if "longer" in p] == []
    [long] = [p for p in problems_at("apps.plex", hostname_of(254)) if "longer" in p]
    assert long.startswith("apps.plex.hostname: plexxx.aaaa") and long.endswith(" is longer than 253 characters")


def test_requests_may_equal_limits_but_not_exceed_them() -> None:
    equal = lambda d: d["apps"]["plex"].update(memory_request="4GiB", memory_limit="4GiB")  # noqa: E731
    assert problems_at("apps.plex", equal) == []
    above = lambda d: d["apps"]["plex"].update(memory_request="5GiB", memory_limit="4GiB")  # noqa: E731
    assert problems_at("apps.plex", above) == ["apps.plex.memory_request: '5GiB' is above memory_limit '4GiB'"]


def test_sqlite_databases_need_the_apps_volume() -> None:
    assert problems_at("apps.vaultwarden", lambda d: d["apps"]["vaultwarden"].update(storage=None)) == [
        "apps.vaultwarden.sqlite_databases: the databases live in the app's volume, but storage is null"
    ]


def test_air_gapped_installs_name_each_missing_file(tmp_path: Path) -> None:
    assert problems_at("k3s", lambda d: d["k3s"].update(install_method="airgap")) == [
        "k3s.airgap_binary: required when k3s.install_method is airgap",
        "k3s.airgap_images: required when k3s.install_method is airgap",
    ]


def test_private_paths_name_the_key_that_points_below_a_shared_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    expected = f"{shared} above it is world-writable: anyone can replace what is below; chmod o-w it"
    local = lambda d: d["backup"].update(repository=f"local:{shared}/restic")  # noqa: E731
    assert problems_at("backup", local) == [f"backup.repository: 'local:{shared}/restic' is not private: {expected}"]
    state = lambda d: d.update(state_dir=f"{shared}/state")  # noqa: E731
    assert problems_at("state_dir", state) == [f"state_dir: '{shared}/state' is not private: {expected}"]
    plain = lambda d: d["secrets"].update(plaintext_file=f"{shared}/sub/secrets.yaml")  # noqa: E731
    assert problems_at("secrets", plain) == [
        f"secrets.plaintext_file: '{shared}/sub/secrets.yaml' is not private: {expected}"
    ]


def test_key_files_readable_by_others_are_named_by_their_key(tmp_path: Path) -> None:
    key, plain = tmp_path / "id_ed25519", tmp_path / "secrets.yaml"
    for path in (key, plain):
        path.write_text("x")
        path.chmod(0o640)
    change = lambda d: (d["ssh"].update(private_key=str(key)), d["secrets"].update(plaintext_file=str(plain)))  # noqa: E731
    assert problems_at("s", change) == [
        f"secrets.plaintext_file: '{plain}' can be read by other users; chmod 600 it",
        f"ssh.private_key: '{key}' can be read by other users; chmod 600 it",
    ]
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o755)
    keys.chmod(0o755)
    a_directory = lambda d: d["ssh"].update(private_key=str(keys))  # noqa: E731
    assert problems_at("ssh", a_directory) == [], "only files are judged by their mode"


def test_hostnames_deeper_than_universal_ssl_covers_are_one_warning_at_domain() -> None:
    from homelab.config.checks import tunnel_warnings

    def warnings(**change: Any) -> list[str]:
        data = copy.deepcopy(BASE)
        cloudflare = change.pop("cloudflare", {})
        data.update(change)
        data["cloudflare"] = {**data.get("cloudflare", {}), **cloudflare}
        return [str(p) for p in tunnel_warnings(loader.validate(data))]

    assert warnings() == []  # home.test: its own zone, hostnames one label below
    [deep] = warnings(domain="home.example.com")
    assert deep.startswith("domain: public hostnames such as vault.home.example.com (1 in all) are 2 labels below")
    assert "set domain to example.com" in deep
    assert warnings(domain="home.example.com", cloudflare={"zone": "home.example.com"}) == []
    assert warnings(domain="home.example.com", cloudflare={"zone": "example.org"}) == [
        "cloudflare.zone: domain home.example.com is outside the Cloudflare zone example.org"
    ]
    assert warnings(domain="home.example.com", cloudflare={"tunnel_enabled": False}) == []
