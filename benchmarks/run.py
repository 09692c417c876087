#!/usr/bin/env python3
"""Benchmarks, each a ratio against a baseline measured in the same run.

- CLI start-up: `inv --list` here against bare invoke with a one-task tasks.py
  (target: at most 1.5x; heavy imports must stay inside the tasks that need them).
- Sandbox: cold `sandbox.up` with warm binaries, the no-op re-run, and `sandbox.down`.
- backup.run against raw `restic backup` of the same data, and an unchanged
  second run against the full one.
- `inv up` on the sandbox: first run, and the no-op re-run against a server-side
  dry-run apply of the same objects (the floor); N parallel node steps against one.
- Render plus direct apply of the 8 reference apps and of 200 generated apps, each
  against a server-side dry-run apply of the same objects (the floor), so the
  growth of the cost with the number of apps shows.

Prints a table; exits non-zero only if a measurement itself failed.
"""

from __future__ import annotations

import os
import shutil
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


def reference_config(work: Path, name: str) -> tuple[Path, dict, dict]:
    """The loopback test config with the reference catalog's apps, written into ``work``."""
    data = yaml.safe_load(LOOPBACK.read_text())
    reference = yaml.safe_load((ROOT / "config" / "homelab.yaml").read_text())
    data.update({"name": name, "state_dir": str(work / "state"), "apps": reference["apps"]})
    config = work / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    return config, data, reference


def generated_apps(count: int) -> dict[str, dict[str, object]]:
    return {
        f"bench-{i:03d}": {
            "image": "traefik/whoami:v1.11",
            "port": 80,
            "hostname": f"bench-{i:03d}",
            "storage": None,
            "cpu_request": "10m",
            "memory_request": "16MiB",
        }
        for i in range(count)
    }


def render_and_apply(app_counts: list[int]) -> list[tuple[int, float, float, float, int]]:
    """(apps, render seconds, apply+wait seconds, dry-run floor seconds, objects) per count."""
    sys.path.insert(0, str(ROOT / "tasks"))
    from invoke import Context

    from homelab.core import cluster
    from homelab.core.session import Session
    from homelab.gitops import deploy, tree
    from homelab.sandbox import cluster as sandbox

    results = []
    with tempfile.TemporaryDirectory() as work:
        config, data, reference = reference_config(Path(work), "benchapps")
        session = Session(Context(), config_path=config, out=lambda _: None)
        sandbox.ensure_up(session)
        try:
            kube = cluster.connect(session)
            deploy.install_crds(kube, deploy.component_crds())
            for count in app_counts:
                if count != len(reference["apps"]):
                    data["apps"] = generated_apps(count)
                    config.write_text(yaml.safe_dump(data))
                    session = Session(Context(), config_path=config, out=lambda _: None)
                start = time.perf_counter()
                rendered = tree.render(session.cfg)
                objects = tree.objects_in_apply_order(rendered)
                render_s = time.perf_counter() - start
                namespaces = [o for o in objects if o["kind"] == "Namespace"]
                kube.apply(namespaces)
                start = time.perf_counter()
                kube.apply([o for o in objects if o["kind"] != "Namespace"], dry_run=True)
                floor_s = time.perf_counter() - start
                start = time.perf_counter()
                deploy.apply_tree(
                    kube, rendered, timeout=600, progress=lambda _: None, before_wait=sandbox.bind_pending_claims
                )
                apply_s = time.perf_counter() - start
                results.append((count, render_s, apply_s, floor_s, len(objects)))
        finally:
            sandbox.tear_down(session)
    return results


def backup_times(megabytes: int = 3072) -> tuple[float, float, float]:
    """(backup.run full, raw restic backup of the same data, backup.run again unchanged)."""
    sys.path.insert(0, str(ROOT / "tasks"))
    from homelab.core.tools import require

    restic = require("restic")
    with tempfile.TemporaryDirectory() as work:
        base = Path(work)
        (base / "pw").write_text("bench-password\n")
        (base / "pw").chmod(0o600)
        data = yaml.safe_load(LOOPBACK.read_text())
        data.update({"name": "benchbk", "state_dir": str(base / "state")})
        data["backup"] = {
            "repository": str(base / "repo"),
            "password": {"file": str(base / "pw")},
            "components": ["config"],
        }
        config = base / "homelab.yaml"
        config.write_text(yaml.safe_dump(data))
        # Stand-in for a large datastore: an incompressible local K3S snapshot, which the config component backs up.
        snapshot = base / "state" / "snapshots" / "bench"
        snapshot.mkdir(parents=True)
        with (snapshot / "datastore").open("wb") as handle:
            for _ in range(megabytes):
                handle.write(os.urandom(1024 * 1024))
        env = {**os.environ, "HOMELAB_CONFIG": str(config)}
        ours_env = {**os.environ, "RESTIC_REPOSITORY": str(base / "repo"), "RESTIC_PASSWORD_FILE": str(base / "pw")}
        subprocess.run([restic, "init"], env=ours_env, capture_output=True, check=True)  # both repos exist up front
        full = timed([INV, "backup.run"], ROOT, env)
        again = timed([INV, "backup.run"], ROOT, env)
        raw_env = {**os.environ, "RESTIC_REPOSITORY": str(base / "raw"), "RESTIC_PASSWORD_FILE": str(base / "pw")}
        subprocess.run([restic, "init"], env=raw_env, capture_output=True, check=True)
        (base / "same").mkdir()
        (base / "same" / "homelab.yaml").write_bytes(config.read_bytes())
        shutil.copyfile(snapshot / "datastore", base / "same" / "datastore")
        raw = timed([restic, "backup", "--host", "bench", "."], base / "same", raw_env)
    return full, raw, again


def up_times() -> tuple[float, float, float]:
    """(first `inv up --target sandbox`, no-op re-run, the floor: a server-side dry-run apply of the same
    CRDs and objects, one request each, measured in-process)."""
    sys.path.insert(0, str(ROOT / "tasks"))
    from invoke import Context

    from homelab.core import cluster
    from homelab.core.session import Session
    from homelab.gitops import deploy, tree

    with tempfile.TemporaryDirectory() as work:
        config, _, _ = reference_config(Path(work), "benchup")
        env = {**os.environ, "HOMELAB_CONFIG": str(config)}
        try:
            first = timed([INV, "up", "--target", "sandbox"], ROOT, env)
            noop = timed([INV, "up", "--target", "sandbox"], ROOT, env)
            session = Session(Context(), config_path=config, out=lambda _: None)
            kube = cluster.connect(session)
            start = time.perf_counter()
            objects = deploy.component_crds() + tree.objects_in_apply_order(tree.render(session.cfg))
            for obj in objects:
                kube.apply_one(obj, dry_run=True, before=None)
            floor = time.perf_counter() - start
        finally:
            timed([INV, "sandbox.down"], ROOT, env)
    return first, noop, floor


def parallel_steps(count: int = 3, seconds: float = 0.5) -> tuple[float, float]:
    """Executor: ``count`` node steps run concurrently against one step alone."""
    sys.path.insert(0, str(ROOT / "tasks"))
    from invoke import Context

    from homelab.core.executor import Executor
    from homelab.core.plan import Plan, Run

    executor = Executor(Context(), out=lambda _: None)

    def run(n: int) -> float:
        plan = Plan("steps", [Run(("sleep", str(seconds)), host="local", why=str(i)) for i in range(n)])
        start = time.perf_counter()
        executor.execute_concurrently(plan, key=lambda a: a.why if isinstance(a, Run) else "")
        return time.perf_counter() - start

    return run(count), run(1)


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "15"))
    baseline, ours = cli_startup(runs)
    cold, noop, down = sandbox_times()
    scaling = render_and_apply([8, 200])
    full, raw, again = backup_times()
    first_up, noop_up, floor = up_times()
    many, one = parallel_steps()
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
    rows.append(
        ("backup.run (3 GiB) vs raw restic backup", f"{full:.2f} s", f"{raw:.2f} s", f"{full / raw:.2f}x", "<= 1.2x")
    )
    rows.append(
        ("backup.run unchanged vs full run", f"{again:.2f} s", f"{full:.2f} s", f"{again / full:.2f}x", "<= 0.10x")
    )
    rows.append(("inv up --target sandbox, first run", f"{first_up:.2f} s", "-", "-", "report"))
    rows.append(
        (
            "inv up again (no-op) vs server-side dry run",
            f"{noop_up:.2f} s",
            f"{floor:.2f} s",
            f"{noop_up / floor:.2f}x",
            "<= 1.2x",
        )
    )
    rows.append(("3 parallel node steps vs 1", f"{many:.2f} s", f"{one:.2f} s", f"{many / one:.2f}x", "~1x"))
    for count, render_s, apply_s, floor_s, objects in scaling:
        rows.append((f"render {count} apps ({objects} objects)", f"{render_s * 1000:.0f} ms", "-", "-", "report"))
        rows.append(
            (
                f"apply+wait {count} apps vs server-side dry run",
                f"{apply_s:.2f} s",
                f"{floor_s:.2f} s",
                f"{apply_s / floor_s:.2f}x",
                "report",
            )
        )
    header = ("benchmark", "measured", "baseline", "ratio", "target")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
