"""The sandbox cluster, started once per test run (per xdist worker) and removed after it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from backup_support import BackupEnv, Receiver, make_backup_env, start_receiver
from invoke import Context
from k3s_nodes import NODES, Lab, embedded_kubeconfig, start_node

from helpers import loopback_data
from homelab.core.kube import Kube
from homelab.core.session import Session
from homelab.sandbox import cluster as sandbox
from sshd import keygen

# The modules that take longest, longest first. nox runs this suite on several xdist workers,
# one module per worker at a time, in collection order: starting the long ones first keeps
# one of them from being left alone on a worker at the end while the others sit idle.
LONGEST_FIRST = (
    "test_real_vms.py",
    "test_sandbox_gitops.py",
    "test_up_interrupted.py",
    "test_rebuild_drill.py",
    "test_backup.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the longest modules first; the rest keep pytest's order."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: tests within a module keep their order


@pytest.fixture(scope="session")
def sandbox_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """A running sandbox built from the loopback config, state in a temp dir."""
    base = tmp_path_factory.mktemp("sandbox")
    data = loopback_data()
    data["state_dir"] = str(base / "state")
    config = base / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    session = Session(Context(), config_path=config, out=lambda _: None)
    sandbox.ensure_up(session)
    yield session
    sandbox.tear_down(session)


@pytest.fixture(scope="session")
def kube(sandbox_session: Session) -> Kube:
    paths = sandbox.paths_for(sandbox_session.cfg, sandbox_session.state_dir)
    return Kube(paths.kubeconfig, paths.context)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    yield name
    kube.delete("v1", "Namespace", name)


@pytest.fixture
def applies_sent(kube: Kube, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URL of every server-side apply request this test sends through ``kube`` (each still sent for real)."""
    sent: list[str] = []
    real = kube.api.call_api

    def call_api(method: str, url: str, header_params: dict[str, str] | None = None, *args: Any, **kwargs: Any) -> Any:
        if (header_params or {}).get("Content-Type") == "application/apply-patch+yaml":
            sent.append(url)
        return real(method, url, header_params, *args, **kwargs)

    monkeypatch.setattr(kube.api, "call_api", call_api)
    return sent


def sandbox_config_path(session: Session) -> Path:
    return session.loaded.files[0]


@pytest.fixture
def lab(tmp_path: Path, sandbox_session: Session, kube: Kube) -> Iterator[Lab]:
    """Three K3S test nodes (sshd in their own namespaces) whose k3s.yaml points at the sandbox."""
    key = tmp_path / "client_ed25519"
    keygen(key)
    k3s_yaml, _ = embedded_kubeconfig(sandbox_session)
    nodes = []
    for name, ip in NODES:
        node = start_node(name, ip, tmp_path / name, key)
        (node.root / "lib" / "fake-k3s.yaml").write_text(yaml.safe_dump(k3s_yaml))
        nodes.append(node)
    made = Lab(tmp_path, sandbox_session, nodes, key)
    yield made
    for node in [*nodes, *made.nodes.values()]:  # with the nodes a test restarted (stopping twice is harmless)
        node.stop()
    for name, _ in NODES:
        kube.cordon(name, unschedulable=False)


@pytest.fixture
def bk(tmp_path: Path, sandbox_session: Session, receiver: Receiver) -> BackupEnv:
    """A homelab config backing up the sandbox into a fresh restic repository under ``tmp_path``."""
    receiver.requests.clear()
    kubeconfig = sandbox.paths_for(sandbox_session.cfg, sandbox_session.state_dir).kubeconfig
    return make_backup_env(tmp_path, kubeconfig, receiver)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A local HTTP server standing in for Telegram and the dead-man's switch."""
    found, server = start_receiver()
    yield found
    server.shutdown()
