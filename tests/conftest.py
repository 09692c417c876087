"""Shared fixtures; helpers live in helpers.py so test modules can import them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import LOOPBACK_CONFIG


@pytest.fixture
def loopback_env(tmp_path: Path) -> dict[str, str]:
    """Env that points the CLI at the loopback test config with state in tmp."""
    return {"HOMELAB_CONFIG": str(LOOPBACK_CONFIG), "HOMELAB__STATE_DIR": str(tmp_path / "state")}
