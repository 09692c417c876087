"""Reading one app's volume on its node while the app keeps running.

What the volume holds is split by the app's backup rules
(``homelab.apps.volume_data``): databases are copied the way their engine
allows, caches are skipped, and tar reads the rest.

- SQLite: ``.backup`` inside one read transaction (``BEGIN`` and a first read,
  then ``.backup``, then ``COMMIT``). The transaction pins one snapshot, so the
  copy is consistent and a writer in another process never makes it start over
  (``.backup`` alone copies 100 pages a step and restarts whenever the source
  changes between steps: under a busy writer it may never end). It copies
  pages, not SQL, so it needs none of the app's own collations or tokenizers:
  ``VACUUM INTO`` re-runs every ``CREATE`` statement and fails on a collation
  that only the app's own SQLite build has (Plex ships one). In WAL mode the
  read transaction blocks no writer.
- BoltDB: FileBrowser holds the file's exclusive ``flock`` for as long as it
  runs (bbolt ``db.go``: ``flock(db, !db.readOnly, ...)``), so no read
  transaction can be opened beside it, and a node has no bbolt tool anyway.
  A commit writes its pages into free space first and its meta page last
  (bbolt ``tx.go``: ``tx.write()`` then ``tx.writeMeta()``), and pages the
  current meta page reaches are never written before a newer meta page is. So
  a byte copy taken while the two meta pages (within the first 128 KiB for
  any page size up to 64 KiB) did not change is the database as of that
  commit; the script retries until one did not, and the copy is checked page
  by page afterwards (``homelab.backup.bolt``). The app is never stopped.
- Everything else: GNU tar. A file that changes while tar reads it makes tar
  exit 1 ("Some files differ": the archive holds a copy that may be torn, GNU
  tar manual, "Synopsis", exit codes); that is noted in the run's summary and
  does not fail it: logs and resume files are rewritten all the time and a
  torn copy of one is what a crash would have left. Exit 2 is a file that could
  not be read at all; the app's volume then fails, naming the file.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any

from homelab.apps.volume_data import Engine, volume_data
from homelab.backup import bolt
from homelab.core.errors import HomelabError
from homelab.core.executor import write_local
from homelab.core.plan import LOCAL, Download, Plan, Run
from homelab.core.secret_refs import REDACTOR

# Runs on the node as: sh -c READ_VOLUME read-volume SRC OUT OWNER [sqlite:DB | bolt:DB | skip:PATTERN]...
# Values are arguments, never code. It always leaves OUT/files.tar, OUT/databases.tar and OUT/notes,
# so the files to download are known before it runs. Exit 2: something could not be read; the last
# lines of its error output name each file.
READ_VOLUME = r"""
set -e
src=$1; out=$2; owner=$3; shift 3
rm -rf "$out"; mkdir -p "$out/db/sqlite" "$out/db/bolt"
: > "$out/exact"; : > "$out/skip"; : > "$out/notes"
for item in "$@"; do
  case $item in
    sqlite:*) db=${item#sqlite:}
      printf './%s\n./%s-wal\n./%s-shm\n./%s-journal\n' "$db" "$db" "$db" "$db" >> "$out/exact" ;;
    bolt:*) printf './%s\n' "${item#bolt:}" >> "$out/exact" ;;
    skip:*) printf './%s\n' "${item#skip:}" >> "$out/skip" ;;
  esac
done
status=0
tar -C "$src" --anchored --no-wildcards -X "$out/exact" --wildcards -X "$out/skip" -cf "$out/files.tar" . \
  2> "$out/tar.err" || status=$?
if [ "$status" -gt 1 ]; then grep -v 'Exiting with failure status' "$out/tar.err" >&2 || true; exit 2; fi
sed 's/^tar: //' "$out/tar.err" >> "$out/notes"
copy_sqlite() {
  sqlite3 -bail -cmd '.timeout 60000' "$1" 'BEGIN' 'SELECT count(*) FROM sqlite_schema' ".backup '$out/copy'" \
    'COMMIT' > /dev/null
}
copy_bolt() {
  tries=0
  while :; do
    before=$(head -c 131072 "$1" | cksum)
    cat "$1" > "$out/copy"
    after=$(head -c 131072 "$1" | cksum)
    [ "$before" != "$after" ] || return 0
    tries=$((tries + 1))
    [ "$tries" -lt 10 ] || return 1
    sleep 1
  done
}
for item in "$@"; do
  case $item in sqlite:*|bolt:*) ;; *) continue ;; esac
  engine=${item%%:*}; db=${item#*:}
  [ -f "$src/$db" ] || continue
  rm -f "$out/copy"
  if ! "copy_$engine" "$src/$db"; then
    echo "$db: no consistent $engine copy (it kept changing, or the copy failed)" >&2; exit 2
  fi
  mkdir -p "$out/db/$engine/$(dirname "$db")"
  mv "$out/copy" "$out/db/$engine/$db"
done
tar -C "$out/db" -cf "$out/databases.tar" .
chown -R "$owner" "$out"
"""
REMOTE = "/var/tmp/homelab-volume-{name}"
# The sandbox makes a volume's directory when something first writes it: one not made yet is empty.
READ_SANDBOX_VOLUME = READ_VOLUME.replace("set -e\n", 'set -e\nmkdir -p "$1"\n', 1)


def read_items(app: Any) -> list[str]:
    """The script's arguments after OWNER: each database with its engine, then each skipped pattern."""
    data = volume_data(app)
    return [f"{engine}:{db}" for db, engine in sorted(data.databases.items())] + [f"skip:{p}" for p in data.skip]


def volume_read_plan(session: Any, kube: Any, name: str, app: Any, target: Path) -> tuple[Plan, Run]:
    """Read one app's volume on its node into ``target``; and the cleanup that runs whatever happens."""
    from homelab.backup.components import volume_location

    node, path = volume_location(kube, name, f"{name}-data", session)
    if node == LOCAL:  # the sandbox's volume, a directory of this user's on this machine
        remote, user = str(session.state_dir / f"volume-read-{name}"), f"{os.getuid()}:{os.getgid()}"
    else:
        remote, user = REMOTE.format(name=name), session.node(node).ssh_user or session.cfg.ssh.user
    script = READ_SANDBOX_VOLUME if node == LOCAL else READ_VOLUME
    argv = ("sh", "-c", script, "read-volume", path, remote, user, *read_items(app))
    sudo = node != LOCAL
    plan = Plan(
        f"read {name}'s volume on {node}:{path}",
        [
            Run(argv, host=node, sudo=sudo, why=f"read {name}'s volume", timeout=3600),
            Download(f"{remote}/files.tar", str(target / "files.tar"), host=node, why=f"{name}'s files"),
            Download(f"{remote}/databases.tar", str(target / "databases.tar"), host=node, why=f"{name}'s databases"),
            Download(f"{remote}/notes", str(target / "notes"), host=node, why="what changed while it was read"),
        ],
    )
    return plan, Run(("rm", "-rf", remote), host=node, sudo=sudo, why="remove the staged copy")


def unreadable(stderr: str) -> str:
    """The script's error output as one line: each file it could not read, and why."""
    lines = [
        line.removeprefix("tar: ").strip()
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("sudo: unable to resolve host")  # sudo's warning, not the read's
    ]
    return "could not read " + "; ".join(lines[-5:]) if lines else "the volume read failed with no error output"


def unpack_databases(archive: Path, folder: Path, databases: dict[str, Engine]) -> None:
    """The database copies into ``folder/<engine>/<path>``: only the expected names, only plain files."""
    wanted = {f"{engine}/{db}" for db, engine in databases.items()}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./")
            if not member.isfile() or name not in wanted:
                continue
            source = tar.extractfile(member)
            if source is not None:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                write_local(folder / name, source.read(), 0o600)
    archive.unlink()


def changed_while_read(notes: Path) -> list[str]:
    lines = [line.strip() for line in notes.read_text(errors="replace").splitlines() if line.strip()]
    notes.unlink()
    return lines


def collect_volumes(session: Any, out: Path, kube: Any) -> list[str]:
    """Each app volume's files, read on its node; returns what changed while it was read (for the summary)."""
    failures, noted = [], []
    for name, app in sorted(session.cfg.deployed_apps.items()):
        if not app.storage:
            continue
        target = out / name
        try:
            plan, cleanup = volume_read_plan(session, kube, name, app, target)
        except HomelabError as err:
            failures.append(str(err))
            continue
        read, downloads = plan.actions[0], plan.actions[1:]
        try:
            session.executor.out(REDACTOR.redact(f"==> {plan.title}"))
            result = session.executor.run(read, check=False)
            if result.exited != 0:
                raise HomelabError(unreadable(result.stderr or ""))
            session.executor.execute(Plan(f"download {name}'s volume copy", downloads))
            noted += [f"{name}: {line}" for line in changed_while_read(target / "notes")]
            databases = volume_data(app).databases
            unpack_databases(target / "databases.tar", target, databases)
            for db, engine in sorted(databases.items()):
                copy = target / engine / db
                if engine == "bolt" and copy.is_file() and (problems := bolt.check(copy)):
                    raise HomelabError(f"the BoltDB copy of {db} is not consistent: {problems[0]}")
        except HomelabError as err:
            failures.append(f"{name}: {err}")
        finally:
            session.executor.run(cleanup, check=False)
    if failures:
        raise HomelabError(REDACTOR.redact("; ".join(failures)))
    return noted
