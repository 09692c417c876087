"""build-guest-image.sh run as docs/getting-started/linux-host.md says: with sudo, by the user whose Lima boots it."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = pytest.mark.integration
SCRIPT = REPO / "scripts" / "build-guest-image.sh"


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HOMELAB", "SUDO_", "XDG_"))}
    return subprocess.run(
        ["bash", str(SCRIPT)], env={**base, "HOME": "/root", **env}, capture_output=True, text=True, timeout=60
    )


def test_under_sudo_it_builds_into_the_invoking_users_cache_not_roots() -> None:
    """sudo sets HOME to /root: the image must still land where that user's Lima reads it."""
    assert os.geteuid() == 0, "the script needs root, as it says"
    home = pwd.getpwnam("nobody").pw_dir  # a user without the guest agent in their cache: the script stops there
    done = run({"SUDO_USER": "nobody"})
    assert done.returncode == 1
    assert f"Lima's guest agent is missing at {home}/.cache/homelab/share/lima/" in done.stderr, done.stderr


def test_an_explicit_cache_dir_wins_over_the_sudo_user(tmp_path: Path) -> None:
    done = run({"SUDO_USER": "nobody", "HOMELAB_CACHE_DIR": f"{tmp_path}/cache"})
    assert done.returncode == 1
    assert f"Lima's guest agent is missing at {tmp_path}/cache/share/lima/" in done.stderr, done.stderr
