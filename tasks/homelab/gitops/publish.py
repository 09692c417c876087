"""Put the rendered tree where Argo CD reads it: ``gitops.repo_url`` at the branch ``gitops.revision``.

Argo CD syncs whatever that branch holds, not the local ``k8s/``: a render that
was never pushed leaves the cluster on an old tree while ``inv up`` would
otherwise say "converged". So the remote is compared with the render, file by
file, under the published paths (``gitops.path`` and the sealed secrets), and
``gitops.publish`` commits the difference on top of the remote branch and pushes
it, without force: a branch that moved meanwhile refuses the push, and a re-run
builds on the new head. Files under those paths that the renderer did not write
(no render header) are yours and are left alone.

The remote is read into a private cache, ``<state_dir>/publish``, where the commit
is made; a dry run fetches into a throwaway copy instead, so it shows the exact
difference and leaves the state directory as it was.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from homelab.config.schema import HomelabConfig
from homelab.core import locks
from homelab.core.errors import HomelabError, UsageError
from homelab.core.plan import Note, Plan, Run, WriteFile
from homelab.core.secret_refs import REDACTOR
from homelab.core.tools import require
from homelab.gitops import tree

PLACEHOLDER_REPOSITORIES = ("https://github.com/example/homelab.git", "https://github.com/example/homelab")
REMOTE_REF = "refs/homelab/remote"
LOCAL_BRANCH = "refs/heads/publish"
COMMITTER = ("-c", "user.name=homelab", "-c", "user.email=homelab@localhost")
SHA = re.compile(r"^[0-9a-f]{7,40}$")
PUBLISH_LOCK = "publish.lock"  # beside the cache repository: one run at a time in it


@dataclass(frozen=True)
class RemoteTree:
    """The published paths as the remote branch holds them; ``commit`` None when the branch does not exist.

    ``foreign``: how many commits on the branch are not the toolkit's own publishes (0 for a
    branch that holds nothing but earlier renders: ``inv up`` may publish there by itself).
    """

    commit: str | None
    files: dict[str, str]
    foreign: int = 0


@dataclass(frozen=True)
class Difference:
    changed: list[str]  # rendered files the remote lacks or holds otherwise
    stale: list[str]  # files the renderer wrote once that it no longer renders

    @property
    def clean(self) -> bool:
        return not (self.changed or self.stale)

    def lines(self, limit: int = 12) -> list[str]:
        found = [f"{p} (differs)" for p in self.changed] + [f"{p} (no longer rendered)" for p in self.stale]
        return found[:limit] + ([f"... and {len(found) - limit} more"] if len(found) > limit else [])


def require_real_repository(cfg: HomelabConfig) -> None:
    """The example URL in the reference config is not a repository anyone can sync from or push to."""
    if cfg.gitops.repo_url.rstrip("/") in PLACEHOLDER_REPOSITORIES:
        raise UsageError(
            f"gitops.repo_url is the example {cfg.gitops.repo_url}: set it to the Git repository Argo CD "
            "should sync (yours; see docs/guide/gitops.md)"
        )


def workdir(session: Any) -> Path:
    path: Path = session.state_dir / "publish"
    return path


def git(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [require("git"), "-C", str(work), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise HomelabError(f"git {args[0]} failed: {REDACTOR.redact(done.stderr.strip())}")
    return done


def published_paths(cfg: HomelabConfig) -> list[str]:
    """The repository paths the toolkit publishes: the tree and, when outside it, the sealed secrets."""
    paths = [cfg.gitops.path]
    sealed = tree.sealed_repo_path(cfg)
    if sealed is not None and not PurePosixPath(sealed).is_relative_to(cfg.gitops.path):
        paths.append(sealed)
    return paths


@contextlib.contextmanager
def cache_in_use(session: Any) -> Iterator[None]:
    """One run at a time in the cache repository (a dry run reads a throwaway copy: no lock).

    While the lock is held no git of ours runs in the cache, so lock files git left there
    (a run killed mid-fetch or mid-commit, after which git refuses every command) are removed.
    """
    if session.dry_run:
        yield
        return
    with locks.exclusive(session.state_dir / PUBLISH_LOCK, "inv run publishing the rendered tree"):
        for left in locks.stale_git_locks(workdir(session)):
            left.unlink()
        yield


def fetch(session: Any) -> RemoteTree:
    """The remote branch's published files, read through the cache repository (a throwaway one in a dry run)."""
    revision = session.cfg.gitops.revision
    if SHA.match(revision):
        raise UsageError(f"gitops.revision {revision} is a commit: publishing needs a branch for Argo CD to follow")
    if not session.dry_run:
        return _fetch_into(session.cfg, workdir(session))
    with tempfile.TemporaryDirectory(prefix="homelab-publish-") as scratch:
        return _fetch_into(session.cfg, Path(scratch))


def _fetch_into(cfg: HomelabConfig, work: Path) -> RemoteTree:
    url, branch = cfg.gitops.repo_url, cfg.gitops.revision
    if not (work / ".git").is_dir():
        work.mkdir(parents=True, exist_ok=True)
        git(work, "init", "--quiet")
    done = git(work, "fetch", "--quiet", "--no-tags", url, f"+refs/heads/{branch}:{REMOTE_REF}", check=False)
    if done.returncode != 0:
        if "couldn't find remote ref" not in done.stderr:
            last = (done.stderr.strip().splitlines() or ["no answer"])[-1]
            raise HomelabError(f"cannot read {url}: {REDACTOR.redact(last)}")
        if git(work, "ls-remote", "--tags", url, f"refs/tags/{branch}", check=False).stdout.strip():
            raise UsageError(f"gitops.revision {branch} is a tag in {url}: publishing needs a branch")
        git(work, "update-ref", "-d", REMOTE_REF, check=False)  # a deleted branch leaves no stale copy
        return RemoteTree(None, {})
    commit = git(work, "rev-parse", REMOTE_REF).stdout.strip()
    listed = git(work, "ls-tree", "-r", "-z", "--name-only", commit, "--", *published_paths(cfg)).stdout
    files = {path: git(work, "show", f"{commit}:{path}").stdout for path in filter(None, listed.split("\0"))}
    history = git(work, "log", "--format=%ce%x09%s", commit).stdout.splitlines()
    foreign = sum(1 for line in history if not own_commit(line))
    return RemoteTree(commit, files, foreign)


PUBLISH_MESSAGE = "homelab: publish the rendered tree"


def own_commit(line: str) -> bool:
    """Whether a ``%ce<TAB>%s`` log line is one of the toolkit's publish commits."""
    email, _, subject = line.partition("\t")
    return email == COMMITTER[3].split("=", 1)[1] and subject.startswith(PUBLISH_MESSAGE)


def wanted_files(session: Any) -> dict[str, str]:
    from homelab.gitops.local import published_files

    return published_files(session.cfg, tree.render(session.cfg))


def ours(path: str, text: str, cfg: HomelabConfig) -> bool:
    """Whether the toolkit wrote this remote file: the render header, or a SealedSecret under the sealed path."""
    sealed = tree.sealed_repo_path(cfg)
    in_sealed = sealed is not None and PurePosixPath(path).parent == PurePosixPath(sealed)
    return text.startswith(tree.HEADER) or (in_sealed and path.endswith(".yaml"))


def difference(cfg: HomelabConfig, wanted: dict[str, str], remote: RemoteTree) -> Difference:
    changed = sorted(path for path, text in wanted.items() if remote.files.get(path) != text)
    stale = sorted(path for path, text in remote.files.items() if path not in wanted and ours(path, text, cfg))
    return Difference(changed, stale)


RETIRED_EDGE = "ingress-nginx"  # the Application the edge had before Traefik


def edge_migration(cfg: HomelabConfig, stale: list[str]) -> list[str]:
    """What the plan says when this publish retires ingress-nginx's Application for Traefik's.

    Argo CD's root Application prunes the file's Application, whose resources
    finalizer deletes its chart's objects, the LoadBalancer Service on
    ``ingress.load_balancer_ip`` with them. MetalLB gives one address to one
    Service (of these ports), so the gateway's Service waits, pending, until then:
    MetalLB's controller reprocesses the Services waiting for an address each time
    one holding an address is deleted (metallb v0.15.2 controller/main.go,
    SetBalancer), and ``inv up`` waits for the gateway to hold the address.
    """
    if not any(PurePosixPath(path).name == f"{RETIRED_EDGE}.yaml" for path in stale):
        return []
    address = cfg.ingress.load_balancer_ip
    return [
        f"the edge moves from ingress-nginx to Traefik: Argo CD prunes Application {RETIRED_EDGE} and its Service "
        f"first, then MetalLB gives {address} to the gateway's Service (traefik/traefik), which waits for it"
    ]


def publish_plan(session: Any, remote: RemoteTree, wanted: dict[str, str]) -> Plan:
    """Check the remote head out in the cache, write the difference, commit, push (never forced)."""
    cfg = session.cfg
    found = difference(cfg, wanted, remote)
    plan = Plan(f"publish the rendered tree to {cfg.gitops.repo_url} (branch {cfg.gitops.revision})")
    if found.clean:
        return plan
    plan.extend(Note(line) for line in edge_migration(cfg, found.stale))
    work, gitc = workdir(session), (require("git"), "-C", str(workdir(session)))
    if remote.commit:
        plan.add(Run((*gitc, "checkout", "--quiet", "--force", "-B", "publish", remote.commit), why="the remote head"))
    else:
        plan.add(Run((*gitc, "update-ref", "-d", LOCAL_BRANCH), why="no history from an earlier branch"))
        plan.add(Run((*gitc, "symbolic-ref", "HEAD", LOCAL_BRANCH), why=f"a new branch {cfg.gitops.revision}"))
        plan.add(Run((*gitc, "read-tree", "--empty"), why="start from nothing"))
    plan.add(Run((*gitc, "clean", "-fdxq"), why="nothing but the remote's files"))
    plan.extend(WriteFile(str(work / path), wanted[path], 0o644, why="rendered") for path in found.changed)
    plan.extend(Run((*gitc, "rm", "--quiet", "--", path), why="no longer rendered") for path in found.stale)
    plan.add(Run((*gitc, "add", "--", *found.changed), why="stage the rendered files"))
    message = f"{PUBLISH_MESSAGE} ({len(found.changed)} changed, {len(found.stale)} removed)"
    plan.add(Run((*gitc, *COMMITTER, "commit", "--quiet", "-m", message), why="one commit on top of the remote"))
    push = (*gitc, "push", "--quiet", cfg.gitops.repo_url, f"HEAD:refs/heads/{cfg.gitops.revision}")
    plan.add(Run(push, why="not forced: a branch that moved refuses, and a re-run builds on it"))
    return plan


def diff_text(remote: RemoteTree, wanted: dict[str, str], found: Difference, branch: str) -> str:
    """A unified diff of what a publish would change, for ``--dry-run``."""
    chunks: list[str] = []
    for path in found.changed:
        before = remote.files.get(path, "").splitlines(keepends=True)
        after = wanted[path].splitlines(keepends=True)
        chunks += difflib.unified_diff(before, after, f"{branch}:{path}", f"rendered:{path}")
    for path in found.stale:
        chunks += difflib.unified_diff(
            remote.files[path].splitlines(keepends=True), [], f"{branch}:{path}", "/dev/null"
        )
    return REDACTOR.redact("".join(chunks))


def pending(session: Any) -> tuple[Difference, RemoteTree]:
    """How the remote branch differs from the render (clean: Argo CD syncs exactly this render); and the branch."""
    require_real_repository(session.cfg)
    with cache_in_use(session):
        remote = fetch(session)
        return difference(session.cfg, wanted_files(session), remote), remote


def push(session: Any) -> bool:
    """Publish the render (``gitops.publish``'s work); True when something was pushed."""
    from homelab.core.converge import converge

    wanted = wanted_files(session)
    with cache_in_use(session):
        return converge(session.executor, lambda: publish_plan(session, fetch(session), wanted))
