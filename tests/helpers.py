"""Test helpers: the repo, test configs on loopback, and running the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tasks"))
LOOPBACK_CONFIG = REPO / "tests" / "configs" / "loopback.yaml"
FAKES = REPO / "tests" / "fakes"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def inv_binary() -> str:
    return str(Path(sys.executable).parent / "inv")


def run_cli(args: list[str], env: Mapping[str, str] | None = None, timeout: float = 300) -> CliResult:
    """Run ``inv ARGS`` from the repo root in a clean environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HOMELAB")}
    base.update(env or {})
    done = subprocess.run(
        [inv_binary(), *args],
        cwd=REPO,
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def loopback_data() -> dict:
    """The reference homelab with the loopback test overrides on top (addresses, names, state)."""
    import yaml

    from homelab.config.loader import Layer, merge_layers

    reference = yaml.safe_load((REPO / "config" / "homelab.yaml").read_text())
    loopback = yaml.safe_load(LOOPBACK_CONFIG.read_text())
    merged, _ = merge_layers([Layer("reference", reference), Layer("loopback", loopback)])
    return merged
