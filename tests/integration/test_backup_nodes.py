"""backup.* against the K3S test nodes: datastore, app volumes over SSH, restore, host keys."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from backup_support import Receiver
from k3s_nodes import Lab

from homelab.core.kube import Kube

pytestmark = pytest.mark.integration


@pytest.fixture
def app(lab: Lab, kube: Kube, receiver: Receiver) -> Iterator[tuple[str, Path]]:
    """K3S installed on the lab, one app whose volume lives on k3s-worker-1, backups configured."""
    name = f"notes-{uuid.uuid4().hex[:6]}"
    (lab.tmp / "pw").write_text("correct horse battery staple\n")
    (lab.tmp / "pw").chmod(0o600)
    lab.data["apps"] = {
        name: {
            "image": "example/notes:1",
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
    inside = f"/var/lib/rancher/k3s/storage/pvc-{name}"
    kube.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"pv-{name}"},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "local-path",
                    "hostPath": {"path": inside},
                    "claimRef": {"namespace": name, "name": f"{name}-data"},
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["k3s-worker-1"]}
                                    ]
                                }
                            ]
                        }
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"{name}-data", "namespace": name},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "local-path",
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ]
    )
    kube.wait_for(
        "claim",
        lambda: (
            None
            if (kube.get("v1", "PersistentVolumeClaim", f"{name}-data", name) or {}).get("status", {}).get("phase")
            == "Bound"
            else "pending"
        ),
        timeout=60,
    )
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
    env_token = {"TELEGRAM_BOT_TOKEN": "555555555" + ":" + "Qq" * 17 + "r"}
    from helpers import run_cli

    result = run_cli(["backup.run"], {"HOMELAB_CONFIG": str(lab.config), **env_token})
    assert result.code == 3, result.output
    assert "k3s-worker-1: host key for" in result.stdout and "CHANGED" in result.stdout
    assert known.read_bytes() == before
    assert marker.read_text() == marker_before
    assert any("partial" in m for m in receiver.messages())
    assert yaml.safe_load(lab.config.read_text())["backup"]["notify_api"] == receiver.url
