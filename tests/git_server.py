"""A real Git server on 127.0.0.1 for tests: ``git daemon`` serving bare repositories, pushes enabled.

It stands where the homelab's ``gitops.repo_url`` (GitHub, Gitea) stands: the
toolkit fetches and pushes over the network with the real git client.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sshd import free_port


@dataclass(frozen=True)
class GitServer:
    root: Path
    port: int

    def url(self, name: str = "homelab.git") -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def repository(self, name: str = "homelab.git") -> Path:
        return self.root / name

    def create(self, name: str = "homelab.git") -> str:
        """A new empty bare repository; its URL."""
        subprocess.run(
            ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(self.repository(name))], check=True
        )
        return self.url(name)

    def head(self, branch: str = "main", name: str = "homelab.git") -> str:
        done = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.repository(name)),
                "rev-parse",
                "--verify",
                "--quiet",
                f"refs/heads/{branch}",
            ],
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def files(self, branch: str = "main", name: str = "homelab.git") -> dict[str, str]:
        """Every file of the branch's head: path -> text."""
        git = ["git", "--git-dir", str(self.repository(name))]
        listed = subprocess.run([*git, "ls-tree", "-r", "-z", "--name-only", branch], capture_output=True, text=True)
        return {
            path: subprocess.run([*git, "show", f"{branch}:{path}"], capture_output=True, text=True).stdout
            for path in filter(None, listed.stdout.split("\0"))
        }


@contextmanager
def git_server(root: Path) -> Iterator[GitServer]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port("127.0.0.1")
    argv = ["git", "daemon", "--export-all", "--reuseaddr", "--informative-errors", "--enable=receive-pack"]
    argv += ["--listen=127.0.0.1", f"--port={port}", f"--base-path={root}", str(root)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.1)
        yield GitServer(root, port)
    finally:
        process.terminate()
        process.wait(timeout=10)
