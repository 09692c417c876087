"""A project directory (HOMELAB_ROOT) with its own sandbox, as the GitOps and day-2 modules drive it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from helpers import run_cli
from homelab.core.kube import Kube
from homelab.core.session import Session


@dataclass
class SandboxProject:
    root: Path  # the project directory (HOMELAB_ROOT)
    config: Path
    env: dict[str, str]
    session: Session
    kube: Kube

    def data(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.config.read_text()))

    def write(self, data: dict[str, Any]) -> None:
        self.config.write_text(yaml.safe_dump(data))

    def up(self) -> str:
        done = run_cli(["up", "--target", "sandbox"], self.env, timeout=900)
        assert done.code == 0, done.output
        return str(done.stdout)
