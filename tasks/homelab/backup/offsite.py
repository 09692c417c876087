"""The offsite copy: every snapshot of the local repository, copied to a second one away from the Mac.

The local repository sits on the same SSD as the VMs; a dead disk or a stolen
Mac takes both. So after each run ``restic copy`` brings every homelab snapshot
the offsite repository lacks (restic skips the ones already there, matching
them by their ``original`` ID), then the copy is checked: the offsite
repository's structure (``restic check``) and the presence there of every local
snapshot. Because the copy takes whatever is missing, a run whose copy failed
(wrong key, server gone mid-way) is made good by the next run, and a new or
emptied bucket is filled from the local history.

The offsite repository is created with the local one's chunker parameters
(``init --copy-chunker-params``), so its deduplication matches
(https://restic.readthedocs.io/en/stable/045_working_with_repos.html#copying-snapshots-between-repositories).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab.backup.restic import RESTIC_NO_REPOSITORY, Restic, ResticError, restic_for
from homelab.core.errors import HomelabError, UsageError
from homelab.core.plan import Action, Note
from homelab.core.secret_refs import REDACTOR

TAG = "homelab"


@dataclass(frozen=True)
class CopyResult:
    copied: int  # snapshots copied by this run
    present: int  # local snapshots now present offsite

    def line(self, where: str) -> str:
        return f"offsite {where}: {self.copied} snapshot(s) copied, all {self.present} present and checked"


def offsite_for(session: Any) -> Restic | None:
    """The offsite repository as a ``Restic`` (None when ``backup.offsite`` is not set)."""
    backup = session.cfg.backup
    offsite = backup.offsite
    if offsite is None:
        return None
    password = (offsite.password or backup.password).location()
    credentials = {name: ref.location() for name, ref in offsite.credentials.items()}
    settings = {"AWS_DEFAULT_REGION": offsite.region} if offsite.backend == "s3" else {}
    return Restic(
        offsite.repository,
        password,
        session.executor,
        credentials,
        settings,
        key="backup.offsite.repository",
        max_seconds=float(offsite.copy_timeout),
    )


def chosen(session: Any, source: str) -> Restic:
    """The repository a read task uses: ``local`` (backup.repository) or ``offsite``."""
    if source == "local":
        return restic_for(session)
    if source == "offsite":
        found = offsite_for(session)
        if found is None:
            raise UsageError("--from offsite: backup.offsite is not set in the config")
        return found
    raise UsageError(f"--from {source!r}: choose local or offsite")


def from_env(local: Restic) -> tuple[tuple[str, str], ...]:
    """restic's ``RESTIC_FROM_*`` variables naming the local repository as the copy's source."""
    env = {"RESTIC_FROM_REPOSITORY": local.repository}
    if local.password.file:
        local.password.resolve()  # existence and 0600 are checked; the value stays in the file
        env["RESTIC_FROM_PASSWORD_FILE"] = str(Path(local.password.file).expanduser())
    else:
        env["RESTIC_FROM_PASSWORD"] = local.password.resolve().reveal()  # registered with the redactor
    return tuple(sorted(env.items()))


def full_ids(restic: Restic) -> list[dict[str, Any]]:
    """Every homelab snapshot with its full ID and, for a copy, the ID it was copied from."""
    done = restic.observe("snapshots", "--json", "--tag", TAG)
    return list(json.loads(done.stdout or "[]") or [])


def missing_offsite(local: list[dict[str, Any]], remote: list[dict[str, Any]]) -> list[str]:
    """Local snapshot IDs (short) with no copy offsite."""
    there = {s.get("original") or s["id"] for s in remote}
    return [s["id"][:8] for s in local if s["id"] not in there]


def copy(session: Any, local: Restic, offsite: Restic) -> CopyResult:
    """Copy every local homelab snapshot the offsite repository lacks, then check it there.

    Raises ``ResticError`` naming the offsite repository when the copy or the
    check fails; the local snapshot is untouched either way.
    """
    source = from_env(local)
    done = offsite.observe("cat", "config", check=False)
    if done.exited == RESTIC_NO_REPOSITORY:
        offsite.run("init", "--copy-chunker-params", why="create the offsite repository", env=source)
    elif done.exited != 0:
        raise offsite.error("cat", done)
    before = {s.get("original") or s["id"] for s in full_ids(offsite)}
    offsite.run("copy", "--tag", TAG, why="copy new snapshots offsite", env=source)
    local_snapshots = full_ids(local)
    remote = full_ids(offsite)
    missing = missing_offsite(local_snapshots, remote)
    if missing:
        raise ResticError(
            f"offsite copy incomplete: snapshot(s) {', '.join(missing)} are not in the offsite repository", 1
        )
    offsite.run("check", why="check the offsite repository's structure")
    copied = len({s["id"] for s in local_snapshots} - before)
    return CopyResult(copied=copied, present=len(local_snapshots))


def copy_plan(session: Any) -> list[Action]:
    """What a run does offsite, for ``--dry-run``."""
    offsite = session.cfg.backup.offsite
    if offsite is None:
        return [Note("no offsite copy: backup.offsite is not set (every backup stays on this machine)")]
    where = REDACTOR.redact(offsite.repository)
    return [
        Note(f"copy every homelab snapshot missing offsite into {where} (restic copy), then restic check there"),
    ]


def forget_copies_of(session: Any, removed: list[str]) -> list[Action]:
    """The forget for the offsite copies of the local snapshots retention removes (one policy for both).

    ``removed`` are local short IDs. An offsite repository that cannot be listed
    now is left as it is, and said: the next prune removes the copies.
    """
    offsite = offsite_for(session)
    if offsite is None or not removed:
        return []
    try:
        copies = full_ids(offsite)
    except HomelabError as err:
        return [Note(f"offsite: not pruned this time ({str(err).splitlines()[0]}); the next prune removes its copies")]
    doomed = [s["id"][:8] for s in copies if (s.get("original") or s["id"])[:8] in set(removed)]
    steps: list[Action] = [Note(f"offsite: remove the copies of {len(doomed)} of them")]
    return steps + list(offsite.forget_actions(doomed))


def describe_failure(err: HomelabError) -> str:
    """The run's one line for a failed copy, with what happens next."""
    return f"{err} (the local snapshot is kept; the next run copies whatever is missing)"
