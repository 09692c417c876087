"""The doctor's LAN checks: does each app hostname resolve, from the Mac, to the address that serves it at home?

Two questions, both quick and neither fatal when the Mac is offline or the
router does not use the LAN DNS yet (warnings, with the fix):

- the system resolver (what a browser on the Mac gets) for every routed
  hostname, compared with ``homelab.net.dns.records``;
- in shared mode, the forwarder on the Mac's LAN address: one DNS query
  through it must come back from the LAN DNS server with the right answer.

The DNS query is built here (RFC 1035 section 4: header, one question, A
records in the answer), so the toolkit needs no DNS library at run time.
"""

from __future__ import annotations

import concurrent.futures
import secrets
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from homelab.config.schema import HomelabConfig
from homelab.net import dns, forwarder

if TYPE_CHECKING:
    from homelab.root.doctor import Check

TIMEOUT = 2.0  # seconds per lookup; all lookups run at once, so the doctor waits about this long in all
Resolve = Callable[[str], list[str]]
Ask = Callable[[str, int, str], list[str]]


class DnsFailure(Exception):
    """The server answered with an error code (NXDOMAIN, REFUSED, ...) or not at all."""


RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _skip_name(message: bytes, at: int) -> int:
    while True:
        length = message[at]
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name (RFC 1035 4.1.4)
            return at + 2
        if length == 0:
            return at + 1
        at += 1 + length


def query_a(server: str, port: int, name: str, timeout: float = TIMEOUT) -> list[str]:
    """The A records ``server`` answers for ``name`` over UDP; ``DnsFailure`` on an error code or silence."""
    ident = secrets.randbits(16)
    question = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.rstrip(".").split("."))
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + b"\0" + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, (server, port))
            while True:
                reply, _ = sock.recvfrom(4096)
                if len(reply) >= 12 and struct.unpack("!H", reply[:2])[0] == ident:
                    break
        except OSError as err:
            raise DnsFailure(f"no answer from {server}:{port} ({err})") from None
    _, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", reply[:12])
    if flags & 0xF:
        raise DnsFailure(RCODES.get(flags & 0xF, f"rcode {flags & 0xF}"))
    at = 12
    for _ in range(qdcount):
        at = _skip_name(reply, at) + 4
    found = []
    for _ in range(ancount):
        at = _skip_name(reply, at)
        rtype, _, _, length = struct.unpack("!HHIH", reply[at : at + 10])
        at += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(reply[at : at + 4]))
        at += length
    return found


def system_addresses(name: str) -> list[str]:
    """What the Mac's own resolver says (``getaddrinfo``, as a browser asks); empty when it cannot resolve."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def _each(names: list[str], lookup: Callable[[str], list[str]]) -> dict[str, list[str] | str]:
    """Every lookup at once with one deadline: an unreachable resolver costs one timeout, not one per name."""
    results: dict[str, list[str] | str] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(names) or 1))
    futures = {pool.submit(lookup, name): name for name in names}
    done, _ = concurrent.futures.wait(futures, timeout=TIMEOUT + 1)
    for future, name in futures.items():
        if future not in done:
            results[name] = "no answer in time"
            continue
        try:
            results[name] = future.result()
        except (DnsFailure, OSError) as err:
            results[name] = str(err)
    pool.shutdown(wait=False, cancel_futures=True)
    return results


def checks(cfg: HomelabConfig, resolve: Resolve = system_addresses, ask: Ask | None = None) -> list[Check]:
    """The LAN rows of ``inv doctor``; ``resolve`` and ``ask`` are the system resolver and a DNS query."""
    from homelab.root.doctor import ok, warn

    if not cfg.lan_dns.enabled:
        return [ok("lan dns", "off (lan_dns.enabled: false): LAN clients need their own records for the apps")]
    wanted = dns.records(cfg)
    fix = (
        f"point the router's DNS (or a Pi-hole conditional forward for {cfg.domain}) at "
        f"{cfg.host.lan_ip if forwarder.needed(cfg) else cfg.lan_dns.address}; docs/guide/home-network.md"
    )
    rows = []
    answers = _each(sorted(wanted), resolve)
    wrong = {name: got for name, got in answers.items() if got != [wanted[name]]}
    if not wrong:
        rows.append(ok("lan hostnames", f"all {len(wanted)} resolve on this Mac to {sorted(set(wanted.values()))[0]}"))
    else:
        name, got = sorted(wrong.items())[0]
        shown = ", ".join(got) if isinstance(got, list) and got else (got or "nothing")
        rows.append(
            warn(
                "lan hostnames",
                f"{len(wrong)} of {len(wanted)} do not resolve here to what serves them at home: "
                f"{name} -> {shown} (wanted {wanted[name]})",
                fix,
            )
        )
    if forwarder.needed(cfg) and cfg.host.lan_ip:
        lan_ip, probe = cfg.host.lan_ip, sorted(wanted)[0]
        ask = ask or (lambda server, port, name: query_a(server, port, name))
        got = _each([probe], lambda name: ask(lan_ip, 53, name))[probe]
        if got == [wanted[probe]]:
            rows.append(ok("lan forwarder", f"{lan_ip}:53 answers {probe} with {got[0]} (through the Mac)"))
        else:
            rows.append(
                warn(
                    "lan forwarder",
                    f"{lan_ip}:53 answered {probe} with {got or 'nothing'}, wanted {wanted[probe]}",
                    "inv net.forwarder (installs the launchd agent that relays ports 53, 80 and 443)",
                )
            )
    return rows


def socket_vmnet_mode(cfg: HomelabConfig, args: str | None) -> Check:
    """Bridged mode's socket_vmnet: run with --vmnet-mode=bridged on ``lima.bridge_interface``.

    socket_vmnet's README ("Bridged mode") starts it with those two flags and the
    socket path as its last argument; it then runs no DHCP of its own (the router
    does), so the shared-mode DHCP check does not apply.
    """
    from homelab.root.doctor import ok, warn

    interface = cfg.lima.bridge_interface
    fix = (
        f"run socket_vmnet with --vmnet-mode=bridged --vmnet-interface={interface} {cfg.lima.socket} "
        "(its launchd plist), or set lima.socket to the socket of the one that does"
    )
    if args is None:
        return warn("socket_vmnet bridged", "socket_vmnet is not running", fix)
    words = args.split()
    if "--vmnet-mode=bridged" in words and f"--vmnet-interface={interface}" in words:
        return ok("socket_vmnet bridged", f"bridged onto {interface}; the router runs DHCP")
    return warn("socket_vmnet bridged", f"the socket_vmnet seen runs {args!r}, not bridged onto {interface}", fix)
