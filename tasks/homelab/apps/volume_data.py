"""What a backup copies from each app's volume, and how: the image's contract plus the entry's own declarations.

A volume is not a folder of inert files while its app runs. Databases must be
copied the way their engine allows (``sqlite``: SQLite's online backup;
``bolt``: a BoltDB file copied between two commits), and caches are worth
nothing after a restore. Each image's contract (``homelab.apps.contracts``)
says which files are which, in container paths read from the upstream
source; this module turns them into paths relative to the volume's top, the
only paths the node-side copy knows.

An entry may declare more databases (``sqlite_databases``, ``bolt_databases``)
for images without a contract. Where the contract knows a file's engine, a
declaration with another engine is refused at load time: copying a BoltDB file
with ``sqlite3`` fails on every run, and a SQLite file copied as bytes while
it is written is torn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from homelab.core.errors import Problem

if TYPE_CHECKING:
    from homelab.apps.contracts import Contract
    from homelab.config.schema import App

Engine = Literal["sqlite", "bolt"]
ENGINES: tuple[Engine, ...] = ("sqlite", "bolt")
DECLARED_AT: dict[Engine, str] = {"sqlite": "sqlite_databases", "bolt": "bolt_databases"}


@dataclass(frozen=True)
class VolumeData:
    """One app volume's backup rules, every path relative to the volume's top."""

    databases: dict[str, Engine]  # file -> engine: copied consistently, never read by tar
    skip: tuple[str, ...]  # tar wildcard patterns (``*`` also matches ``/``): caches and logs, not data


def in_volume(app: App, container_path: str) -> str | None:
    """Where ``container_path`` lies in the app's volume (``mount_path`` or a ``mounts`` subPath); None if not on it."""
    if not app.storage:
        return None
    path = PurePosixPath(container_path)
    roots = {app.mount_path: "", **app.mounts}
    # The longest mount wins: a path under /config/sub mounted elsewhere is not under /config.
    for mount in sorted(roots, key=lambda m: len(PurePosixPath(m).parts), reverse=True):
        if path.is_relative_to(mount):
            inner = PurePosixPath(roots[mount]) / path.relative_to(mount)
            return "" if str(inner) == "." else str(inner)
    return None


def _contract(app: App) -> Contract | None:
    from homelab.apps.contracts import contract_for

    return contract_for(app)


def contract_databases(app: App) -> dict[str, Engine]:
    """The contract's databases that the app's volume holds, by volume path."""
    contract = _contract(app)
    if contract is None:
        return {}
    found = {}
    for path, engine in contract.databases.items():
        inner = in_volume(app, path)
        if inner:
            found[inner] = engine
    return found


def declared(app: App) -> dict[str, Engine]:
    """The entry's own declarations, by volume path (a file at the volume's top)."""
    return {**{db: "bolt" for db in app.bolt_databases}, **{db: "sqlite" for db in app.sqlite_databases}}


def volume_data(app: App) -> VolumeData:
    """The databases and skipped paths of one app volume (the contract's, then the entry's)."""
    contract = _contract(app)
    skip = []
    for pattern in contract.skip if contract else ():
        inner = in_volume(app, pattern)
        if inner:
            skip.append(inner)
    return VolumeData(databases={**declared(app), **contract_databases(app)}, skip=tuple(skip))


def problems(name: str, app: App) -> list[Problem]:
    """A database declared with another engine than the image's contract says, at the key that declares it."""
    known = contract_databases(app)
    found = []
    for engine in ENGINES:
        key = DECLARED_AT[engine]
        for i, db in enumerate(getattr(app, key)):
            actual = known.get(db)
            if actual is not None and actual != engine:
                contract = _contract(app)
                found.append(
                    Problem(
                        f"apps.{name}.{key}[{i}]",
                        f"{db} is a {actual} database for this image ({contract.backup_source if contract else ''}), "
                        f"not {engine}; remove it: the image's contract already copies it as {actual}",
                    )
                )
    if app.bolt_databases and not app.storage:
        found.append(Problem(f"apps.{name}.bolt_databases", "the databases live in the app's volume; storage is null"))
    for db in sorted(set(app.sqlite_databases) & set(app.bolt_databases)):
        found.append(Problem(f"apps.{name}.bolt_databases", f"{db} is also in sqlite_databases; a file has one engine"))
    return found
