"""``gitops.publish`` and ``inv up``'s check of the remote, against a real Git server on 127.0.0.1.

Argo CD syncs what ``gitops.repo_url`` holds at ``gitops.revision``, not the local
``k8s/``. These tests push with the real git client to a real ``git daemon`` and
read back what the server holds.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from git_server import GitServer, git_server

from helpers import CliResult, loopback_data, run_cli

pytestmark = pytest.mark.integration


@dataclass
class Project:
    root: Path
    config: Path
    data: dict[str, Any]
    server: GitServer

    def save(self) -> None:
        self.config.write_text(yaml.safe_dump(self.data))

    def cli(self, *args: str) -> CliResult:
        return run_cli(list(args), {"HOMELAB_CONFIG": str(self.config), "HOMELAB_ROOT": str(self.root)}, timeout=300)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    with git_server(tmp_path / "git") as server:
        root = tmp_path / "project"
        (root / "config").mkdir(parents=True)
        data = loopback_data()
        data.update({"target": "lima", "state_dir": str(root / "state")})
        data["gitops"] = {**data.get("gitops", {}), "repo_url": server.create(), "revision": "main"}
        data["secrets"] = {"sealed_dir": "k8s/sealed", "plaintext_file": "config/secrets.local.yaml"}
        lab = Project(root, root / "config" / "homelab.yaml", data, server)
        lab.save()
        yield lab


def rendered_paths(project: Project) -> set[str]:
    return {p for p in project.server.files() if p.startswith("k8s/")}


def commit_to_remote(project: Project, tmp: Path, files: dict[str, str], message: str) -> None:
    """Someone else's commit on the branch (another machine, the web UI)."""
    work = tmp / "other-clone"
    subprocess.run(["git", "clone", "--quiet", "--branch", "main", project.server.url(), str(work)], check=True)
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    ident = ["-c", "user.name=other", "-c", "user.email=other@localhost"]
    subprocess.run(["git", "-C", str(work), "add", "--all"], check=True)
    subprocess.run(["git", "-C", str(work), *ident, "commit", "--quiet", "-m", message], check=True)
    subprocess.run(["git", "-C", str(work), "push", "--quiet", "origin", "HEAD:main"], check=True)


def test_publish_creates_the_branch_then_has_nothing_to_do(project: Project) -> None:
    first = project.cli("gitops.publish")
    assert first.code == 0, first.output
    assert "pushed to" in first.stdout
    files = project.server.files()
    assert "k8s/argocd/root.yaml" not in files or files["k8s/argocd/root.yaml"].startswith("# Rendered")
    assert "k8s/apps/homepage/app.yaml" in files and "k8s/sealed/_keep.yaml" in files
    head = project.server.head()
    again = project.cli("gitops.publish")
    assert again.code == 0, again.output
    assert "already holds the render" in again.stdout
    assert project.server.head() == head  # no empty commit


def test_inv_up_refuses_while_the_remote_differs_and_names_the_files(project: Project) -> None:
    refused = project.cli("up", "--only", "gitops", "--offline")
    assert refused.code != 0
    assert "not converged: Argo CD syncs" in refused.output
    assert "no terminal to ask whether to publish: pass --yes" in refused.output  # an empty branch: up may publish
    assert "k8s/apps/homepage/app.yaml (differs)" in refused.output
    assert "inv gitops.publish" in refused.output
    assert project.cli("gitops.publish").code == 0
    planned = project.cli("up", "--only", "gitops", "--dry-run")
    assert planned.code == 0, planned.output
    assert "differs from the render" not in planned.output and "bootstrap ArgoCD" in planned.output


def test_a_dropped_app_is_removed_and_your_own_files_stay(project: Project, tmp_path: Path) -> None:
    assert project.cli("gitops.publish").code == 0
    mine = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mine, namespace: default}\n"
    commit_to_remote(project, tmp_path, {"k8s/extra/mine.yaml": mine, "README.md": "# my homelab\n"}, "my files")
    del project.data["apps"]["plex"]
    project.save()
    done = project.cli("gitops.publish")
    assert done.code == 0, done.output
    files = project.server.files()
    assert "k8s/apps/plex/app.yaml" not in files and "k8s/argocd/app-plex.yaml" not in files
    assert files["k8s/extra/mine.yaml"] == mine and files["README.md"] == "# my homelab\n"


def test_publish_builds_on_a_branch_that_moved(project: Project, tmp_path: Path) -> None:
    assert project.cli("gitops.publish").code == 0
    commit_to_remote(project, tmp_path, {"notes.txt": "moved on another machine\n"}, "another machine")
    moved = project.server.head()
    project.data["apps"]["homepage"]["replicas"] = 3
    project.save()
    assert project.cli("gitops.publish").code == 0
    ancestry = subprocess.run(
        ["git", "--git-dir", str(project.server.repository()), "merge-base", "--is-ancestor", moved, "main"]
    )
    assert ancestry.returncode == 0, "the other commit must stay in the branch's history"
    assert project.server.files()["notes.txt"] == "moved on another machine\n"
    deployment = next(
        d for d in yaml.safe_load_all(project.server.files()["k8s/apps/homepage/app.yaml"]) if d["kind"] == "Deployment"
    )
    assert deployment["spec"]["replicas"] == 3


def test_git_locks_a_killed_publish_left_are_removed_and_the_next_publish_pushes(project: Project) -> None:
    """A publish killed mid-commit leaves index.lock in the cache repository; git then refuses every later command."""
    assert project.cli("gitops.publish").code == 0
    cache = project.root / "state" / "publish" / ".git"
    for left in (cache / "index.lock", cache / "refs" / "heads" / "publish.lock"):
        left.write_text("")
    project.data["apps"]["homepage"]["replicas"] = 3
    project.save()
    done = project.cli("gitops.publish")
    assert done.code == 0, done.output
    assert not list(cache.rglob("*.lock"))
    assert "replicas: 3" in project.server.files()["k8s/apps/homepage/app.yaml"]


def test_a_publish_while_another_run_publishes_stops_naming_it(project: Project) -> None:
    lock = project.root / "state" / "publish.lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    holder = subprocess.Popen(
        ["flock", "--exclusive", str(lock), "sh", "-c", f"echo $PPID > {lock}; sleep 60"],
    )
    try:
        for _ in range(100):  # until the holder has the lock and wrote its pid
            if lock.read_text().strip():
                break
            time.sleep(0.05)
        done = project.cli("gitops.publish")
    finally:
        holder.kill()
        holder.wait()
    assert done.code == 11, done.output
    assert f"another inv run publishing the rendered tree holds {lock}" in done.stderr, done.stderr
    assert project.server.head() == "", "nothing was pushed"


def test_dry_run_shows_the_diff_and_pushes_nothing(project: Project) -> None:
    assert project.cli("gitops.publish").code == 0
    head = project.server.head()
    project.data["apps"]["homepage"]["replicas"] = 4
    project.save()
    state_before = sorted(p.relative_to(project.root) for p in (project.root / "state").rglob("*"))
    shown = project.cli("gitops.publish", "--dry-run")
    assert shown.code == 0, shown.output
    assert "--- main:k8s/apps/homepage/app.yaml" in shown.stdout
    assert "+++ rendered:k8s/apps/homepage/app.yaml" in shown.stdout
    assert "-  replicas: 2" in shown.stdout and "+  replicas: 4" in shown.stdout
    assert project.server.head() == head
    assert sorted(p.relative_to(project.root) for p in (project.root / "state").rglob("*")) == state_before


def test_the_example_repository_a_tag_and_a_sandbox_are_refused(project: Project) -> None:
    project.data["gitops"]["repo_url"] = "https://github.com/example/homelab.git"
    project.save()
    refused = project.cli("gitops.publish")
    assert refused.code == 2 and "gitops.repo_url is the example" in refused.output
    refused = project.cli("up", "--only", "gitops", "--offline")
    assert refused.code == 2 and "gitops.repo_url is the example" in refused.output
    project.data["gitops"]["repo_url"] = project.server.url()
    project.save()
    assert project.cli("gitops.publish").code == 0
    subprocess.run(["git", "--git-dir", str(project.server.repository()), "tag", "v1", "main"], check=True)
    project.data["gitops"]["revision"] = "v1"
    project.save()
    refused = project.cli("gitops.publish")
    assert refused.code == 2 and "gitops.revision v1 is a tag" in refused.output
    project.data["gitops"]["revision"] = "main"
    project.data["target"] = "sandbox"
    project.save()
    refused = project.cli("gitops.publish")
    assert refused.code == 2 and "the sandbox publishes to its own git server" in refused.output


def test_an_unreachable_repository_is_one_clear_error(project: Project) -> None:
    project.data["gitops"]["repo_url"] = project.server.url("missing.git")
    project.save()
    failed = project.cli("gitops.publish")
    assert failed.code == 1
    assert f"cannot read {project.server.url('missing.git')}" in failed.output
    assert "Traceback" not in failed.output


def test_a_branch_that_moves_during_the_publish_refuses_the_push(project: Project, tmp_path: Path) -> None:
    """The push is never forced: a commit that lands between the fetch and the push is kept, and a re-run adds ours."""
    from invoke import Context

    from homelab.core.errors import HomelabError
    from homelab.core.session import Session
    from homelab.gitops import publish

    assert project.cli("gitops.publish").code == 0
    project.data["apps"]["homepage"]["replicas"] = 5
    project.save()
    session = Session(Context(), config_path=project.config, out=lambda _: None)
    plan = publish.publish_plan(session, publish.fetch(session), publish.wanted_files(session))
    commit_to_remote(project, tmp_path, {"racing.txt": "landed meanwhile\n"}, "a racing commit")
    raced = project.server.head()
    with pytest.raises(HomelabError, match="push"):
        session.executor.execute(plan)
    assert project.server.head() == raced
    assert project.cli("gitops.publish").code == 0
    assert project.server.files()["racing.txt"] == "landed meanwhile\n"
    assert "replicas: 5" in project.server.files()["k8s/apps/homepage/app.yaml"]


def offline_install_manifest(project: Project) -> None:
    """Argo CD's install manifest from the cache, so a run that gets as far as the bootstrap fetches nothing."""
    from homelab.core.paths import cache_dir
    from homelab.core.pins import load

    manifest = cache_dir() / "manifests" / f"argocd-install-{load().argocd_version}.yaml"
    assert manifest.is_file(), "scripts/get-binaries.sh crds provides it"
    project.data["gitops"]["install_manifest"] = str(manifest)
    project.save()


def test_inv_up_publishes_an_empty_branch_itself_and_then_builds_on_its_own_renders(project: Project) -> None:
    """One command from nothing: the first ``inv up --yes`` publishes; a later render it publishes again.

    No cluster runs here, so each run stops at the bootstrap, after the publish.
    """
    offline_install_manifest(project)
    first = project.cli("up", "--only", "gitops", "--yes", "--offline")
    assert first.code != 0 and "not converged" not in first.output, first.output
    files = project.server.files()
    assert "k8s/apps/homepage/app.yaml" in files, "the render was published before the bootstrap"
    head = project.server.head()
    project.data["apps"]["homepage"]["replicas"] = 3
    project.save()
    again = project.cli("up", "--only", "gitops", "--yes", "--offline")
    assert again.code != 0 and "not converged" not in again.output, again.output
    assert project.server.head() != head
    assert "replicas: 3" in project.server.files()["k8s/apps/homepage/app.yaml"]


def test_inv_up_never_publishes_over_commits_it_did_not_make(project: Project, tmp_path: Path) -> None:
    offline_install_manifest(project)
    assert project.cli("gitops.publish").code == 0
    commit_to_remote(project, tmp_path, {"README.md": "# my homelab\n"}, "my own commit")
    project.data["apps"]["homepage"]["replicas"] = 3
    project.save()
    head = project.server.head()
    refused = project.cli("up", "--only", "gitops", "--yes", "--offline")
    assert refused.code == 1, refused.output
    assert "it holds 1 commit not made by the toolkit" in refused.output
    assert "run inv gitops.publish" in refused.output
    assert project.server.head() == head, "nothing was pushed"
    planned = project.cli("up", "--only", "gitops", "--dry-run")
    assert planned.code == 0 and "the real run stops: run inv gitops.publish" in planned.output, planned.output
