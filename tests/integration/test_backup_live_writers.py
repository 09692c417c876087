"""backup.run while apps keep writing, on the sshd test nodes with real restic: each app's contract decides.

Plex and FileBrowser run here by their catalog images, so their contracts
(``homelab.apps.contracts``) say what is a database, of which engine, and
what is a cache. Plex's library database is SQLite in WAL mode with a
collation only Plex's own SQLite build has (as ``icu_root`` is); FileBrowser's
is a real BoltDB file, written by a Go program on go.etcd.io/bbolt
(``tests/boltdb``) that commits in bursts, freeing and reusing pages.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import Receiver, local_path_claim
from k3s_nodes import Lab

from homelab.core.kube import Kube

pytestmark = pytest.mark.integration

PLEX_DATA = "Library/Application Support/Plex Media Server"
PLEX_DB = f"{PLEX_DATA}/Plug-in Support/Databases/com.plexapp.plugins.library.db"
ACTIVITY = f"{PLEX_DATA}/Plug-in Support/Data/activity.log"


@pytest.fixture(scope="module")
def boltdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BoltDB writer and checker from tests/boltdb, built by scripts/get-binaries.sh boltdb (no fetch here)."""
    from homelab.core.tools import cached_bin_dir

    binary = cached_bin_dir() / "homelab-boltdb-test"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run scripts/get-binaries.sh boltdb")
    return binary


def configure(lab: Lab, receiver: Receiver, apps: dict[str, dict]) -> None:
    (lab.tmp / "pw").write_text("correct horse battery staple\n")
    (lab.tmp / "pw").chmod(0o600)
    lab.data["apps"] = apps
    lab.data["backup"] = {
        "repository": str(lab.tmp / "repo"),
        "password": {"file": str(lab.tmp / "pw")},
        "verify_read_percent": 100,
        "notify_api": receiver.url,
    }
    lab.data["secrets"] = {"sealed_dir": str(lab.tmp / "sealed")}
    lab.save()


@pytest.fixture
def volumes(lab: Lab, kube: Kube, receiver: Receiver) -> Iterator[dict[str, Path]]:
    """A Plex and a FileBrowser entry by their catalog images, each volume on k3s-worker-1."""
    suffix = uuid.uuid4().hex[:6]
    plex, files = f"plex-{suffix}", f"files-{suffix}"
    configure(
        lab,
        receiver,
        {
            plex: {
                "image": "lscr.io/linuxserver/plex:1.42.1",
                "port": 32400,
                "hostname": plex,
                "storage": "1GiB",
                "mount_path": "/config",
                "non_root": False,
                "egress": ["internet"],
            },
            files: {
                "image": "filebrowser/filebrowser:v2.42.5",
                "port": 80,
                "hostname": files,
                "storage": "1GiB",
                "mount_path": "/database",
                "mounts": {"/srv": "files", "/config": "config"},
            },
        },
    )
    assert lab.cli("k3s.install").code == 0
    found = {}
    for name in (plex, files):
        host_dir = lab.nodes["k3s-worker-1"].path(local_path_claim(kube, name, "k3s-worker-1"))
        host_dir.mkdir(parents=True)
        found[name] = host_dir
    yield found
    for name in (plex, files):
        kube.delete("v1", "Namespace", name)
        kube.delete("v1", "PersistentVolume", f"pv-{name}")


def icu_root(a: str, b: str) -> int:
    """Stands in for Plex's own collation: a SQLite build without it cannot re-create the table."""
    return (a.lower() > b.lower()) - (a.lower() < b.lower())


def plex_database(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False)
    connection.create_collation("icu_root", icu_root)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE IF NOT EXISTS metadata_items (id INTEGER PRIMARY KEY, title COLLATE icu_root)")
    connection.execute("CREATE INDEX IF NOT EXISTS by_title ON metadata_items (title)")
    connection.commit()
    return connection


class Writers:
    """Everything that keeps writing during the run: SQLite (WAL), a growing and rotating log, BoltDB."""

    def __init__(self, plex: Path, files: Path, boltdb: Path) -> None:
        self.stop = threading.Event()
        self.sqlite = plex_database(plex / PLEX_DB)
        self.activity = plex / ACTIVITY
        self.activity.parent.mkdir(parents=True, exist_ok=True)
        self.threads = [threading.Thread(target=self.insert), threading.Thread(target=self.log)]
        self.bolt = subprocess.Popen([str(boltdb), "write", str(files / "filebrowser.db")], stdout=subprocess.PIPE)

    def insert(self) -> None:
        while not self.stop.is_set():
            self.sqlite.execute("INSERT INTO metadata_items (title) VALUES (?)", (uuid.uuid4().hex * 20,))
            self.sqlite.commit()

    def log(self) -> None:
        """Appends 64 KiB at a time; at 16 MiB the log is rotated (activity.log.1), as a logger does."""
        chunk = b"x" * 65535 + b"\n"
        while not self.stop.is_set():
            with self.activity.open("ab") as handle:
                handle.write(chunk)
            if self.activity.stat().st_size > 16 << 20:
                os.replace(self.activity, self.activity.with_name("activity.log.1"))
            time.sleep(0.002)

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        time.sleep(2)  # the BoltDB file exists and has had commits
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        self.sqlite.close()
        self.bolt.terminate()
        self.bolt.wait(timeout=30)


def empty(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()


def test_live_writers_leave_a_complete_run_and_consistent_databases(
    lab: Lab, volumes: dict[str, Path], boltdb: Path
) -> None:
    plex_name, files_name = sorted(volumes, reverse=True)
    plex, files = volumes[plex_name], volumes[files_name]
    (plex / PLEX_DATA / "Preferences.xml").parent.mkdir(parents=True, exist_ok=True)
    (plex / PLEX_DATA / "Preferences.xml").write_text('<Preferences MachineIdentifier="m-1"/>\n')
    for cache in ("Cache/PhotoTranscoder/ab.jpg", "Codecs/libhevc.so", "Logs/Plex Media Server.log"):
        (plex / PLEX_DATA / cache).parent.mkdir(parents=True, exist_ok=True)
        (plex / PLEX_DATA / cache).write_bytes(b"regenerated\n")
    (files / "files").mkdir()
    (files / "files" / "report.pdf").write_bytes(bytes(range(256)) * 40)

    with Writers(plex, files, boltdb):
        os.chown((plex / PLEX_DB).parent, 1000, 1000)  # the app's user owns its folders (PUID on linuxserver)
        result = lab.cli("backup.run")
    assert result.code == 0, result.output
    assert "backup ok" in result.stdout and "FAILED" not in result.stdout
    assert "changed while read (kept as read)" in result.stdout and "activity.log" in result.stdout

    verify = lab.cli("backup.verify")  # restic check --read-data-subset=100%, then every artifact opened
    assert verify.code == 0, verify.output
    assert f"volumes/{plex_name}/sqlite/{PLEX_DB}: SQLite pages ok (quick_check; the app's own collation icu_root)" in (
        verify.stdout
    )
    assert f"volumes/{files_name}/bolt/filebrowser.db: BoltDB pages ok" in verify.stdout

    empty(plex)
    empty(files)
    restored = lab.cli("backup.restore", "--component", "volumes", "--yes")
    assert restored.code == 0, restored.output
    check = sqlite3.connect(plex / PLEX_DB)
    check.create_collation("icu_root", icu_root)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert check.execute("SELECT count(*) FROM metadata_items").fetchone()[0] > 0
    check.close()
    assert (plex / PLEX_DB).stat().st_uid == 1000, "the copy is owned like its folder, so the app can write it"
    bolt = subprocess.run([str(boltdb), "check", str(files / "filebrowser.db")], capture_output=True, text=True)
    assert bolt.returncode == 0 and int(bolt.stdout) > 0, bolt.stderr  # bbolt's own tx.Check, then its counter
    assert (plex / PLEX_DATA / "Preferences.xml").read_text() == '<Preferences MachineIdentifier="m-1"/>\n'
    assert (files / "files" / "report.pdf").read_bytes() == bytes(range(256)) * 40
    for cache in ("Cache", "Codecs", "Logs"):
        assert not (plex / PLEX_DATA / cache).exists(), f"{cache} is a cache; the contract skips it"


@contextlib.contextmanager
def unreadable_file(lab: Lab, node: str, inside_path: str) -> Iterator[None]:
    """A file root cannot open (a write-only sysfs attribute bound over it in the node's own mount namespace).

    Root reads every ordinary file; this is what an NFS export with root_squash or an I/O error looks like.
    """
    lab.nodes[node].path(inside_path).write_text("")
    in_node = ["nsenter", "-t", str(lab.nodes[node].process.pid), "-m"]
    subprocess.run([*in_node, "mount", "--bind", "/sys/bus/pci/rescan", inside_path], check=True)
    try:
        yield
    finally:
        subprocess.run([*in_node, "umount", inside_path], check=True)


def test_a_file_that_cannot_be_read_fails_the_run_naming_it(lab: Lab, kube: Kube, receiver: Receiver) -> None:
    name = f"notes-{uuid.uuid4().hex[:6]}"
    configure(lab, receiver, {name: {"image": "registry.home.arpa/notes:1", "port": 8080, "hostname": name}})
    assert lab.cli("k3s.install").code == 0
    inside = local_path_claim(kube, name, "k3s-worker-1")
    volume = lab.nodes["k3s-worker-1"].path(inside)
    volume.mkdir(parents=True)
    (volume / "notes.txt").write_text("remember the milk\n")
    try:
        with unreadable_file(lab, "k3s-worker-1", f"{inside}/keys.bin"):
            result = lab.cli("backup.run")
        assert result.code == 3, result.output  # partial: the snapshot is kept, marked partial
        assert "FAILED: volumes:" in result.stdout
        assert "keys.bin: Cannot open: Permission denied" in result.stdout
    finally:
        kube.delete("v1", "Namespace", name)
        kube.delete("v1", "PersistentVolume", f"pv-{name}")


def test_only_the_contracts_databases_and_the_files_leave_the_node(lab: Lab, volumes: dict[str, Path]) -> None:
    """What one read stages, as archives: no cache, no live database or its WAL, each copy in its engine's folder."""
    plex_name, _ = sorted(volumes, reverse=True)
    plex = volumes[plex_name]
    plex_database(plex / PLEX_DB).close()
    (plex / PLEX_DATA / "Preferences.xml").write_text("<Preferences/>\n")
    (plex / PLEX_DATA / "Cache").mkdir(parents=True)
    (plex / PLEX_DATA / "Cache" / "thumb.jpg").write_bytes(b"jpg")
    assert lab.cli("backup.run").code == 0
    staged = lab.tmp / "staged"
    restored = lab.cli("backup.restore", "--component", "volumes", "--to", str(staged), "--yes")
    assert restored.code == 0, restored.output
    app = next(staged.rglob(f"volumes/{plex_name}"))
    with tarfile.open(app / "files.tar") as tar:
        names = {m.name for m in tar.getmembers()}
    assert f"./{PLEX_DATA}/Preferences.xml" in names
    assert not any("/Cache" in n for n in names)
    assert not any(n.startswith(f"./{PLEX_DB}") for n in names)
    assert (app / "sqlite" / PLEX_DB).is_file()
