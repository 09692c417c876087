"""What one task invocation works with: the loaded config, its state, its executor.

Built once per task from the config layers plus that task's CLI flags. SSH
connections to nodes are opened lazily, pinned-key verified, and closed when
the session ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from homelab.config.loader import LoadedConfig, load
from homelab.config.schema import HomelabConfig, Node
from homelab.core.errors import UsageError
from homelab.core.executor import Executor, Output, print_line
from homelab.core.paths import resolve_in_project
from homelab.core.ssh import Endpoint, KnownHosts, connect


def ssh_host(cfg: HomelabConfig, node: Node) -> str:
    """Where SSH reaches a node: its address, or Lima's port forward on loopback for user-v2 VMs."""
    if node.provider == "lima" and cfg.lima.network == "user-v2":
        return "127.0.0.1"
    return node.ip


class Session:
    """Config, state paths and executor for one task run."""

    def __init__(
        self,
        ctx: Any,
        overrides: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        config_path: Path | None = None,
        out: Output = print_line,
    ) -> None:
        self.loaded: LoadedConfig = load(config_path, {k: v for k, v in (overrides or {}).items() if v is not None})
        self.cfg: HomelabConfig = self.loaded.config
        self.state_dir = resolve_in_project(self.cfg.state_dir)
        self.known_hosts = KnownHosts(self.state_dir / "known_hosts")
        self.dry_run = dry_run
        self._connections: dict[str, Any] = {}
        self.executor = Executor(ctx, self.connection, dry_run=dry_run, out=out, kube=self.kube)

    def kube(self) -> Any:
        """A client for this homelab's cluster (its kubeconfig and context, never the current one)."""
        from homelab.core import cluster

        return cluster.connect(self)

    def node(self, name: str) -> Node:
        for node in self.cfg.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.cfg.nodes) or "none"
        raise UsageError(f"no node named {name!r} in the config (nodes: {known})")

    def endpoint(self, node: Node) -> Endpoint:
        return Endpoint(
            name=node.name,
            host=ssh_host(self.cfg, node),
            port=node.ssh_port or self.cfg.ssh.port,
            user=node.ssh_user or self.cfg.ssh.user,
            key_file=self.cfg.ssh.private_key,
        )

    def connection(self, name: str) -> Any:
        if name not in self._connections:
            self._connections[name] = connect(self.endpoint(self.node(name)), self.known_hosts)
        return self._connections[name]

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
