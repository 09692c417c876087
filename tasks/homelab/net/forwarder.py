"""Shared mode's way in from the home LAN: the Mac relays its ports 53, 80 and 443 to the pool addresses.

In socket_vmnet's shared mode the MetalLB pool sits on the Mac's NAT network,
which only the Mac reaches. The LAN DNS server (``homelab.net.dns``) therefore
answers every hostname with the Mac's LAN address (``host.lan_ip``), and this
relay carries what arrives there on to the homelab: DNS (UDP and TCP) to
``lan_dns.address``, HTTP and HTTPS to the gateway (``ingress.load_balancer_ip``).
It is a plain byte relay: TLS stays end to end between the client and the gateway.

It runs as the user's launchd agent (``inv net.forwarder`` installs it), kept
alive by launchd. macOS lets a process without root bind ports below 1024 on
the unspecified address since Mojave (binding one address still needs root),
so the relay listens on 0.0.0.0 and needs no privilege. The agent's property list
holds only keys launchd.plist(5) documents
(https://keith.github.io/xcode-man-pages/launchd.plist.5.html): ``Label``,
``ProgramArguments``, ``WorkingDirectory``, ``EnvironmentVariables``,
``StandardOutPath``, ``StandardErrorPath``, ``RunAtLoad`` and ``KeepAlive``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from homelab.backup import launchd
from homelab.config.schema import HomelabConfig
from homelab.core.plan import Note, Plan, Run, WriteFile

LABEL = "org.homelab.lan-forwarder"
DOCUMENTED_KEYS = launchd.COMMON_KEYS | {"KeepAlive"}
LISTEN = "0.0.0.0"  # noqa: S104 -- the LAN must reach it; macOS lets a user bind low ports only here
CONNECT_TIMEOUT = 10.0  # seconds to reach the pool address before a TCP client is dropped
UDP_IDLE = 60.0  # seconds a UDP client's upstream socket is kept without traffic
MAX_UDP_CLIENTS = 1024  # upstream sockets at once; past it the oldest is closed (a LAN, not the internet)


@dataclass(frozen=True)
class Route:
    """One relayed port: what listens on the Mac and where it goes."""

    protocol: Literal["tcp", "udp"]
    listen_port: int
    target: str
    target_port: int

    def __str__(self) -> str:
        return f"{self.protocol} {self.listen_port} -> {self.target}:{self.target_port}"


def routes(cfg: HomelabConfig) -> list[Route]:
    """DNS to the LAN DNS server, web to the gateway: the ports the LAN DNS sends clients to."""
    found: list[Route] = []
    if cfg.lan_dns.enabled:
        found += [Route(p, 53, cfg.lan_dns.address, 53) for p in ("udp", "tcp")]
    if cfg.ingress.enabled:
        found += [Route("tcp", port, cfg.ingress.load_balancer_ip, port) for port in (80, 443)]
    return found


def needed(cfg: HomelabConfig) -> bool:
    """Whether the Mac must forward: a shared-mode Lima homelab that serves the LAN."""
    from homelab.net.checks import bridged

    return cfg.target == "lima" and not bridged(cfg) and cfg.lan_dns.enabled and cfg.host.lan_ip is not None


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _relay_tcp(route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.wait_for(
            asyncio.open_connection(route.target, route.target_port), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError):
        writer.close()
        return
    try:
        await asyncio.gather(_copy(reader, upstream_writer), _copy(upstream_reader, writer))
    finally:
        for end in (writer, upstream_writer):
            end.close()


class _Upstream(asyncio.DatagramProtocol):
    """One client's socket towards the target: answers go back to that client through the listener."""

    def __init__(self, listener: asyncio.DatagramTransport, client: tuple[str, int]) -> None:
        self.listener, self.client, self.used = listener, client, time.monotonic()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.used = time.monotonic()
        self.listener.sendto(data, self.client)


class _UdpRelay(asyncio.DatagramProtocol):
    def __init__(self, route: Route) -> None:
        self.route = route
        self.transport: asyncio.DatagramTransport | None = None
        self.clients: dict[tuple[str, int], tuple[asyncio.DatagramTransport, _Upstream]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        asyncio.get_running_loop().create_task(self._forward(data, (str(addr[0]), addr[1])))

    async def _forward(self, data: bytes, client: tuple[str, int]) -> None:
        assert self.transport is not None
        self.expire()
        if client not in self.clients:
            if len(self.clients) >= MAX_UDP_CLIENTS:
                oldest = min(self.clients, key=lambda c: self.clients[c][1].used)
                self.clients.pop(oldest)[0].close()
            listener = self.transport
            try:
                upstream, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: _Upstream(listener, client), remote_addr=(self.route.target, self.route.target_port)
                )
            except OSError:
                return
            self.clients[client] = (upstream, protocol)
        upstream, protocol = self.clients[client]
        protocol.used = time.monotonic()
        upstream.sendto(data)

    def expire(self) -> None:
        now = time.monotonic()
        for client in [c for c, (_, p) in self.clients.items() if now - p.used > UDP_IDLE]:
            self.clients.pop(client)[0].close()


async def serve(relayed: list[Route], host: str = LISTEN, started: asyncio.Event | None = None) -> None:
    """Relay every route until cancelled; ``started`` is set once every port listens."""
    loop = asyncio.get_running_loop()
    closers: list[Any] = []
    try:
        for route in relayed:
            if route.protocol == "tcp":

                async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, route: Route = route) -> None:
                    await _relay_tcp(route, r, w)

                server = await asyncio.start_server(handle, host, route.listen_port, reuse_address=True)
                closers.append(server)
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, route.listen_port))
                transport, _ = await loop.create_datagram_endpoint(functools.partial(_UdpRelay, route), sock=sock)
                closers.append(transport)
        if started is not None:
            started.set()
        await asyncio.Event().wait()
    finally:
        for closer in closers:
            closer.close()


def agent(*, program: Path, workdir: Path, config: Path, log: Path) -> dict[str, Any]:
    """The agent's property list as a value: ``homelab net.forward``, started at login and kept running."""
    return {
        "Label": LABEL,
        "ProgramArguments": [str(program), "net.forward"],
        "WorkingDirectory": str(workdir),
        "EnvironmentVariables": {"HOMELAB_CONFIG": str(config)},
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
        "RunAtLoad": True,
        "KeepAlive": True,  # launchd starts it again whenever it exits
    }


def plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def plan(
    executor: Any, launchctl: str, wanted: dict[str, Any], home: Path, remove: bool, uid: int | None = None
) -> Plan:
    """The writes and ``launchctl`` calls that install or remove the agent; empty when in place.

    The same shape as ``backup.launchd.plan``: a changed plist is booted out and
    bootstrapped again, since launchd keeps running the copy it loaded.
    """
    uid = os.getuid() if uid is None else uid
    target = plist_path(home)
    service = f"{launchd.domain(uid)}/{LABEL}"
    loaded = (
        executor.observe(Run((launchctl, "print", service), why="is the forwarder loaded"), check=False).exited == 0
    )
    data = launchd.render(wanted)
    current = target.read_bytes() if target.is_file() else None
    result = Plan(f"net.forwarder: {'remove' if remove else 'install'} the launchd agent {LABEL}")
    if remove:
        if loaded:
            result.add(Run((launchctl, "bootout", service), why="stop relaying the LAN's ports"))
        if current is not None:
            result.add(Run(("rm", "-f", str(target)), why="the agent's property list"))
        return result if not result.empty else result.add(Note(f"launchd: the agent {LABEL} is already absent"))
    if loaded and current == data:
        return result.add(Note(f"launchd: the agent {LABEL} is already loaded as configured"))
    if loaded:
        result.add(Run((launchctl, "bootout", service), why="launchd keeps the copy it loaded: unload it first"))
    if current != data:
        result.add(WriteFile(str(target), data, 0o644, why="the agent's property list"))
    result.add(Run((launchctl, "bootstrap", launchd.domain(uid), str(target)), why="load the agent"))
    return result


def run_forever(cfg: HomelabConfig) -> None:
    """``net.forward``: relay until stopped (launchd's agent runs this)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(routes(cfg)))
