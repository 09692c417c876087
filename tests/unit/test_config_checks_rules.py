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
        change = lambda d, s=subnet, g=gateway: d["network"].update(subnet=s, gateway=g, dns=[g])  # noqa: E731
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
