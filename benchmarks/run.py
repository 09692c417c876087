#!/usr/bin/env python3
"""Benchmarks, each a ratio against a baseline that does the same work, measured the same way.

Every ratio obeys four rules, so it says something about the toolkit and not
about the set-up: the baseline does the same work (same data, same objects,
same settings); both sides are measured the same way (a process against a
process, an in-process call against an in-process call); both run in this
same run, after one discarded warm-up each, in alternating order (ours first,
then the baseline first, ...); each side is the median of BENCH_RUNS runs
(at least 3; at least 5 where a side takes a few seconds, 11 for start-up).
A row with a target is marked MET or MISSED; "report" rows only show a time.

- CLI start-up: `inv --list` here against bare invoke listing a one-task tasks.py
  (target 1.5x: heavy imports stay inside the tasks that need them).
- Backup: an unchanged `backup.run` against an unchanged raw `restic backup` of
  the same files (the tree backup.run stages, with the datastore hard-linked and
  a fresh manifest each run), with the same flags into a repository made the same
  way, at two data sizes (target 2x: start-up, config, staging and manifest cost
  no more than the one restic call they wrap, whatever the size). The snapshots'
  file lists are compared: a baseline that backs up other files fails the row.
- Sandbox (report, single runs): cold `sandbox.up`, its no-op re-run, the first
  `inv up` on it and, at the end, `sandbox.down`; one sandbox serves every
  cluster row.
- `inv up` no-op against `kubectl apply --server-side --dry-run=server -f` of the
  same CRDs and rendered objects, both processes (target 1.2x). The no-op must
  say "nothing to do", or the row fails.
- `inv gitops.apply` of a fresh set of BENCH_APPS generated apps, waiting until
  every Deployment is Available, against kubectl's server-side dry run of what
  that apply must send, on a warm API server (report: the wait for the
  simulated pods dominates; the 8 reference apps are applied by the first `inv up`).
- Executor: 3 node steps run concurrently against one step alone (target 1.2x).

Prints the table and the bench's own wall time. A measurement that fails marks
its row FAILED, the reason follows the table, and the exit code is 1; a MISSED
target is a finding, not a failure.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tasks"))
sys.path.insert(0, str(ROOT / "tests"))
INV = str(Path(sys.executable).parent / "inv")
LOOPBACK = ROOT / "tests" / "configs" / "loopback.yaml"
REFERENCE = ROOT / "config" / "homelab.yaml"
RUNS = max(3, int(os.environ.get("BENCH_RUNS", "3")))
CHEAP_RUNS = max(RUNS, 5)  # comparisons of a few seconds a side: more runs, steadier medians
BACKUP_MIB = [int(n) for n in os.environ.get("BENCH_BACKUP_MIB", "32,512").split(",")]
GENERATED_APPS = int(os.environ.get("BENCH_APPS", "50"))
FIRST_UP_BUDGET = 120.0  # seconds: the first `inv up --target sandbox` with warm binaries


@dataclass
class Row:
    name: str
    measured: float | None  # seconds; None when the measurement failed
    baseline: float | None = None
    target: float | None = None  # the ratio must stay at or below this
    unit: str = "s"

    def cells(self) -> tuple[str, str, str, str, str]:
        target = "report" if self.target is None else f"<= {self.target}x"
        if self.measured is None:
            return "-", "-", "-", target, "FAILED"
        ratio = self.measured / self.baseline if self.baseline else None
        shown = (self.shown(self.measured), self.shown(self.baseline), f"{ratio:.2f}x" if ratio else "-", target)
        if self.target is None:
            return (*shown, "")
        met = ratio is not None and round(ratio, 2) <= self.target  # judged as shown
        return (*shown, "MET" if met else "MISSED")

    def shown(self, seconds: float | None) -> str:
        if seconds is None:
            return "-"
        return f"{seconds * 1000:.0f} ms" if self.unit == "ms" else f"{seconds:.2f} s"


class MeasurementFailed(Exception):
    """A command of the bench failed, or did not do the work the row claims (a no-op that changed something)."""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any homelab, restic or Telegram settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMELAB", "RESTIC_", "TELEGRAM"))}
    return {**env, **extra}


def timed(command: list[str], cwd: Path, env: dict[str, str], expect: str | None = None) -> float:
    """Seconds ``command`` took; ``MeasurementFailed`` if it fails or its output lacks ``expect``."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or (expect is not None and expect not in done.stdout + done.stderr):
        raise MeasurementFailed(f"{' '.join(command)} (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return elapsed


def alternating(ours: Callable[[], float], baseline: Callable[[], float], runs: int = RUNS) -> tuple[float, float]:
    """Medians of ``runs`` measurements each, after one warm-up each, ours first in even rounds."""
    ours(), baseline()
    mine: list[float] = []
    theirs: list[float] = []
    for i in range(runs):
        if i % 2 == 0:
            mine.append(ours())
            theirs.append(baseline())
        else:
            theirs.append(baseline())
            mine.append(ours())
    return statistics.median(mine), statistics.median(theirs)


def reference_on_loopback(name: str, state_dir: Path) -> dict[str, Any]:
    """The reference homelab with the loopback test overrides on top: real platform, loopback addresses."""
    from homelab.config.loader import Layer, merge_layers

    reference = yaml.safe_load(REFERENCE.read_text())
    loopback = yaml.safe_load(LOOPBACK.read_text())
    merged, _ = merge_layers([Layer("reference", reference), Layer("loopback", loopback)])
    merged.update({"name": name, "state_dir": str(state_dir)})
    return merged


def write_config(work: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as the bench's config, refusing one that names any address beyond loopback."""
    from helpers import may_reach_beyond_loopback

    config = work / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    if may_reach_beyond_loopback({"HOMELAB_CONFIG": str(config)}):
        raise SystemExit(f"bench config {config} names an address beyond loopback; the bench must not reach it")
    return config


def cli_startup() -> list[Row]:
    with tempfile.TemporaryDirectory() as bare:
        Path(bare, "tasks.py").write_text("from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n")
        env = clean_env()
        ours, baseline = alternating(
            lambda: timed([INV, "--list"], ROOT, env), lambda: timed([INV, "--list"], Path(bare), env), max(RUNS, 11)
        )
    return [Row("CLI start-up: inv --list vs bare invoke", ours, baseline, 1.2, unit="ms")]


def backup_rows(mebibytes: int) -> list[Row]:
    """backup.run against raw restic, both backing up the same tree into a like repository."""
    from homelab.core.tools import require

    restic = require("restic")
    with tempfile.TemporaryDirectory() as work:
        base = Path(work)
        password = base / "pw"
        password.write_text("bench-password\n")
        password.chmod(0o600)
        data = {**yaml.safe_load(LOOPBACK.read_text()), "name": "benchbk", "state_dir": str(base / "state")}
        data["backup"] = {
            "repository": str(base / "repo"),
            "password": {"file": str(password)},
            "components": ["config"],
        }
        config = write_config(base, data)
        # Stand-in for a large datastore: an incompressible local K3S snapshot, which the config component backs up.
        datastore = base / "state" / "snapshots" / "bench" / "datastore"
        datastore.parent.mkdir(parents=True)
        with datastore.open("wb") as handle:
            for _ in range(mebibytes):
                handle.write(os.urandom(1 << 20))
        ours_env = clean_env(HOMELAB_CONFIG=str(config), HOMELAB_RESTIC_CACHE=str(base / "cache-ours"))
        first = timed([INV, "backup.run"], ROOT, ours_env)  # creates the repository

        # The tree backup.run stages (config/, the hard-linked snapshot, manifest.json last), at a stable path.
        raw = base / "raw-staging" / "current"
        (raw / "config" / "snapshots" / "bench").mkdir(parents=True)
        shutil.copy2(config, raw / "config" / config.name)
        os.link(datastore, raw / "config" / "snapshots" / "bench" / "datastore")
        files = {str(f.relative_to(raw)): sha256(f) for f in sorted(raw.rglob("*")) if f.is_file()}

        def manifest() -> None:  # backup.run writes a new manifest every run; so does the baseline, untimed
            now = time.time()
            body = {"run": f"raw-{now}", "started": now, "finished": now, "status": "complete", "files": files}
            (raw / "manifest.json").write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")

        raw_env = clean_env(
            RESTIC_REPOSITORY=str(base / "raw-repo"),
            RESTIC_PASSWORD_FILE=str(password),
            RESTIC_CACHE_DIR=str(base / "cache-raw"),
        )
        subprocess.run([restic, "init"], env=raw_env, capture_output=True, check=True)
        argv = [restic, "backup", "--json", "--host", "benchbk", "--ignore-inode", "--ignore-ctime"]
        argv += ["--tag", "homelab", "--tag", "run:raw", "--tag", "status:complete", "."]

        def raw_backup() -> float:
            manifest()
            return timed(argv, raw, raw_env)

        raw_first = raw_backup()
        unchanged, raw_unchanged = alternating(
            lambda: timed([INV, "backup.run"], ROOT, ours_env), raw_backup, CHEAP_RUNS
        )
        same_files(restic, ours_env, raw_env, base)
    size = f"{mebibytes} MiB" if mebibytes < 1024 else f"{mebibytes / 1024:g} GiB"
    return [
        Row(f"backup.run first (full) run, {size}; raw restic: 1 run each", first, raw_first),
        Row(f"backup.run unchanged vs raw restic unchanged, {size}", unchanged, raw_unchanged, 2.0),
    ]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def same_files(restic: str, ours_env: dict[str, str], raw_env: dict[str, str], base: Path) -> None:
    """Stop the bench if the baseline's snapshot holds other files than backup.run's."""
    ours_repo = {
        **raw_env,
        "RESTIC_REPOSITORY": str(base / "repo"),
        "RESTIC_CACHE_DIR": ours_env["HOMELAB_RESTIC_CACHE"],
    }
    listings = [snapshot_files(restic, env) for env in (ours_repo, raw_env)]
    if listings[0] != listings[1]:
        raise MeasurementFailed(f"backup baseline backs up other files: backup.run {listings[0]}, raw {listings[1]}")


def snapshot_files(restic: str, env: dict[str, str]) -> list[tuple[str, str]]:
    done = subprocess.run([restic, "ls", "--json", "latest"], env=env, capture_output=True, text=True, check=True)
    items = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    root = items[0]["paths"][0]
    return sorted((i["path"].removeprefix(root), i["type"]) for i in items[1:] if i["path"] != root)


def kubectl_binary() -> str:
    """The pinned kubectl (the one the sandbox is built with), else the first on PATH."""
    from homelab.core.tools import cached_bin_dir, require

    pinned = cached_bin_dir() / "kubectl"
    return str(pinned) if pinned.is_file() else require("kubectl")


class Cluster:
    """The bench's sandbox, driven through `inv` like a user, and kubectl pointed at the same context."""

    def __init__(self, work: Path, name: str) -> None:
        self.work = work
        self.data = reference_on_loopback(name, work / "state")
        self.config = write_config(work, self.data)
        self.env = clean_env(HOMELAB_CONFIG=str(self.config))
        self.kubectl = [
            kubectl_binary(),
            f"--kubeconfig={work / 'state' / 'kubeconfig'}",
            f"--context={name}-sandbox",
            f"--cache-dir={work / 'kubectl-cache'}",  # not ~/.kube: discovery cached like homelab's own
        ]

    def inv(self, *args: str, config: Path | None = None, expect: str | None = None) -> float:
        env = {**self.env, "HOMELAB_CONFIG": str(config or self.config)}
        return timed([INV, *args], ROOT, env, expect)

    def with_apps(self, apps: dict[str, dict[str, Any]], tag: str) -> tuple[Path, list[dict[str, Any]]]:
        """A config file whose apps are ``apps`` renamed by ``tag``, and its rendered objects in apply order."""
        from homelab.config.loader import load
        from homelab.gitops import tree

        directory = self.work / "sets" / tag
        directory.mkdir(parents=True)
        config = write_config(directory, {**self.data, "apps": renamed(apps, tag)})
        return config, tree.objects_in_apply_order(tree.render(load(config, environ={}).config))

    def dry_run(self, objects: list[dict[str, Any]], name: str) -> Callable[[], float]:
        """A measurement: `kubectl apply --server-side --dry-run=server` of ``objects`` as our field manager."""
        manifest = self.work / f"{name}.yaml"
        manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        argv = [*self.kubectl, "apply", "--server-side", "--dry-run=server", "--field-manager=homelab"]
        argv += ["--force-conflicts", f"--filename={manifest}"]
        return lambda: timed(argv, self.work, self.env)

    def create(self, objects: list[dict[str, Any]], name: str) -> None:
        manifest = self.work / f"{name}.yaml"
        manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        argv = [*self.kubectl, "apply", "--server-side", "--field-manager=homelab", f"--filename={manifest}"]
        timed(argv, self.work, self.env)


def sandbox_rows(cluster: Cluster) -> list[Row]:
    """`sandbox.up` from nothing (warm binaries), its no-op re-run, then the first `inv up` on it."""
    cold = cluster.inv("sandbox.up")
    noop = cluster.inv("sandbox.up", expect="nothing to do")
    first = cluster.inv("up", "--target", "sandbox")
    return [
        Row("sandbox.up, warm binaries (cold cluster)", cold),
        Row("sandbox.up again (no-op)", noop),
        # Issue 12's budget for the first GitOps run (tree pushed, Argo CD syncs 17 Applications)
        Row("inv up --target sandbox, first run on it, vs a 120 s budget", first, FIRST_UP_BUDGET, 1.0),
    ]


def up_rows(cluster: Cluster) -> list[Row]:
    """The no-op `inv up` against kubectl's server-side dry run of the same CRDs and rendered objects.

    The objects are the sandbox's tree (the render's sandbox switch, the sandbox's repository), what
    Argo CD keeps applied there.
    """
    from invoke import Context

    from homelab.core.session import Session
    from homelab.gitops import deploy, local, tree
    from homelab.sandbox import controllers

    session = Session(Context(), config_path=cluster.config, out=lambda _: None)
    cfg = local.sandbox_config(session.cfg, controllers.repo_url(session))
    rendered = tree.objects_in_apply_order(tree.render(cfg, local_controllers=True))
    objects = deploy.component_crds() + rendered
    noop, floor = alternating(
        lambda: cluster.inv("up", "--target", "sandbox", expect="up: nothing to do"),
        cluster.dry_run(objects, "up-objects"),
    )
    return [Row(f"inv up no-op vs kubectl apply --server-side --dry-run ({len(objects)} objects)", noop, floor, 1.2)]


def generated_apps(count: int) -> dict[str, dict[str, Any]]:
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


def renamed(apps: dict[str, dict[str, Any]], tag: str) -> dict[str, dict[str, Any]]:
    """The same apps under new names (and hostnames), so applying them creates every app object afresh."""
    return {f"{name}-{tag}": {**app, "hostname": f"{app['hostname']}-{tag}"} for name, app in apps.items()}


def key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"]


def stop_argocd(cluster: Cluster) -> None:
    """Stop the sandbox's controllers: the direct apply measured next writes the tree without Argo CD,
    whose self-heal would otherwise undo the writes (the apply's re-check then reports them pending)."""
    from invoke import Context

    from homelab.core.session import Session
    from homelab.sandbox import controllers

    controllers.stop(Session(Context(), config_path=cluster.config, out=lambda _: None))


def apply_rows(cluster: Cluster, apps: dict[str, dict[str, Any]]) -> list[Row]:
    """`inv gitops.apply` of a fresh copy of ``apps`` against the floor: a dry run of what it must send.

    Every measured apply gets apps under new names, so it creates them all. What it
    must send is every object of the rendered tree that differs from the previous
    set's (the new apps, and platform objects that list the apps); the floor sends
    the same share of another fresh copy as a dry run, which persists nothing, so
    every floor run sends the same still-new objects. Namespaces are created
    beforehand for both (untimed): a dry run cannot create objects in a namespace
    that does not exist.
    """
    stop_argocd(cluster)
    from homelab.config.loader import load
    from homelab.gitops import tree

    config, other = cluster.with_apps(apps, f"x{len(apps)}")
    cfg = load(config, environ={}).config
    start = time.perf_counter()
    tree.render(cfg)
    render_s = time.perf_counter() - start
    previous = {key(o): o for o in other}

    def must_send(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [o for o in objects if previous.get(key(o)) != o]

    _, dry = cluster.with_apps(apps, f"d{len(apps)}")
    floor_objects = must_send(dry)
    cluster.create([o for o in floor_objects if o["kind"] == "Namespace"], f"namespaces-d{len(apps)}")
    tags = (f"a{len(apps)}-{i}" for i in range(1000))

    def apply_and_wait() -> float:
        config, objects = cluster.with_apps(apps, next(tags))
        cluster.create([o for o in must_send(objects) if o["kind"] == "Namespace"], "namespaces")
        return cluster.inv("gitops.apply", config=config, expect="gitops.apply: converged")

    applied, floor = alternating(apply_and_wait, cluster.dry_run(floor_objects, f"floor-{len(apps)}"))
    return [
        Row(f"render {len(apps)} apps ({len(other)} objects), one run", render_s, unit="ms"),
        Row(
            f"inv gitops.apply + wait, {len(apps)} new apps vs kubectl dry run ({len(floor_objects)} objects)",
            applied,
            floor,
        ),
    ]


def parallel_rows(count: int = 3, seconds: float = 0.5) -> list[Row]:
    """Executor: ``count`` node steps run concurrently against one step alone."""
    from invoke.context import Context

    from homelab.core.executor import Executor
    from homelab.core.plan import Plan, Run

    executor = Executor(Context(), out=lambda _: None)

    def run(n: int) -> float:
        plan = Plan("steps", [Run(("sleep", str(seconds)), host="local", why=str(i)) for i in range(n)])
        start = time.perf_counter()
        executor.execute_concurrently(plan, key=lambda a: a.why if isinstance(a, Run) else "")
        return time.perf_counter() - start

    many, one = alternating(lambda: run(count), lambda: run(1), CHEAP_RUNS)
    return [Row(f"{count} parallel node steps vs 1", many, one, 1.2)]


def print_table(rows: list[Row]) -> None:
    header = ("benchmark", "measured", "baseline", "ratio", "target", "result")
    lines = [header, *((row.name, *row.cells()) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in [header, tuple("-" * w for w in widths), *lines[1:]]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


class Bench:
    """The rows so far; a group of rows whose measurement fails leaves one FAILED row and the bench goes on."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.failures: list[str] = []

    def add(self, name: str, measure: Callable[[], list[Row]], target: float | None = None) -> None:
        try:
            self.rows += measure()
        except MeasurementFailed as err:
            self.rows.append(Row(name, None, target=target))
            self.failures.append(f"{name}: {err}")


def main() -> int:
    started = time.perf_counter()
    bench = Bench()
    bench.add("CLI start-up", cli_startup, 1.2)
    for mebibytes in BACKUP_MIB:
        bench.add(f"backup.run vs raw restic, {mebibytes} MiB", functools.partial(backup_rows, mebibytes), 2.0)
    with tempfile.TemporaryDirectory() as work:
        cluster = Cluster(Path(work), "bench")
        try:
            bench.add("sandbox.up and the first inv up", lambda: sandbox_rows(cluster))
            bench.add("inv up no-op vs kubectl dry run", lambda: up_rows(cluster), 1.2)
            bench.add(
                f"inv gitops.apply, {GENERATED_APPS} new apps",
                lambda: apply_rows(cluster, generated_apps(GENERATED_APPS)),
            )
        finally:
            bench.add(
                "sandbox.down",
                lambda: [Row("sandbox.down (with every app applied above)", cluster.inv("sandbox.down"))],
            )
    bench.add("parallel node steps", parallel_rows, 1.2)
    print_table(bench.rows)
    took = time.perf_counter() - started
    runs = f"median of {RUNS} runs a side ({CHEAP_RUNS} for backup and steps, {max(RUNS, 11)} for start-up)"
    print(f"\n{runs}, alternating, after a warm-up each; the bench took {took:.0f} s")
    for failure in bench.failures:
        print(f"\nFAILED {failure}", file=sys.stderr)
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
