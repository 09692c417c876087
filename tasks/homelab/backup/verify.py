"""Checking a backup by opening it: repository check, manifest re-hash, every artifact read.

A backup that was never restored is a hope. ``verify`` restores the snapshot
to a scratch folder and proves each piece: hashes match the manifest written
at backup time, SQLite files pass ``integrity_check``, YAML parses, and the
saved Sealed Secrets keys decrypt every SealedSecret in the repository's k8s/.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from homelab.backup import bolt
from homelab.backup.restic import Snapshot, restic_for
from homelab.backup.run import MANIFEST, sha256
from homelab.core import state_files
from homelab.core.errors import HomelabError
from homelab.core.executor import write_local
from homelab.core.paths import project_root, resolve_in_project
from homelab.core.tools import find


class VerifyFailed(HomelabError):
    """The backup is damaged or incomplete; the message names what."""


@dataclass
class VerifyReport:
    snapshot: str
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    scope: list[str] = field(default_factory=list)  # what was and was not read, for the summary line
    where: str = "local"  # which repository: local or offsite

    def summary(self) -> str:
        """One line that says what "verified" covered, so a sample is never taken for the whole."""
        where = "" if self.where == "local" else f" ({self.where})"
        return f"backup {self.snapshot}{where} verified: " + "; ".join(self.scope)


def verified_path(session: Any) -> Path:
    path: Path = session.state_dir / "backup-verified.json"
    return path


def load_verified(session: Any) -> dict[str, float]:
    path = verified_path(session)
    record = state_files.read_json(path, state_files.VERIFIED) or {}
    if not all(isinstance(k, str) and isinstance(v, int | float) for k, v in record.items()):
        raise state_files.broken(path, state_files.VERIFIED, "its entries are not snapshot IDs with times")
    return {k: float(v) for k, v in record.items()}


def record_verified(session: Any, snapshot: str) -> None:
    verified = load_verified(session)
    verified[snapshot] = time.time()
    write_local(verified_path(session), (json.dumps(verified, indent=2) + "\n").encode(), 0o600)


def choose(snapshots: list[Snapshot], wanted: str | None) -> Snapshot:
    if wanted:
        for snap in snapshots:
            if snap.id.startswith(wanted):
                return snap
        raise HomelabError(f"no homelab snapshot {wanted!r}; see inv backup.list")
    complete = [s for s in snapshots if s.tag_value("status") == "complete"]
    if not complete:
        raise HomelabError("no complete backup in the repository yet; run inv backup.run")
    return complete[-1]


def check_manifest(root: Path) -> tuple[list[str], list[str]]:
    """(checked, problems) from comparing every file with the manifest."""
    manifest_file = root / MANIFEST
    if not manifest_file.is_file():
        return [], ["manifest.json missing: this snapshot is not a complete backup"]
    try:
        manifest = json.loads(manifest_file.read_text())
    except ValueError:
        return [], ["manifest.json is damaged (not JSON)"]
    problems = []
    for rel, digest in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel}: listed in the manifest but missing")
        elif sha256(path) != digest:
            problems.append(f"{rel}: content does not match its SHA-256 in the manifest")
    return [f"manifest: {len(manifest['files'])} files re-hashed"], problems


def datastore_kind(folder: Path) -> str:
    """What a datastore snapshot folder holds, as its own manifest records it (older ones: SQLite)."""
    manifest = folder / "manifest.json"
    try:
        return str(json.loads(manifest.read_text()).get("datastore") or "sqlite")
    except (OSError, ValueError):
        return "sqlite"


def sqlite_check(path: Path) -> tuple[tuple[str, ...], list[str]]:
    """The first row of SQLite's own check of ``path``, and the app's own collations it had to stand in for.

    ``integrity_check`` needs every collation the schema names; a database using one that only the app's
    SQLite build has (Plex's) gets ``quick_check`` instead, with stand-ins: every page and record is
    checked, not the index order by those collations.
    """
    foreign: list[str] = []
    while True:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        for name in foreign:
            connection.create_collation(name, lambda a, b: (a > b) - (a < b))
        try:
            row = connection.execute("PRAGMA quick_check" if foreign else "PRAGMA integrity_check").fetchone()
            return tuple(row), foreign
        except sqlite3.OperationalError as err:
            missing = str(err).removeprefix("no such collation sequence: ")
            if missing == str(err) or missing in foreign or len(foreign) >= 8:
                raise
            foreign.append(missing)
        finally:
            connection.close()


def open_artifacts(root: Path) -> tuple[list[str], list[str]]:
    checked, problems = [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(root))
        if path.name == "datastore" and datastore_kind(path.parent) == "etcd":
            # An etcd snapshot is not SQLite; its SHA-256 is checked against both manifests.
            checked.append(f"{rel}: etcd snapshot ({path.stat().st_size} bytes, checked by its hash)")
        elif rel.startswith("volumes/") and "/bolt/" in rel:
            wrong = bolt.check(path)
            if wrong:
                problems.append(f"{rel}: BoltDB damaged: {wrong[0]}")
            else:
                checked.append(f"{rel}: BoltDB pages ok")
        elif path.name == "datastore" or path.suffix in (".db", ".sqlite", ".sqlite3") or "/sqlite/" in f"/{rel}":
            try:
                result, foreign = sqlite_check(path)
            except sqlite3.DatabaseError as err:
                problems.append(f"{rel}: not a readable SQLite database ({err})")
                continue
            if result != ("ok",):
                problems.append(f"{rel}: SQLite integrity_check failed: {result}")
            elif foreign:
                checked.append(f"{rel}: SQLite pages ok (quick_check; the app's own collation {', '.join(foreign)})")
            else:
                checked.append(f"{rel}: SQLite integrity ok")
        elif path.suffix == ".yaml":
            try:
                list(yaml.safe_load_all(path.read_text()))
                checked.append(f"{rel}: YAML ok")
            except yaml.YAMLError as err:
                problems.append(f"{rel}: YAML does not parse ({err})")
        elif path.suffix == ".tar":
            done = subprocess.run(["tar", "-tf", str(path)], capture_output=True, text=True)
            (checked if done.returncode == 0 else problems).append(
                f"{rel}: tar {'ok' if done.returncode == 0 else 'damaged: ' + done.stderr.strip()}"
            )
    return checked, problems


def sealed_secrets_in_repo(directory: Path | None = None) -> list[Path]:
    found = []
    for path in sorted((directory or project_root() / "k8s").rglob("*.yaml")):
        text = path.read_text()
        if "kind: SealedSecret" in text:
            found.append(path)
    return found


def check_sealed_keys(root: Path, sealed: list[Path]) -> tuple[list[str], list[str]]:
    """Every SealedSecret in the repository must decrypt with the backed-up controller keys."""
    if not sealed:
        return ["sealed keys: no SealedSecret in k8s/ to decrypt"], []
    keys = root / "sealed-keys" / "keys.yaml"
    if not keys.is_file() or not keys.read_text().strip():
        return [], [
            f"sealed keys: no controller key in the backup, so {len(sealed)} SealedSecret(s) cannot be decrypted"
        ]
    kubeseal = find("kubeseal")
    if kubeseal is None:
        return [], ["sealed keys: kubeseal not installed (scripts/get-binaries.sh kubeseal)"]
    problems = []
    for path in sealed:
        done = subprocess.run(
            [kubeseal, "--recovery-unseal", "--recovery-private-key", str(keys), "-f", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            problems.append(
                f"sealed keys: {path.name} does not decrypt with the backed-up keys "
                "(key renewed since the last backup? run inv backup.run)"
            )
    return [f"sealed keys: {len(sealed) - len(problems)}/{len(sealed)} SealedSecrets decrypt"], problems


def check_other_manifests(restic: Any, others: list[Snapshot], report: VerifyReport) -> None:
    """Restore each other snapshot's manifest alone: its tree and the manifest's data must read back."""
    for snap in others:
        with tempfile.TemporaryDirectory(prefix="homelab-verify-") as scratch:
            try:
                restic.restore_into_scratch(snap.id, Path(scratch), include=[f"/{MANIFEST}"])
                manifest = Path(scratch) / MANIFEST  # snapshots hold the staging folder as their root
                listed = len(json.loads(manifest.read_text())["files"]) if manifest.is_file() else None
            except (HomelabError, ValueError, KeyError) as err:
                report.problems.append(f"snapshot {snap.id}: its manifest does not restore ({err})")
                continue
        if listed is None:
            report.problems.append(f"snapshot {snap.id}: no manifest.json (not a complete backup)")
        else:
            report.checked.append(f"snapshot {snap.id}: manifest restored ({listed} files listed)")


def verify(
    session: Any,
    snapshot: str | None = None,
    sealed: list[Path] | None = None,
    full: bool = False,
    source: str = "local",
) -> VerifyReport:
    """Check the repository, then restore one snapshot and open everything in it.

    By default restic reads ``backup.verify_read_percent`` of the repository's data
    and only the chosen snapshot is restored; ``full`` reads all data and also
    restores every other complete snapshot's manifest. The report's scope says which.
    """
    cfg = session.cfg
    restic = restic_for(session, source)
    snapshots = restic.snapshots()
    chosen = choose(snapshots, snapshot)
    report = VerifyReport(chosen.id, where=source)
    percent = 100 if full else cfg.backup.verify_read_percent
    try:
        restic.check(percent)
        report.checked.append(f"repository: restic check with {percent}% of the data read")
    except HomelabError as err:
        report.problems.append(f"repository damaged: {err}")
        return report
    report.scope.append(
        "restic check read all of the repository's data"
        if percent == 100
        else f"restic check read a {percent}% sample of the repository's data"
    )
    others = [s for s in snapshots if s.id != chosen.id and s.tag_value("status") == "complete"]
    if full:
        check_other_manifests(restic, others, report)
    with tempfile.TemporaryDirectory(prefix="homelab-verify-") as scratch:
        try:
            restic.restore_into_scratch(chosen.id, Path(scratch))
        except HomelabError as err:
            report.problems.append(f"snapshot {chosen.id} does not restore: {err}")
            return report
        for step in (check_manifest, open_artifacts):
            checked, problems = step(Path(scratch))
            report.checked += checked
            report.problems += problems
        if sealed is None:
            sealed = sealed_secrets_in_repo(resolve_in_project(cfg.secrets.sealed_dir))
        checked, problems = check_sealed_keys(Path(scratch), sealed)
        report.checked += checked
        report.problems += problems
    report.scope.append(f"snapshot {chosen.id} restored and every file in it re-hashed and opened")
    if full:
        report.scope.append(f"the manifests of {len(others)} other complete snapshot(s) restored")
    elif others:
        report.scope.append(f"{len(others)} older snapshot(s) not restored (--full reads all data and each manifest)")
    if not report.problems and source == "local":
        record_verified(session, chosen.id)  # retention counts local snapshots; offsite copies follow them
    return report
