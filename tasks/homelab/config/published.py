"""Private paths kept out of what reaches Git: the published tree and the checkout's tracked files.

``inv gitops.publish`` pushes everything under ``gitops.path`` (``k8s/``), and a
``git commit -a`` takes every tracked file. The state directory (kubeconfig, the
K3S token, the controller's sealing certificate), a local backup repository, the
plaintext secrets file and the SSH key must be in neither: once pushed, a secret
stays in the remote's history even after the file is deleted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from homelab.config.schema import HomelabConfig
from homelab.core.errors import Problem
from homelab.core.paths import project_root, resolve_in_project


def private_paths(cfg: HomelabConfig) -> list[tuple[str, Path]]:
    """Each config key that names a private path, with the path it resolves to."""
    named = [
        ("state_dir", resolve_in_project(cfg.state_dir)),
        ("secrets.plaintext_file", resolve_in_project(cfg.secrets.plaintext_file)),
        ("ssh.private_key", resolve_in_project(cfg.ssh.private_key)),
    ]
    repo = cfg.backup.repository
    if repo.startswith(("/", "~", "local:")):
        named.append(("backup.repository", resolve_in_project(repo.removeprefix("local:"))))
    return named


def tracked(root: Path, paths: list[Path]) -> set[Path]:
    """Which of ``paths`` (files, or directories holding tracked files) git tracks in ``root`` (none: no checkout)."""
    inside = [p for p in paths if p.is_relative_to(root)]
    if not inside or not (root / ".git").exists():
        return set()
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--", *(str(p.relative_to(root)) for p in inside)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return set()  # no git here: nothing can be tracked by it either
    files = [root / name for name in listed.stdout.split("\0") if name] if listed.returncode == 0 else []
    return {p for p in inside if any(f == p or f.is_relative_to(p) for f in files)}


def published_path_problems(cfg: HomelabConfig) -> list[Problem]:
    root = project_root().resolve()
    tree = (root / cfg.gitops.path).resolve()
    named = [(key, path.resolve()) for key, path in private_paths(cfg)]
    inside = [] if tree == root else [(key, path) for key, path in named if path.is_relative_to(tree)]
    problems = [
        Problem(key, f"{str(path)!r} is inside {cfg.gitops.path}/, the tree pushed to Git; keep it outside")
        for key, path in inside
    ]  # a tree that is the whole checkout leaves the guard to the tracked-files rule
    in_git = tracked(root, [path for key, path in named if (key, path) not in inside])
    problems += [
        Problem(key, f"{str(path)!r} is tracked by git in {root}; git rm --cached it and list it in .gitignore")
        for key, path in named
        if path in in_git
    ]
    return problems
