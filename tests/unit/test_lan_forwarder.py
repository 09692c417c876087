"""Shared mode's forwarder as values: its routes, its launchd plist, and the doctor's LAN rows.

macOS cannot run here, so the plist is checked the way launchd would read it: it
round-trips through plistlib and holds only keys launchd.plist(5) documents
(https://keith.github.io/xcode-man-pages/launchd.plist.5.html), each of its
documented type. The relay itself runs for real in tests/integration/test_lan_dns.py.
"""

from __future__ import annotations

import copy
import plistlib
from pathlib import Path
from typing import Any

from helpers import loopback_data
from homelab.config import loader
from homelab.config.schema import HomelabConfig
from homelab.net import dns, forwarder
from homelab.net import doctor as lan_doctor

# launchd.plist(5): each key the agent uses and the type the page gives it.
DOCUMENTED_TYPES: dict[str, type | tuple[type, ...]] = {
    "Label": str,
    "ProgramArguments": list,
    "WorkingDirectory": str,
    "EnvironmentVariables": dict,
    "StandardOutPath": str,
    "StandardErrorPath": str,
    "RunAtLoad": bool,
    "KeepAlive": (bool, dict),
}


def shared() -> HomelabConfig:
    data = copy.deepcopy(loopback_data())
    data["target"] = "lima"
    return loader.validate(data)


def test_the_mac_relays_dns_to_the_dns_address_and_web_to_the_gateway() -> None:
    cfg = shared()
    assert [str(r) for r in forwarder.routes(cfg)] == [
        "udp 53 -> 127.0.0.53:53",
        "tcp 53 -> 127.0.0.53:53",
        "tcp 80 -> 127.0.0.50:80",
        "tcp 443 -> 127.0.0.50:443",
    ]
    assert forwarder.needed(cfg)
    assert not forwarder.needed(loader.validate(loopback_data())), "the sandbox needs no forwarder"


def test_the_agent_plist_holds_only_documented_keys_of_their_documented_types() -> None:
    value = forwarder.agent(
        program=Path("/Users/me/homelab/.venv/bin/homelab"),
        workdir=Path("/Users/me/homelab"),
        config=Path("/Users/me/homelab/config/homelab.yaml"),
        log=Path("/Users/me/homelab/.homelab/lan-forwarder.log"),
    )
    data = plistlib.dumps(value, fmt=plistlib.FMT_XML, sort_keys=True)
    read = plistlib.loads(data)
    assert read == value and b"<!DOCTYPE plist" in data
    assert set(read) == forwarder.DOCUMENTED_KEYS == set(DOCUMENTED_TYPES)
    for key, kind in DOCUMENTED_TYPES.items():
        assert isinstance(read[key], kind), key
    assert read["Label"] == forwarder.LABEL
    assert read["ProgramArguments"] == ["/Users/me/homelab/.venv/bin/homelab", "net.forward"]
    assert read["RunAtLoad"] is True and read["KeepAlive"] is True, "started at login, restarted when it exits"
    assert read["EnvironmentVariables"] == {"HOMELAB_CONFIG": "/Users/me/homelab/config/homelab.yaml"}


class Probe:
    """A stand-in for the executor's observe: launchctl print says loaded or not."""

    def __init__(self, loaded: bool) -> None:
        self.loaded = loaded

    def observe(self, action: Any, check: bool = False) -> Any:
        return type("Done", (), {"exited": 0 if self.loaded else 113})()


def test_installing_writes_the_plist_and_bootstraps_it_and_a_second_run_does_nothing(tmp_path: Path) -> None:
    wanted = forwarder.agent(program=Path("/h"), workdir=tmp_path, config=tmp_path / "c.yaml", log=tmp_path / "l")
    plan = forwarder.plan(Probe(loaded=False), "launchctl", wanted, tmp_path, remove=False, uid=501)
    assert [type(a).__name__ for a in plan.actions] == ["WriteFile", "Run"]
    assert plan.actions[1].argv == ("launchctl", "bootstrap", "gui/501", str(forwarder.plist_path(tmp_path)))
    target = forwarder.plist_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(plistlib.dumps(wanted, fmt=plistlib.FMT_XML, sort_keys=True))
    again = forwarder.plan(Probe(loaded=True), "launchctl", wanted, tmp_path, remove=False, uid=501)
    assert again.empty
    removed = forwarder.plan(Probe(loaded=True), "launchctl", wanted, tmp_path, remove=True, uid=501)
    assert [a.argv[:2] for a in removed.actions] == [("launchctl", "bootout"), ("rm", "-f")]


def test_the_doctor_reports_a_hostname_resolving_elsewhere_and_a_silent_forwarder() -> None:
    cfg = shared()
    wanted = dns.records(cfg)
    first = sorted(wanted)[0]
    right = {name: [address] for name, address in wanted.items()}
    rows = lan_doctor.checks(cfg, resolve=lambda name: right[name], ask=lambda _s, _p, name: right[name])
    assert [(r.name, r.status) for r in rows] == [("lan hostnames", "ok"), ("lan forwarder", "ok")]
    stale = {**right, first: ["203.0.113.9"]}
    rows = lan_doctor.checks(cfg, resolve=lambda name: stale[name], ask=lambda _s, _p, name: [])
    assert [(r.name, r.status) for r in rows] == [("lan hostnames", "warn"), ("lan forwarder", "warn")]
    assert f"1 of {len(wanted)}" in rows[0].detail and f"{first} -> 203.0.113.9" in rows[0].detail
    assert "127.0.1.20" in rows[0].fix, "in shared mode the router's DNS points at the Mac"
    assert rows[1].fix.startswith("inv net.forwarder")


def test_the_doctor_never_fails_hard_when_offline() -> None:
    def offline(name: str) -> list[str]:
        raise lan_doctor.DnsFailure("no answer from 127.0.1.20:53 (timed out)")

    rows = lan_doctor.checks(shared(), resolve=lambda name: [], ask=lambda _s, _p, name: offline(name))
    assert {r.status for r in rows} == {"warn"}


def test_in_bridged_mode_the_doctor_wants_the_bridged_socket_vmnet_not_a_dhcp_range() -> None:
    from types import SimpleNamespace

    from homelab.root import doctor

    data = copy.deepcopy(loopback_data())
    data["target"] = "lima"
    data["lima"] = {**data["lima"], "mode": "bridged", "bridge_interface": "en1"}
    data["network"] = {k: v for k, v in data["network"].items() if k not in ("dhcp_end", "lan")}
    data["network"]["router_dhcp"] = {"start": "127.0.0.100", "end": "127.0.0.199"}
    data["host"] = {k: v for k, v in data["host"].items() if k != "lan_ip"}
    session = SimpleNamespace(cfg=loader.validate(data))
    addresses = {n.name: [n.ip] for n in session.cfg.nodes}
    bridged = "/opt/socket_vmnet/bin/socket_vmnet --vmnet-mode=bridged --vmnet-interface=en1 /var/run/socket_vmnet"
    rows = {
        c.name: c
        for c in doctor.check_host_network(session, doctor.HostFacts(True, False, addresses, True, True, bridged))
    }
    assert "socket_vmnet DHCP" not in rows, "the router runs DHCP in bridged mode"
    assert rows["socket_vmnet bridged"].status == "ok"
    shared = "/opt/socket_vmnet/bin/socket_vmnet --vmnet-gateway=192.168.105.1 /var/run/socket_vmnet"
    rows = {
        c.name: c
        for c in doctor.check_host_network(session, doctor.HostFacts(True, False, addresses, True, True, shared))
    }
    assert rows["socket_vmnet bridged"].status == "warn"
    assert "--vmnet-mode=bridged --vmnet-interface=en1" in rows["socket_vmnet bridged"].fix


def test_the_forwarder_task_plans_the_agent_in_a_dry_run_and_is_refused_where_not_needed(tmp_path: Path) -> None:
    import yaml

    from helpers import run_cli

    data = copy.deepcopy(loopback_data())
    data["target"] = "lima"
    data["state_dir"] = str(tmp_path / "state")
    config = tmp_path / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    home = tmp_path / "home"
    result = run_cli(["net.forwarder", "--dry-run"], {"HOMELAB_CONFIG": str(config), "HOME": str(home)})
    assert result.code == 0, result.output
    plist = home / "Library" / "LaunchAgents" / f"{forwarder.LABEL}.plist"
    assert f"write {plist}" in result.stdout and "launchctl bootstrap gui/" in result.stdout
    assert not home.exists(), "a dry run writes nothing"
    data["target"] = "sandbox"
    config.write_text(yaml.safe_dump(data))
    refused = run_cli(["net.forwarder", "--dry-run"], {"HOMELAB_CONFIG": str(config), "HOME": str(home)})
    assert refused.code == 2 and "no forwarder needed" in refused.stderr, refused.output


def test_the_doctor_wants_the_lan_dns_service_on_lan_dns_address() -> None:
    from types import SimpleNamespace

    from homelab.root import doctor

    def service(address: str) -> dict[str, Any]:
        return {
            "metadata": {"namespace": "lan-dns", "name": "lan-dns"},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": address}]}},
        }

    session = SimpleNamespace(cfg=shared())
    for address, status in (("127.0.0.53", "ok"), ("127.0.0.60", "fail")):
        kube = SimpleNamespace(list_objects=lambda *_a, address=address: [service(address)])
        [row] = [c for c in doctor.check_load_balancers(session, kube) if c.name == "load balancer lan-dns/lan-dns"]
        assert row.status == status, (address, row)
