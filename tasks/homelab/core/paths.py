"""Where the toolkit finds its project and keeps its state.

The project root is the checkout that holds ``config/``; cron and the console
script may run from any directory, so it is derived from this package's own
location unless ``HOMELAB_ROOT`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout this toolkit runs from (``tasks/homelab`` lives inside it)."""
    env = os.environ.get("HOMELAB_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[3]


def resolve_in_project(path: str) -> Path:
    """An absolute path for a config path that may be relative to the project."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else project_root() / candidate


def cache_dir() -> Path:
    """Per-user cache of built binaries (shared across checkouts)."""
    env = os.environ.get("HOMELAB_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "homelab"
