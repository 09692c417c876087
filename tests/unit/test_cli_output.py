"""What the CLI prints when things go wrong, and what it prints for machines (--json)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import urllib3
from invoke.exceptions import Exit

from helpers import LOOPBACK_CONFIG, REFERENCE_CONFIG, run_cli
from homelab.backup.restic import Snapshot
from homelab.backup.tasks import run_rows
from homelab.cli import namespace
from homelab.config import loader
from homelab.core.kube import unreachable
from homelab.core.tasks import _exit_for
from homelab.gitops.tasks import application_rows

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


# The read tasks and the keys of the JSON each prints with --json (a list of rows, or one object).
JSON_SHAPES: dict[str, set[str]] = {
    "status": {"target", "ok", "layers"},
    "doctor": {"name", "status", "detail", "fix"},
    "vm.status": {"name", "state", "ip", "cpus", "memory", "role", "provider"},
    "apps.list": {"name", "enabled", "replicas", "critical", "storage", "host", "reached_by", "image"},
    "apps.status": {"name", "available", "waiting"},
    "backup.list": {"time", "snapshot", "status", "run", "verified"},
    "gitops.status": {"name", "sync", "health", "revision"},
    "versions.check": {"component", "kind", "address", "chart", "version", "ok", "status", "url", "detail", "fix"},
}


def task_named(dotted: str) -> Any:
    collection: Any = namespace
    *path, name = dotted.split(".")
    for part in path:
        collection = collection.collections[part]
    return collection.tasks[name]


@pytest.mark.parametrize("name", sorted(JSON_SHAPES))
def test_every_read_task_takes_json_and_its_help_names_the_keys(name: str) -> None:
    task = task_named(name)
    assert "json" in task.help, f"{name} has no --json"
    shown = task.help["json"]
    assert all(key in shown for key in JSON_SHAPES[name]), (name, shown)


def loopback_env() -> dict[str, str]:
    return {"HOMELAB_CONFIG": str(LOOPBACK_CONFIG)}


def reference_env() -> dict[str, str]:
    """The reference homelab (eight apps); run_cli isolates it from the network, and apps.list plans only."""
    return {"HOMELAB_CONFIG": str(REFERENCE_CONFIG)}


def test_apps_list_json_is_one_row_per_catalog_app_with_the_documented_keys() -> None:
    result = run_cli(["apps.list", "--json"], reference_env())
    assert result.code == 0, result.stderr
    rows = json.loads(result.stdout)
    cfg = loader.load(REFERENCE_CONFIG, {}).config
    assert rows and [row["name"] for row in rows] == sorted(cfg.apps)
    assert all(set(row) == JSON_SHAPES["apps.list"] for row in rows)
    assert {row["reached_by"] for row in rows} <= {"internet", "lan", None}
    for row in rows:
        assert (row["host"] is None) == (row["reached_by"] is None), row


def test_apps_list_table_and_json_say_the_same() -> None:
    table = run_cli(["apps.list"], reference_env()).stdout.splitlines()[1:]
    rows = json.loads(run_cli(["apps.list", "--json"], reference_env()).stdout)
    assert [line.split()[0] for line in table] == [row["name"] for row in rows]
    assert [line.split()[-1] for line in table] == [row["image"] for row in rows]


def test_status_json_names_every_layer_and_exits_1_when_one_fails() -> None:
    result = run_cli(["status", "--json", "--target", "sandbox"], loopback_env())
    assert result.code == 1  # the loopback state dir holds no sandbox
    report = json.loads(result.stdout)
    assert set(report) == JSON_SHAPES["status"]
    assert report["target"] == "sandbox" and report["ok"] is False
    assert [layer["name"] for layer in report["layers"]] == ["sandbox", "gitops"]
    assert all(set(layer) == {"name", "ok", "summary"} for layer in report["layers"])


def test_vm_status_json_is_one_row_per_node() -> None:
    result = run_cli(["vm.status", "--json"], loopback_env())
    assert result.code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]
    assert all(set(row) == JSON_SHAPES["vm.status"] for row in rows)


def test_gitops_status_rows_default_what_argo_cd_has_not_written_yet() -> None:
    apps = [
        {
            "metadata": {"name": "b"},
            "status": {"sync": {"status": "Synced", "revision": "abc"}, "health": {"status": "Healthy"}},
        },
        {"metadata": {"name": "a"}},
    ]
    assert application_rows(apps) == [
        {"name": "a", "sync": "Unknown", "health": "Unknown", "revision": None},
        {"name": "b", "sync": "Synced", "health": "Healthy", "revision": "abc"},
    ]
    assert all(set(row) == JSON_SHAPES["gitops.status"] for row in application_rows(apps))


def test_backup_list_rows_mark_verified_runs_and_keep_untagged_ones() -> None:
    snaps = [
        Snapshot("1a2b", "2026-12-01T03:00:00.123Z", ("status:complete", "run:2026-12-01T03-00"), ()),
        Snapshot("3c4d", "2026-12-02T03:00:00.456Z", (), ()),
    ]
    rows = run_rows(snaps, {"1a2b": "2026-12-01"})
    assert rows == [
        {
            "time": "2026-12-01T03:00:00.123Z",
            "snapshot": "1a2b",
            "status": "complete",
            "run": "2026-12-01T03-00",
            "verified": True,
        },
        {"time": "2026-12-02T03:00:00.456Z", "snapshot": "3c4d", "status": None, "run": None, "verified": False},
    ]
    assert all(set(row) == JSON_SHAPES["backup.list"] for row in rows)


def test_an_api_server_that_stops_answering_mid_request_is_unreachable_too() -> None:
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", 6443)  # never connected: only its name is read
    timed_out = urllib3.exceptions.ReadTimeoutError(pool, "/api", "Read timed out. (read timeout=5)")
    assert unreachable.message("apps.status", timed_out) == (
        "apps.status: the Kubernetes API server at 127.0.0.1:6443 is not reachable (timed out); "
        + unreachable.START_HINT
    )
