#!/usr/bin/env python3
"""Benchmarks, each a ratio against a baseline measured in the same run.

- CLI start-up: `inv --list` here against bare invoke with a one-task tasks.py
  (target: at most 1.5x; heavy imports must stay inside the tasks that need them).
- Sandbox: cold `sandbox.up` with warm binaries, the no-op re-run, and `sandbox.down`.

Prints a table; exits non-zero only if a measurement itself failed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
INV = str(Path(sys.executable).parent / "inv")
LOOPBACK = ROOT / "tests" / "configs" / "loopback.yaml"


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(command)}\n{done.stdout}{done.stderr}")
    return elapsed


def median_of(runs: int, measure: Callable[[], float]) -> float:
    measure()  # warm the page cache and .pyc files
    return statistics.median(measure() for _ in range(runs))


def cli_startup(runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as bare:
        Path(bare, "tasks.py").write_text("from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n")
        baseline = median_of(runs, lambda: timed([INV, "--list"], Path(bare)))
    ours = median_of(runs, lambda: timed([INV, "--list"], ROOT))
    return baseline, ours


def sandbox_times() -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as work:
        config = Path(work, "homelab.yaml")
        data = yaml.safe_load(LOOPBACK.read_text())
        data["name"] = "bench"
        data["state_dir"] = str(Path(work, "state"))
        config.write_text(yaml.safe_dump(data))
        env = {**os.environ, "HOMELAB_CONFIG": str(config)}
        cold = timed([INV, "sandbox.up"], ROOT, env)
        noop = timed([INV, "sandbox.up"], ROOT, env)
        down = timed([INV, "sandbox.down"], ROOT, env)
    return cold, noop, down


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "15"))
    baseline, ours = cli_startup(runs)
    cold, noop, down = sandbox_times()
    rows = [
        (
            "CLI start-up: inv --list vs bare invoke",
            f"{ours * 1000:.0f} ms",
            f"{baseline * 1000:.0f} ms",
            f"{ours / baseline:.2f}x",
            "<= 1.5x",
        ),
        ("sandbox.up, warm binaries (cold cluster)", f"{cold:.2f} s", "-", "-", "report"),
        ("sandbox.up again (no-op) vs first up", f"{noop:.2f} s", f"{cold:.2f} s", f"{noop / cold:.2f}x", "report"),
        ("sandbox.down", f"{down:.2f} s", "-", "-", "report"),
    ]
    header = ("benchmark", "measured", "baseline", "ratio", "target")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
