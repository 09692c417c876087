"""Each app's backup contract (homelab.apps.volume_data) and the BoltDB check (homelab.backup.bolt), as rules."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from test_config_checks_rules import problems_at

from helpers import REPO, loopback_data, run_cli
from homelab.apps import contracts
from homelab.apps.volume_data import in_volume, volume_data
from homelab.backup import bolt
from homelab.backup.volume_read import read_items, unreadable
from homelab.config import loader
from homelab.config.schema import HomelabConfig

PLEX_DATABASES = "Library/Application Support/Plex Media Server/Plug-in Support/Databases"


@pytest.fixture(scope="module")
def cfg() -> HomelabConfig:
    return loader.validate(loopback_data())


def test_every_catalog_app_with_a_volume_has_its_databases_and_caches_from_its_source(cfg: HomelabConfig) -> None:
    rules = {name: volume_data(app) for name, app in cfg.apps.items() if app.storage}
    assert rules["plex"].databases == {
        f"{PLEX_DATABASES}/com.plexapp.plugins.library.db": "sqlite",
        f"{PLEX_DATABASES}/com.plexapp.plugins.library.blobs.db": "sqlite",
    }
    assert "Library/Application Support/Plex Media Server/Cache" in rules["plex"].skip
    assert "Library/Application Support/Plex Media Server/Codecs" in rules["plex"].skip
    assert "Library/Application Support/Plex Media Server/Crash Reports" in rules["plex"].skip
    assert rules["open-webui"].databases == {"webui.db": "sqlite", "vector_db/chroma.sqlite3": "sqlite"}
    assert rules["open-webui"].skip == ("cache",)
    assert rules["vaultwarden"].databases == {"db.sqlite3": "sqlite"}
    assert rules["home-assistant"].databases == {"home-assistant_v2.db": "sqlite"}
    assert {"tts/*", "*.log", "*.log.*"} <= set(rules["home-assistant"].skip)
    assert rules["filebrowser"].databases == {"filebrowser.db": "bolt"}  # /database/filebrowser.db, BoltDB
    assert rules["qbittorrent"].databases == {"qBittorrent/torrents.db": "sqlite"}
    for name, app in cfg.apps.items():
        contract = contracts.contract_for(app)
        if contract is not None and contract.databases:
            assert contract.backup_source, f"{name}: where were its databases read?"


def test_paths_are_placed_by_the_mount_that_holds_them() -> None:
    app: Any = type("App", (), {"storage": "1GiB", "mount_path": "/database", "mounts": {"/srv": "files"}})
    assert in_volume(app, "/database/filebrowser.db") == "filebrowser.db"
    assert in_volume(app, "/srv/a/b.txt") == "files/a/b.txt"
    assert in_volume(app, "/config/settings.json") is None
    nested: Any = type("App", (), {"storage": "1GiB", "mount_path": "/data", "mounts": {"/data/cache": "c"}})
    assert in_volume(nested, "/data/cache/x") == "c/x"  # the longest mount wins
    none: Any = type("App", (), {"storage": None, "mount_path": "/data", "mounts": {}})
    assert in_volume(none, "/data/x") is None


def test_a_database_declared_with_another_engine_than_the_contract_is_refused_at_its_key() -> None:
    assert problems_at(
        "apps.filebrowser", lambda d: d["apps"]["filebrowser"].update(sqlite_databases=["a.db", "filebrowser.db"])
    ) == [
        "apps.filebrowser.sqlite_databases[1]: filebrowser.db is a bolt database for this image ("
        + contracts.CONTRACTS["filebrowser/filebrowser"].backup_source
        + "), not sqlite; remove it: the image's contract already copies it as bolt"
    ]
    assert problems_at(
        "apps.vaultwarden",
        lambda d: d["apps"]["vaultwarden"].update(sqlite_databases=[], bolt_databases=["db.sqlite3"]),
    ) == [
        "apps.vaultwarden.bolt_databases[0]: db.sqlite3 is a sqlite database for this image ("
        + contracts.CONTRACTS["vaultwarden/server"].backup_source
        + "), not bolt; remove it: the image's contract already copies it as sqlite"
    ]


def test_the_same_engine_as_the_contract_and_unknown_images_keep_the_declaration() -> None:
    assert (
        problems_at("apps.vaultwarden", lambda d: d["apps"]["vaultwarden"].update(sqlite_databases=["db.sqlite3"]))
        == []
    )

    def own_image(d: dict) -> None:
        d["apps"]["notes"] = {
            "image": "registry.home.arpa/notes:1",
            "port": 80,
            "hostname": "notes",
            "sqlite_databases": ["filebrowser.db"],
            "bolt_databases": ["sessions.db"],
        }

    assert problems_at("apps.notes", own_image) == []
    data = loopback_data()
    own_image(data)
    notes = loader.validate(data).apps["notes"]
    assert volume_data(notes).databases == {"filebrowser.db": "sqlite", "sessions.db": "bolt"}
    assert read_items(notes) == ["sqlite:filebrowser.db", "bolt:sessions.db"]


def test_one_file_cannot_have_two_engines_and_bolt_databases_need_the_volume() -> None:
    def both(d: dict) -> None:
        d["apps"]["vaultwarden"].update(bolt_databases=["x.db"], sqlite_databases=["x.db"])

    assert problems_at("apps.vaultwarden.bolt", both) == [
        "apps.vaultwarden.bolt_databases: x.db is also in sqlite_databases; a file has one engine"
    ]
    assert problems_at(
        "apps.vaultwarden.bolt", lambda d: d["apps"]["vaultwarden"].update(storage=None, bolt_databases=["x.db"])
    ) == ["apps.vaultwarden.bolt_databases: the databases live in the app's volume; storage is null"]


def test_config_validate_exits_2_naming_the_key(tmp_path: Path) -> None:
    text = (REPO / "config" / "homelab.yaml").read_text()
    marker = "    mount_path: /database"
    assert marker in text
    (tmp_path / "homelab.yaml").write_text(text.replace(marker, "    sqlite_databases: [filebrowser.db]\n" + marker, 1))
    result = run_cli(["config.validate"], {"HOMELAB_CONFIG": str(tmp_path / "homelab.yaml")})
    assert result.code == 2
    assert "apps.filebrowser.sqlite_databases[0]: filebrowser.db is a bolt database" in result.output


def test_read_items_name_each_database_with_its_engine_then_the_skipped_patterns(cfg: HomelabConfig) -> None:
    items = read_items(cfg.apps["filebrowser"])
    assert items == ["bolt:filebrowser.db"]
    plex = read_items(cfg.apps["plex"])
    assert plex[:2] == [
        f"sqlite:{PLEX_DATABASES}/com.plexapp.plugins.library.blobs.db",
        f"sqlite:{PLEX_DATABASES}/com.plexapp.plugins.library.db",
    ]
    assert "skip:Library/Application Support/Plex Media Server/Cache" in plex


def test_an_unreadable_file_is_named_in_one_line() -> None:
    stderr = "tar: ./keys.bin: Cannot open: Permission denied\ntar: ./b: Cannot open: Input/output error\n"
    assert (
        unreadable(stderr)
        == "could not read ./keys.bin: Cannot open: Permission denied; ./b: Cannot open: Input/output error"
    )
    assert unreadable("") == "the volume read failed with no error output"


# --- BoltDB -------------------------------------------------------------------------------------

PAGE = 4096


def page(
    pgid: int,
    flags: int,
    elements: list[tuple[bytes, bytes]] | None = None,
    children: list[tuple[bytes, int]] | None = None,
) -> bytes:
    body = bytearray(PAGE)
    count = len(elements or children or [])
    struct.pack_into("<QHHI", body, 0, pgid, flags, count, 0)
    data_at = 16 + count * 16
    for i, (key, value) in enumerate(elements or []):
        at = 16 + i * 16
        struct.pack_into("<IIII", body, at, 0, data_at - at, len(key), len(value))
        body[data_at : data_at + len(key) + len(value)] = key + value
        data_at += len(key) + len(value)
    for i, (key, child) in enumerate(children or []):
        at = 16 + i * 16
        struct.pack_into("<IIQ", body, at, data_at - at, len(key), child)
        body[data_at : data_at + len(key)] = key
        data_at += len(key)
    return bytes(body)


def meta(pgid: int, root: int, high: int, txid: int) -> bytes:
    body = bytearray(PAGE)
    struct.pack_into("<QHHI", body, 0, pgid, bolt.META, 0, 0)
    fields = struct.pack("<IIIIQQQQQ", bolt.MAGIC, bolt.VERSION, PAGE, 0, root, 0, 2, high, txid)
    body[16 : 16 + len(fields)] = fields
    struct.pack_into("<Q", body, 16 + len(fields), bolt.fnv64a(fields))
    return bytes(body)


def database(leaf_keys: list[bytes], root_id: int = 3, txid: int = 5) -> bytes:
    freelist = page(2, bolt.FREELIST)
    leaf = page(root_id, bolt.LEAF, [(k, b"v" * 10) for k in leaf_keys])
    return meta(0, root_id, 4, txid - 1) + meta(1, root_id, 4, txid) + freelist + leaf


def test_a_well_formed_bolt_file_passes(tmp_path: Path) -> None:
    (tmp_path / "ok.db").write_bytes(database([b"a", b"b", b"c"]))
    assert bolt.check(tmp_path / "ok.db") == []


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        (lambda b: b[: 3 * PAGE], "the file ends at"),  # the tree's page is missing
        (lambda b: b[: PAGE * 3] + page(7, bolt.LEAF, [(b"a", b"v")]), "page 3 holds page 7's header"),  # rewritten
        (lambda b: b[: PAGE * 3] + page(3, bolt.LEAF, [(b"b", b"v"), (b"a", b"v")]), "keys out of order"),
        (lambda b: b"\0" * (2 * PAGE) + b[2 * PAGE :], "no valid meta page"),
        (lambda b: b[: PAGE * 3] + page(3, bolt.BRANCH, children=[(b"a", 3)]), "page 3 is reached twice"),
    ],
)
def test_a_torn_or_foreign_bolt_file_is_named(tmp_path: Path, damage: Any, found: str) -> None:
    (tmp_path / "bad.db").write_bytes(damage(database([b"a", b"b"])))
    problems = bolt.check(tmp_path / "bad.db")
    assert problems and found in problems[0]


def test_the_newest_valid_meta_page_wins(tmp_path: Path) -> None:
    good = database([b"a"])
    newer_but_torn = good[:PAGE] + good[PAGE : PAGE + 40] + b"\xff" * 8 + good[PAGE + 48 :]
    (tmp_path / "one.db").write_bytes(newer_but_torn)
    assert bolt.check(tmp_path / "one.db") == []  # meta 1's checksum fails; meta 0 (older) still describes the tree
