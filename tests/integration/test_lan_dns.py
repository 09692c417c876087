"""The real CoreDNS on the Corefile the toolkit renders: every routed hostname answers, nothing else does.

Real parts: the CoreDNS release the homelab runs (built from ``github.com/coredns/coredns``
by ``scripts/get-binaries.sh coredns``), listening on a 127.0.0.x address and free
ports, and dnspython as the LAN client. The Corefile is ``homelab.net.dns.corefile``
for the reference config in both networking modes, only bound to loopback: in
bridged mode every hostname is the gateway's pool address, in shared mode the
Mac's LAN address. A name of the domain the homelab does not route gets NXDOMAIN,
and a name outside the domain REFUSED: the server is no open resolver.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.server
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from helpers import loopback_data
from homelab.config import loader
from homelab.config.schema import HomelabConfig
from homelab.core.tools import find
from homelab.net import dns as lan_dns
from homelab.net import doctor as lan_doctor
from homelab.net import forwarder

pytestmark = pytest.mark.integration

BIND = "127.0.0.153"  # an address of its own on loopback, away from the sandbox's pool (127.0.0.50-99)


def shared_mode() -> HomelabConfig:
    """The reference homelab as it runs on the Mac: Lima VMs on socket_vmnet's shared network."""
    data = loopback_data()
    data["target"] = "lima"
    return loader.validate(data)


def bridged_mode() -> HomelabConfig:
    """The reference homelab with its VMs bridged onto the home LAN (here: loopback's 127.0.0.0/24)."""
    data: dict[str, Any] = copy.deepcopy(loopback_data())
    data["target"] = "lima"
    data["lima"] = {**data["lima"], "mode": "bridged"}
    network = {k: v for k, v in data["network"].items() if k not in ("dhcp_end", "lan")}
    data["network"] = {**network, "router_dhcp": {"start": "127.0.0.100", "end": "127.0.0.199"}}
    data["host"] = {k: v for k, v in data["host"].items() if k != "lan_ip"}
    return loader.validate(data)


def free_port(address: str) -> int:
    """A port free for both UDP and TCP on ``address`` (DNS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((address, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port on {address}")


@pytest.fixture
def coredns_bin() -> str:
    found = find("coredns")
    assert found, "coredns missing: scripts/get-binaries.sh coredns"
    return found


def start(coredns_bin: str, cfg: HomelabConfig, tmp_path: Path) -> Iterator[int]:
    """Run CoreDNS on the rendered Corefile until the generator is closed; yields its DNS port."""
    port, health, ready, metrics = (free_port(BIND) for _ in range(4))
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        lan_dns.corefile(
            cfg,
            port=port,
            bind=BIND,
            health_port=health,
            ready_port=ready,
            metrics_port=metrics,
            config_dir=str(tmp_path),
        )
    )
    (tmp_path / lan_dns.ZONE_KEY).write_text(lan_dns.zone_file(cfg))  # the ConfigMap's other key
    log = tmp_path / "coredns.log"
    with log.open("w") as out:
        process = subprocess.Popen([coredns_bin, "-conf", str(corefile)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"coredns exited: {log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://{BIND}:{ready}/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"coredns not ready in 30 s: {log.read_text()}"
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ask(port: int, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(query, BIND, port=port, timeout=5)
    return dns.query.udp(query, BIND, port=port, timeout=5)


def addresses(answer: dns.message.Message) -> set[str]:
    return {item.address for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for item in rrset}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(shared_mode, "127.0.1.20"), (bridged_mode, "127.0.0.50")],
    ids=["shared-the-macs-lan-address", "bridged-the-gateways-pool-address"],
)
def test_coredns_answers_every_routed_hostname_and_nothing_else(
    mode: Any, expected: str, coredns_bin: str, tmp_path: Path
) -> None:
    cfg = mode()
    hostnames = sorted(lan_dns.records(cfg))
    routed = {f"{app.hostname}.{cfg.domain}" for app in cfg.deployed_apps.values() if app.routed}
    assert routed | {f"{cfg.monitoring.grafana_hostname}.{cfg.domain}"} == set(hostnames)
    running = start(coredns_bin, cfg, tmp_path)
    port = next(running)
    try:
        for host in hostnames:
            answer = ask(port, host)
            assert answer.rcode() == dns.rcode.NOERROR, (host, answer)
            assert addresses(answer) == {expected}, (host, answer)
        assert addresses(ask(port, hostnames[0], tcp=True)) == {expected}, "TCP too (large answers, some routers)"
        # An IPv4-only name: no AAAA record, yet the name exists (NOERROR, empty), so dual-stack clients use A.
        aaaa = ask(port, hostnames[0], "AAAA")
        assert (aaaa.rcode(), aaaa.answer) == (dns.rcode.NOERROR, [])
        unknown = ask(port, f"not-an-app.{cfg.domain}")
        assert unknown.rcode() == dns.rcode.NXDOMAIN and not unknown.answer
        [soa] = unknown.authority  # the denial carries the zone's SOA, so resolvers cache it briefly (RFC 2308)
        assert soa.rdtype == dns.rdatatype.SOA and soa[0].minimum == lan_dns.NEGATIVE_TTL
        assert ask(port, f"deeper.{hostnames[0]}").rcode() == dns.rcode.NXDOMAIN
        for outside in ("example.org", f"{cfg.domain}.evil.test", "com"):
            refused = ask(port, outside)
            assert refused.rcode() == dns.rcode.REFUSED and not refused.answer, outside
    finally:
        running.close()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"gateway says hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_macs_forwarder_relays_dns_and_web_to_the_pool_and_the_doctor_reads_it(
    coredns_bin: str, tmp_path: Path
) -> None:
    """Shared mode on one machine: CoreDNS stands at the DNS pool address, an HTTP server at the gateway's.

    The forwarder listens on the "Mac's LAN address" (another 127.0.0.x) and relays to them;
    the doctor's own DNS client asks through it, as ``inv doctor`` does on the Mac.
    """
    cfg = shared_mode()
    mac = "127.0.0.154"
    running = start(coredns_bin, cfg, tmp_path)
    dns_port = next(running)
    web = http.server.ThreadingHTTPServer((BIND, 0), _Hello)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    web_port = int(web.server_address[1])
    relay_dns, relay_web = free_port(mac), free_port(mac)
    routes = [
        forwarder.Route("udp", relay_dns, BIND, dns_port),
        forwarder.Route("tcp", relay_dns, BIND, dns_port),
        forwarder.Route("tcp", relay_web, BIND, web_port),
    ]
    loop = asyncio.new_event_loop()
    started = asyncio.Event()
    task = loop.create_task(forwarder.serve(routes, host=mac, started=started))

    def relay() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not started.is_set():
            assert time.monotonic() < deadline, "the forwarder did not start listening"
            time.sleep(0.05)
        host = sorted(lan_dns.records(cfg))[0]
        for tcp in (False, True):
            query = dns.message.make_query(host, "A")
            via = dns.query.tcp if tcp else dns.query.udp
            answer = via(query, mac, port=relay_dns, timeout=5)
            assert addresses(answer) == {"127.0.1.20"}, ("tcp" if tcp else "udp", answer)
        assert lan_doctor.query_a(mac, relay_dns, host) == ["127.0.1.20"]
        with pytest.raises(lan_doctor.DnsFailure, match="NXDOMAIN"):
            lan_doctor.query_a(mac, relay_dns, f"nothing.{cfg.domain}")
        with pytest.raises(lan_doctor.DnsFailure, match="REFUSED"):
            lan_doctor.query_a(mac, relay_dns, "example.org")
        with urllib.request.urlopen(f"http://{mac}:{relay_web}/", timeout=5) as page:
            assert page.read() == b"gateway says hello"
        rows = lan_doctor.checks(
            cfg, resolve=lambda name: [], ask=lambda _s, _p, name: lan_doctor.query_a(mac, relay_dns, name)
        )
        assert [(r.name, r.status) for r in rows] == [("lan hostnames", "warn"), ("lan forwarder", "ok")]
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=10)
        web.shutdown()
        running.close()
