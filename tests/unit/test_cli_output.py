"""What the CLI prints when things go wrong, and what it prints for machines (--json)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import urllib3
from invoke.exceptions import Exit

from helpers import LOOPBACK_CONFIG, run_cli
from homelab.core.kube import unreachable
from homelab.core.tasks import _exit_for

A_DEAD_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: gone
  cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: not-a-secret}}
contexts:
- name: gone
  context: {{cluster: gone, user: u}}
"""


def a_closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def refused() -> urllib3.exceptions.MaxRetryError:
    port = a_closed_port()
    try:
        urllib3.PoolManager(retries=0).request("GET", f"https://127.0.0.1:{port}/version")
    except urllib3.exceptions.MaxRetryError as err:
        return err
    raise AssertionError("a closed port answered")


def test_an_unreachable_api_server_is_one_line_that_names_it_and_the_fix() -> None:
    err = refused()
    port = err.pool.port
    exit_ = _exit_for("status", err)
    assert isinstance(exit_, Exit)
    assert exit_.message == (
        f"status: the Kubernetes API server at 127.0.0.1:{port} is not reachable (connection refused); "
        f"{unreachable.START_HINT}"
    )
    assert exit_.code == 1


def test_an_unreachable_api_server_is_found_behind_a_wrapping_error() -> None:
    try:
        try:
            raise refused()
        except urllib3.exceptions.MaxRetryError as inner:
            raise RuntimeError("listing Applications") from inner
    except RuntimeError as outer:
        assert unreachable.message("gitops.status", outer) is not None


def test_any_other_error_is_still_a_bug_report() -> None:
    assert unreachable.message("status", RuntimeError("boom")) is None
    exit_ = _exit_for("status", RuntimeError("boom"))
    assert isinstance(exit_, Exit)
    assert "this is a bug in the toolkit" in str(exit_.message)


@pytest.mark.parametrize("task", ["status", "gitops.status"])
def test_a_read_task_against_a_stopped_cluster_says_so_once_and_how_to_start_it(tmp_path: Path, task: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(A_DEAD_KUBECONFIG.format(port=a_closed_port()))
    env = {
        "HOMELAB_CONFIG": str(LOOPBACK_CONFIG),
        "HOMELAB__KUBECONFIG": str(kubeconfig),
        "HOMELAB__KUBE_CONTEXT": "gone",
    }
    result = run_cli([task, "--target", "existing"], env)
    assert result.code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "is not reachable (connection refused)" in lines[0]
    assert f"check that the cluster of context 'gone' in {kubeconfig} is running" in lines[0]
    assert "bug" not in result.output and "MaxRetryError" not in result.output


def test_a_config_error_is_printed_once_on_stderr_and_never_on_stdout(tmp_path: Path) -> None:
    env = {"HOMELAB_CONFIG": str(LOOPBACK_CONFIG), "HOMELAB__K3S__VERSION": "bogus"}
    for task in (["status"], ["up", "--dry-run"], ["doctor"], ["config.validate"]):
        result = run_cli(task, env)
        assert result.code == 2, task
        assert result.stdout == "", task
        assert result.stderr.count("k3s.version: 'bogus'") == 1, (task, result.stderr)
