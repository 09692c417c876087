"""SSH to nodes with verified host keys, through fabric.

fabric's Connection trusts unknown hosts by default (paramiko's auto-add policy) and reads the
user's own known_hosts. Here each Connection gets a fresh paramiko client with
RejectPolicy and only the toolkit's pinned known_hosts file, so an unknown or
changed key stops the connection before any command runs. Keys are pinned when
the toolkit creates a node or when the user adopts one with a fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from homelab.core import state_files
from homelab.core.errors import HostKeyError, UnreachableHost

if TYPE_CHECKING:
    import paramiko
    from fabric import Connection


@dataclass(frozen=True)
class Endpoint:
    """Where a node's sshd listens and who we log in as."""

    name: str
    host: str
    port: int
    user: str
    key_file: str

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` form of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class KnownHosts:
    """The toolkit's own known_hosts file: the only keys it will accept."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> paramiko.HostKeys:
        import paramiko

        keys = paramiko.HostKeys()
        # Checked first by the state-file path: a FIFO, a directory or binary data is named, not waited on.
        if self.text():
            try:
                keys.load(str(self.path))
            except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, ValueError, UnicodeError) as err:
                raise state_files.broken(
                    self.path, state_files.KNOWN_HOSTS, f"a line is not a host key ({err})"
                ) from None
        return keys

    def lookup(self, endpoint: Endpoint) -> paramiko.PKey | None:
        entry = self._load().lookup(endpoint.known_hosts_name)
        if not entry:
            return None
        return next(iter(entry.values()))

    def text(self) -> str:
        return state_files.read_text(self.path, state_files.KNOWN_HOSTS) or ""

    def with_keys(self, pins: list[tuple[Endpoint, paramiko.PKey]]) -> str | None:
        """The file's text with every key pinned (what a ``WriteFile`` writes); None when all already are.

        Refuses to replace a different pinned key.
        """
        lines = []
        for endpoint, key in pins:
            current = self.lookup(endpoint)
            if current is None:
                lines.append(f"{endpoint.known_hosts_name} {key.get_name()} {key.get_base64()}\n")
            elif current.asbytes() != key.asbytes():
                raise HostKeyError(
                    f"{endpoint.name}: a different host key is already pinned for {endpoint.known_hosts_name} "
                    f"in {self.path}; if the node was rebuilt, run `inv vm.forget {endpoint.name}` first"
                )
        return self.text() + "".join(lines) if lines else None

    def without(self, endpoints: list[Endpoint]) -> str | None:
        """The file's text without the endpoints' keys; None when none of them is pinned."""
        names = {endpoint.known_hosts_name for endpoint in endpoints}
        text = self.text()
        keep = "".join(line for line in text.splitlines(keepends=True) if line.split(" ", 1)[0] not in names)
        return keep if keep != text else None

    def record(self, endpoint: Endpoint, key: paramiko.PKey) -> bool:
        """Pin ``key``; refuse to replace a different pinned key. True if added."""
        from homelab.core.executor import write_local

        text = self.with_keys([(endpoint, key)])
        if text is not None:
            write_local(self.path, text.encode(), 0o600)
        return text is not None

    def forget(self, endpoint: Endpoint) -> bool:
        from homelab.core.executor import write_local

        text = self.without([endpoint])
        if text is not None:
            write_local(self.path, text.encode(), 0o600)
        return text is not None


def scan_host_key(endpoint: Endpoint, timeout: float = 10.0) -> paramiko.PKey:
    """Ask the server for its host key (no authentication, nothing run)."""
    import socket

    import paramiko

    try:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except OSError as err:
        raise UnreachableHost(f"{endpoint.name}: cannot reach {endpoint.host}:{endpoint.port}: {err}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def connect(endpoint: Endpoint, known_hosts: KnownHosts, timeout: float = 10.0) -> Connection:
    """An open fabric Connection that has verified the host's pinned key."""
    import paramiko
    from fabric import Config, Connection

    config = Config(overrides={"load_ssh_configs": False, "run": {"in_stream": False}})
    conn = Connection(
        endpoint.host,
        user=endpoint.user,
        port=endpoint.port,
        config=config,
        connect_timeout=timeout,
        connect_kwargs={
            "key_filename": [str(Path(endpoint.key_file).expanduser())],
            "allow_agent": False,
            "look_for_keys": False,
        },
    )
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if known_hosts.path.is_file():
        client.load_host_keys(str(known_hosts.path))
    conn.client = client
    try:
        conn.open()
    except paramiko.BadHostKeyException as err:
        raise HostKeyError(
            f"{endpoint.name}: host key for {endpoint.known_hosts_name} CHANGED (now {fingerprint(err.key)}, "
            f"pinned {fingerprint(err.expected_key)}); refusing to connect. If you rebuilt the node, run "
            f"`inv vm.forget {endpoint.name}` and adopt it again"
        ) from None
    except paramiko.SSHException as err:
        if "not found in known_hosts" in str(err):
            raise HostKeyError(
                f"{endpoint.name}: host key for {endpoint.known_hosts_name} is not pinned in {known_hosts.path}; "
                f"run `inv vm.adopt {endpoint.name} --fingerprint SHA256:...` with the fingerprint from the node"
            ) from None
        raise UnreachableHost(f"{endpoint.name}: SSH to {endpoint.known_hosts_name} failed: {err}") from None
    except OSError as err:
        raise UnreachableHost(f"{endpoint.name}: cannot reach {endpoint.known_hosts_name}: {err}") from None
    return conn
