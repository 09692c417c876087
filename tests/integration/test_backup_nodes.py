"""backup.* against the K3S test nodes: datastore, app volumes over SSH, restore, host keys."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from backup_support import Receiver, app_deployment, local_path_claim
from k3s_nodes import Lab

from helpers import CliResult
from homelab.core.kube import Kube

pytestmark = pytest.mark.integration


@pytest.fixture
def app(lab: Lab, kube: Kube, receiver: Receiver) -> Iterator[tuple[str, Path]]:
    """K3S installed on the lab, one app whose volume lives on k3s-worker-1, backups configured."""
    name = f"notes-{uuid.uuid4().hex[:6]}"
    (lab.tmp / "pw").write_text("correct horse battery staple\n")
    (lab.tmp / "pw").chmod(0o600)
    (lab.tmp / "bot-token").write_text("555555555" + ":" + "Qq" * 17 + "r\n")
    (lab.tmp / "bot-token").chmod(0o600)
    lab.data["monitoring"]["telegram"]["bot_token"] = {"file": str(lab.tmp / "bot-token")}
    lab.data["apps"] = {
        name: {
            "image": "registry.home.arpa/notes:1",
            "port": 8080,
            "hostname": name,
            "storage": "1GiB",
            "sqlite_databases": ["notes.db"],
        }
    }
    lab.data["backup"] = {
        "repository": str(lab.tmp / "repo"),
        "password": {"file": str(lab.tmp / "pw")},
        "verify_read_percent": 100,
        "notify_api": receiver.url,
    }
    lab.data["secrets"] = {"sealed_dir": str(lab.tmp / "sealed")}
    lab.save()
    assert lab.cli("k3s.install").code == 0
    inside = local_path_claim(kube, name, "k3s-worker-1")
    host_dir = lab.nodes["k3s-worker-1"].path(inside)
    host_dir.mkdir(parents=True)
    yield name, host_dir
    kube.delete("v1", "Namespace", name)
    kube.delete("v1", "PersistentVolume", f"pv-{name}")


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def test_volume_round_trip_with_a_live_sqlite_writer(lab: Lab, app: tuple[str, Path]) -> None:
    name, volume = app
    (volume / "media").mkdir()
    (volume / "media" / "photo.bin").write_bytes(bytes(range(256)) * 400)
    (volume / "notes.txt").write_text("remember the milk\n")
    db = volume / "notes.db"
    connection = sqlite3.connect(db, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    connection.commit()
    stop = threading.Event()

    def write_forever() -> None:
        while not stop.is_set():
            connection.execute("INSERT INTO notes (body) VALUES (?)", ("x" * 500,))
            connection.commit()

    writer = threading.Thread(target=write_forever)
    writer.start()
    try:
        result = lab.cli("backup.run")
    finally:
        stop.set()
        writer.join()
        connection.close()
    assert result.code == 0, result.output
    assert "datastore" in result.stdout and "volumes" in result.stdout
    files_before = {k: v for k, v in digests(volume).items() if k != "notes.db"}
    verify = lab.cli("backup.verify")
    assert verify.code == 0, verify.output
    assert f"volumes/{name}/sqlite/notes.db: SQLite integrity ok" in verify.stdout
    assert "datastore/datastore: SQLite integrity ok" in verify.stdout

    for path in sorted(volume.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    restored = lab.cli("backup.restore", "--component", "volumes", "--yes")
    assert restored.code == 0, restored.output
    assert {k: v for k, v in digests(volume).items() if k != "notes.db"} == files_before
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert check.execute("SELECT count(*) FROM notes").fetchone()[0] > 0


def test_datastore_restore_without_the_matching_token_is_refused_before_anything_stops(
    lab: Lab, app: tuple[str, Path]
) -> None:
    assert lab.cli("backup.run").code == 0
    (lab.tmp / "k3s-token").write_text("a-different-cluster-token-value\n")
    result = lab.cli("backup.restore", "--component", "datastore", "--yes")
    assert result.code == 1
    assert "datastore restore refused" in result.stderr and "nothing was stopped" in result.stderr
    assert "a-different-cluster-token-value" not in result.output
    log = lab.nodes["k3s-server"].root / "lib" / "systemctl.log"
    assert not log.exists() or "stop" not in log.read_text()


def test_a_changed_host_key_is_refused_alerted_and_known_hosts_kept(
    lab: Lab, app: tuple[str, Path], receiver: Receiver
) -> None:
    known = lab.pin_wrong_key(1)
    before = known.read_bytes()
    marker = lab.nodes["k3s-worker-1"].root / "lib" / "installer-log.jsonl"
    marker_before = marker.read_text()
    receiver.requests.clear()
    result = lab.cli("backup.run")
    assert result.code == 3, result.output
    assert "k3s-worker-1: host key for" in result.stdout and "CHANGED" in result.stdout
    assert known.read_bytes() == before
    assert marker.read_text() == marker_before
    assert any("partial" in m for m in receiver.messages())
    assert yaml.safe_load(lab.config.read_text())["backup"]["notify_api"] == receiver.url


def start_app(kube: Kube, name: str, replicas: int) -> None:
    """A Deployment of ``replicas`` pods mounting the app's claim (kwok runs them on k3s-worker-1)."""
    kube.apply([app_deployment(name, replicas)])
    kube.wait_deployments([(name, name)], timeout=120)


# Stands in for ``find`` on the node: the restore's first step that touches the volume. It says it
# got there and waits until the test has looked at the cluster, then does find's job.
PAUSING_FIND = """#!/bin/sh
touch /var/lib/rancher/volume-write-reached
while [ -e /var/lib/rancher/volume-write-reached ]; do sleep 0.05; done
exec /usr/bin/find "$@"
"""


def test_volume_restore_stops_the_app_replaces_its_files_and_brings_it_back(
    lab: Lab, kube: Kube, app: tuple[str, Path]
) -> None:
    name, volume = app
    (volume / "notes.txt").write_text("before the backup\n")
    start_app(kube, name, replicas=2)
    assert lab.cli("backup.run").code == 0
    (volume / "notes.txt").write_text("written after the backup\n")
    (volume / "after.txt").write_text("a file the backup never saw\n")
    node = lab.nodes["k3s-worker-1"].root
    (node / "bin" / "find").write_text(PAUSING_FIND)
    (node / "bin" / "find").chmod(0o755)
    reached = node / "lib" / "volume-write-reached"
    result: list[CliResult] = []
    restoring = threading.Thread(
        target=lambda: result.append(lab.cli("backup.restore", "--component", "volumes", "--yes"))
    )
    restoring.start()
    try:
        deadline = time.monotonic() + 180
        while not reached.exists() and restoring.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reached.exists(), "the restore never reached the volume"
        at_write = {
            "pods": kube.list_objects("v1", "Pod", name),
            "replicas": kube.get("apps/v1", "Deployment", name, name)["spec"]["replicas"],
            "files": (volume / "notes.txt").read_text(),
        }
    finally:
        reached.unlink(missing_ok=True)
        restoring.join()
        (node / "bin" / "find").unlink()
    [restored] = result
    assert restored.code == 0, restored.output
    assert at_write == {"pods": [], "replicas": 0, "files": "written after the backup\n"}
    assert (volume / "notes.txt").read_text() == "before the backup\n"
    assert not (volume / "after.txt").exists()
    assert kube.get("apps/v1", "Deployment", name, name)["spec"]["replicas"] == 2
    kube.wait_deployments([(name, name)], timeout=60)
    assert "scale to 0 (from 2)" in restored.stdout and "scale back to 2" in restored.stdout


def test_a_failing_volume_restore_still_brings_the_app_back_to_its_replicas(
    lab: Lab, kube: Kube, app: tuple[str, Path]
) -> None:
    name, volume = app
    (volume / "notes.txt").write_text("before the backup\n")
    start_app(kube, name, replicas=2)
    assert lab.cli("backup.run").code == 0
    broken_tar = lab.nodes["k3s-worker-1"].root / "bin" / "tar"  # the node's /usr/local/bin comes first in PATH
    broken_tar.write_text("#!/bin/sh\necho 'tar: simulated unreadable archive' >&2\nexit 2\n")
    broken_tar.chmod(0o755)
    try:
        failed = lab.cli("backup.restore", "--component", "volumes", "--yes")
    finally:
        broken_tar.unlink()
    assert failed.code == 1, failed.output
    assert kube.get("apps/v1", "Deployment", name, name)["spec"]["replicas"] == 2
    assert "simulated unreadable archive" in failed.stderr and "scale back to 2" in failed.stderr
    kube.wait_deployments([(name, name)], timeout=60)
    assert (volume / "notes.txt").read_text() == "before the backup\n"  # unpacking failed before anything was removed


RECORDING_K3S = r"""#!/bin/sh
# A stand-in for k3s that records every call and does what backup and restore need of it.
lib=/var/lib/rancher
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$lib/k3s-argv.jsonl"
case "$1" in
  --version) exec /usr/local/bin/k3s-installed --version ;;
  etcd-snapshot)
    mkdir -p "$lib/k3s/server/db/snapshots"
    printf 'fake etcd snapshot %s\n' "$4" > "$lib/k3s/server/db/snapshots/$4-$(hostname)-1764000000" ;;
  server)
    for arg in "$@"; do
      case "$arg" in
        --cluster-reset-restore-path=*) cp "${arg#*=}" "$lib/reset-from-snapshot" ;;
        --token-file=*) cp "${arg#*=}" "$lib/reset-with-token" ;;
      esac
    done ;;
esac
"""


def state_db_picture(lab: Lab) -> tuple[str, int]:
    db = lab.nodes["k3s-server"].root / "lib" / "k3s" / "server" / "db" / "state.db"
    return hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns


def test_an_etcd_snapshot_is_restored_by_cluster_reset_with_its_token_never_as_state_db(lab: Lab) -> None:
    lab.data["k3s"]["datastore"] = "etcd"
    lab.data["backup"] = {
        "repository": str(lab.tmp / "repo"),
        "password": {"file": str(lab.tmp / "pw")},
        "components": ["datastore"],
    }
    (lab.tmp / "pw").write_text("correct horse battery staple\n")
    (lab.tmp / "pw").chmod(0o600)
    lab.save()
    assert lab.cli("k3s.install").code == 0
    server = lab.nodes["k3s-server"].root
    (server / "bin" / "k3s").rename(server / "bin" / "k3s-installed")
    (server / "bin" / "k3s").write_text(RECORDING_K3S)
    (server / "bin" / "k3s").chmod(0o755)
    backed_up = lab.cli("backup.run")
    assert backed_up.code == 0, backed_up.output
    [snapshot] = list((server / "lib" / "k3s" / "server" / "db" / "snapshots").iterdir())
    state_db = state_db_picture(lab)
    (server / "lib" / "k3s-argv.jsonl").unlink()

    restored = lab.cli("backup.restore", "--component", "datastore", "--yes")
    assert restored.code == 0, restored.output
    calls = [json.loads(line) for line in (server / "lib" / "k3s-argv.jsonl").read_text().splitlines()]
    assert calls == [
        [
            "server",
            "--cluster-reset",
            "--cluster-reset-restore-path=/var/lib/rancher/k3s/server/homelab-restore-etcd-snapshot",
            "--token-file=/var/lib/rancher/k3s/server/homelab-restore-token",
        ]
    ]
    assert (server / "lib" / "reset-from-snapshot").read_bytes() == snapshot.read_bytes()
    assert (server / "lib" / "reset-with-token").read_text().strip() == lab.token()
    assert state_db_picture(lab) == state_db
    systemctl = (server / "lib" / "systemctl.log").read_text().splitlines()
    assert systemctl[-2:] == ["stop k3s", "start k3s"]
    assert not (server / "lib" / "k3s" / "server" / "homelab-restore-etcd-snapshot").exists()
    assert not (server / "lib" / "k3s" / "server" / "homelab-restore-token").exists()
    assert lab.token() not in restored.output


def test_a_sqlite_snapshot_replaces_state_db_while_k3s_is_stopped(lab: Lab) -> None:
    lab.data["backup"] = {
        "repository": str(lab.tmp / "repo"),
        "password": {"file": str(lab.tmp / "pw")},
        "components": ["datastore"],
    }
    (lab.tmp / "pw").write_text("correct horse battery staple\n")
    (lab.tmp / "pw").chmod(0o600)
    lab.save()
    assert lab.cli("k3s.install").code == 0
    assert lab.cli("backup.run").code == 0
    db = lab.nodes["k3s-server"].root / "lib" / "k3s" / "server" / "db" / "state.db"
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO kine (name, value) VALUES ('/registry/after-the-backup', 'x')")
    restored = lab.cli("backup.restore", "--component", "datastore", "--yes")
    assert restored.code == 0, restored.output
    names = [row[0] for row in sqlite3.connect(db).execute("SELECT name FROM kine")]
    assert names == ["/registry/ns/default"]
    systemctl = (lab.nodes["k3s-server"].root / "lib" / "systemctl.log").read_text().splitlines()
    assert systemctl[-2:] == ["stop k3s", "start k3s"]
    calls = lab.nodes["k3s-server"].root / "lib" / "k3s-calls.log"
    assert not calls.exists() or "cluster-reset" not in calls.read_text()


def tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_restore_dry_run_prints_objects_files_and_scale_downs_and_changes_nothing(
    lab: Lab, kube: Kube, app: tuple[str, Path]
) -> None:
    name, volume = app
    (volume / "notes.txt").write_text("before the backup\n")
    with sqlite3.connect(volume / "notes.db") as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
    start_app(kube, name, replicas=2)
    kube.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "extra", "namespace": name}}])
    assert lab.cli("backup.run").code == 0
    (volume / "notes.txt").write_text("written after the backup\n")
    kube.delete("v1", "ServiceAccount", "extra", name)

    def picture() -> dict:
        return {
            "repository": tree(lab.tmp / "repo"),
            "nodes": {n: tree(node.root / "lib") for n, node in lab.nodes.items()},
            "volume": tree(volume),
            "deployment": kube.get("apps/v1", "Deployment", name, name)["spec"],
            "account": kube.get("v1", "ServiceAccount", "extra", name),
        }

    before = picture()
    planned = lab.cli("backup.restore", "--dry-run")
    assert planned.code == 0, planned.output
    out = planned.stdout
    assert f"apply ServiceAccount {name}/extra" in out
    assert f"patch Deployment {name}/{name}: scale to 0 (from 2)" in out
    assert "[k3s-worker-1] upload " in out and f"-> /var/tmp/homelab-restore-{name}/files.tar" in out
    assert f"-> /var/tmp/homelab-restore-{name}/databases/notes.db" in out
    assert f"[cluster] wait for every pod of {name} to stop" in out
    assert f"patch Deployment {name}/{name}: scale back to 2" in out
    assert "[k3s-server] run: sudo -n -- systemctl stop k3s" in out
    assert "==>" not in out  # printed, not run
    assert picture() == before
    assert before["account"] is None and (volume / "notes.txt").read_text() == "written after the backup\n"
