"""Runs with the reference config happen in an empty network namespace: a stray connection fails at once.

The reference config names real machines (192.168.105.x). If a test, the bench or
CI ran a task with it on the host's network, a mistake would send traffic to
whatever answers there on the developer's LAN. scripts/no_network.py runs a
command with only loopback; run_cli uses it for every config that names an
address beyond loopback, unasked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import (
    LOOPBACK_CONFIG,
    NO_NETWORK,
    REFERENCE_CONFIG,
    loopback_data,
    may_reach_beyond_loopback,
    run_cli,
    without_network,
)

pytestmark = pytest.mark.integration

# Inside the wrapper: a node of the reference config, then a server on loopback.
PROBE = """
import errno, os, socket
try:
    socket.create_connection(("192.168.105.10", 22), timeout=5)
    print("reached 192.168.105.10")
except OSError as err:
    print("192.168.105.10:", errno.errorcode.get(err.errno, err))
server = socket.create_server(("127.0.0.1", 0))
socket.create_connection(server.getsockname(), timeout=5).close()
print("loopback ok; uid", os.getuid())
"""


def probe(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``argv`` (a wrapped PROBE); the result and how many seconds it took."""
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return done, time.monotonic() - start


def test_inside_the_wrapper_a_real_address_is_unreachable_at_once_and_loopback_works() -> None:
    done, seconds = probe(without_network([sys.executable, "-c", PROBE]))
    assert done.returncode == 0, done.stderr
    assert "192.168.105.10: ENETUNREACH" in done.stdout
    assert f"loopback ok; uid {os.getuid()}" in done.stdout
    assert seconds < 5  # refused locally, not a connect timeout


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become nobody")
def test_without_root_the_wrapper_isolates_too_or_runs_nothing() -> None:
    """Unprivileged: a user namespace keeping the caller's uid; if the kernel forbids it, no run at all."""
    python = shutil.which("python3", path="/usr/bin:/bin")  # the venv's may sit under root's 0700 home
    if python is None:
        pytest.skip("no system python3 for nobody to run")
    done, _ = probe(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, str(NO_NETWORK), python, "-c", PROBE]
    )
    if done.returncode == 125:
        assert "cannot make an empty network namespace" in done.stderr
        assert done.stdout == ""  # the command never ran
    else:
        assert done.returncode == 0, done.stderr
        assert "192.168.105.10: ENETUNREACH" in done.stdout
        assert "loopback ok; uid 65534" in done.stdout


def test_preflight_with_the_reference_config_fails_cleanly_inside(tmp_path: Path) -> None:
    """Reference config, no flag asked: run_cli isolates it, and every node is named as unreachable."""
    env = {"HOME": str(tmp_path), "HOMELAB__STATE_DIR": str(tmp_path / "state")}  # no ~/.ssh of the developer
    start = time.monotonic()
    result = run_cli(["k3s.preflight"], env)
    seconds = time.monotonic() - start
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert "preflight failed; no node was changed" in result.output
    for node, ip in (("k3s-server", "192.168.105.10"), ("k3s-worker-1", "192.168.105.11")):
        assert f"{node}: cannot reach {ip}: [Errno 101] Network is unreachable" in result.output
    assert seconds < 60


def write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "homelab.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_configs_naming_any_address_beyond_loopback_are_isolated(tmp_path: Path) -> None:
    assert may_reach_beyond_loopback({})  # HOMELAB_CONFIG unset: the reference
    assert may_reach_beyond_loopback({"HOMELAB_CONFIG": str(REFERENCE_CONFIG)})
    loopback = {"HOMELAB_CONFIG": write(tmp_path, loopback_data())}
    assert not may_reach_beyond_loopback(loopback)
    assert not may_reach_beyond_loopback({"HOMELAB_CONFIG": str(LOOPBACK_CONFIG)})
    assert may_reach_beyond_loopback({**loopback, "HOMELAB__K3S__API_ENDPOINT": "https://10.1.2.3:6443"})
    data = loopback_data()
    del data["metallb"]  # the schema's default pool is on 192.168.105.x
    assert may_reach_beyond_loopback({"HOMELAB_CONFIG": write(tmp_path, data)})


def test_a_config_that_does_not_load_is_isolated(tmp_path: Path) -> None:
    """If a validator let it through by mistake, the run fails instead of sending traffic."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [{name: a, role: server, ip: 192.168.105.300}]\n")
    assert may_reach_beyond_loopback({"HOMELAB_CONFIG": str(bad)})
