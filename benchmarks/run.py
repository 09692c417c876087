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
  (target 1.2x: heavy imports stay inside the tasks that need them).
- Backup: an unchanged `backup.run` against an unchanged raw `restic backup` of
  the same files (the tree backup.run stages, with the datastore hard-linked and
  a fresh manifest each run), with the same flags into a repository made the same
  way, at two data sizes (target 2x: start-up, config, staging and manifest cost
  no more than the one restic call they wrap, whatever the size). The snapshots'
  file lists are compared: a baseline that backs up other files fails the row.
- `inv gitops.render` of a config with BENCH_APPS generated apps into an empty
  project, as a user runs it, against a Python process that loads the same
  config and writes the same files from the already-rendered objects (same
  YAML dumper); the two trees are compared byte for byte (report).
- Sandbox: the first `inv up --target sandbox` from nothing, in a project of
  its own (HOMELAB_ROOT, its own state directory) with the reference config's
  secrets given by reference as a user gives them, so the run makes the
  sandbox and seals them; one run against a 120 s budget, with the layers'
  shares as `inv up` prints them. Then `sandbox.up` (a no-op, reported) and,
  at the end, `sandbox.down`; that one sandbox serves every cluster row.
- `inv up` no-op against `kubectl apply --server-side --dry-run=server -f` of
  every object that no-op checks, each once: the sandbox layer's (the
  controllers' CRDs and start-up objects) and the GitOps layer's (the
  components' CRDs, the volumes, the sandbox's rendered tree and its
  SealedSecrets); both processes (target 1.2x). The no-op must say "nothing to
  do", or the row fails.
- `inv gitops.apply` of a fresh set of BENCH_APPS generated apps, waiting until
  every Deployment is Available, against kubectl doing the same on another
  fresh set: `kubectl apply --server-side` of what that apply must send, then
  `kubectl wait --for=condition=Available` on the same Deployments (report).
- Rebuild: `inv up --restore` of a sandbox project from nothing (the sandbox, its
  state directory gone; the local repository kept) against the same snapshot
  restored with raw `restic restore` into a directory plus a first `inv up`
  (target 1.5x: restoring the keys, the objects and each volume before its app
  starts costs at most half again a plain first run). The snapshot holds
  BENCH_REBUILD_MIB of incompressible files spread over the app volumes; the
  rebuilt volumes are compared with the originals. One run a side (each is a
  whole sandbox from nothing), the baseline first.
- Executor: 3 node steps run concurrently against one step alone (target 1.2x).

Prints the table and the bench's own wall time. A measurement that fails marks
its row FAILED, the reason follows the table, and the exit code is 1; a MISSED
target is a finding, not a failure.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
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
LIVE_SETS = 2  # sets of generated apps left in the sandbox between runs (its Services and pods run out at about 5)
REBUILD_MIB = int(os.environ.get("BENCH_REBUILD_MIB", "64"))
FIRST_UP_BUDGET = 120.0  # seconds: the first `inv up --target sandbox` from nothing, warm binaries (issue 12)
TIMEOUT = 900.0  # seconds any one command of the bench may take
REFERENCED = {  # the reference config's env: references, with made-up values only this run knows
    "CLOUDFLARE_API_TOKEN": "cf-token-" + uuid.uuid4().hex,
    "VAULTWARDEN_ADMIN_TOKEN": "admin-" + uuid.uuid4().hex,
}


@dataclass
class Row:
    name: str
    measured: float | None  # seconds; None when the measurement failed
    baseline: float | None = None
    target: float | None = None  # the ratio must stay at or below this
    unit: str = "s"
    budget: float | None = None  # seconds the measurement must stay within (a row without a baseline)

    def cells(self) -> tuple[str, str, str, str, str]:
        if self.budget is not None:
            target = f"<= {self.budget:g} s"
        else:
            target = "report" if self.target is None else f"<= {self.target}x"
        if self.measured is None:
            return "-", "-", "-", target, "FAILED"
        if self.budget is not None:
            met = round(self.measured, 2) <= self.budget  # judged as shown
            return self.shown(self.measured), "-", "-", target, "MET" if met else "MISSED"
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


def run_timed(
    command: list[str], cwd: Path, env: dict[str, str], expect: str | None = None, timeout: float = TIMEOUT
) -> tuple[float, str]:
    """Seconds ``command`` took and its output; ``MeasurementFailed`` if it fails, times out or lacks ``expect``."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout
        )
    except subprocess.TimeoutExpired as err:
        raise MeasurementFailed(f"{' '.join(command)}: no answer after {timeout:.0f} s") from err
    elapsed = time.perf_counter() - start
    output = done.stdout + done.stderr
    if done.returncode != 0 or (expect is not None and expect not in output):
        raise MeasurementFailed(f"{' '.join(command)} (exit {done.returncode}):\n{output}")
    return elapsed, output


def timed(command: list[str], cwd: Path, env: dict[str, str], expect: str | None = None) -> float:
    """Seconds ``command`` took; ``MeasurementFailed`` if it fails or its output lacks ``expect``."""
    return run_timed(command, cwd, env, expect)[0]


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
        subprocess.run([restic, "init"], env=raw_env, capture_output=True, check=True, timeout=TIMEOUT)
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
    done = subprocess.run(
        [restic, "ls", "--json", "latest"], env=env, capture_output=True, text=True, check=True, timeout=TIMEOUT
    )
    items = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    root = items[0]["paths"][0]
    return sorted((i["path"].removeprefix(root), i["type"]) for i in items[1:] if i["path"] != root)


def kubectl_binary() -> str:
    """The pinned kubectl (the one the sandbox is built with), else the first on PATH."""
    from homelab.core.tools import cached_bin_dir, require

    pinned = cached_bin_dir() / "kubectl"
    return str(pinned) if pinned.is_file() else require("kubectl")


class Cluster:
    """The bench's sandbox in a project of its own, driven through `inv` like a user, and kubectl at its context.

    The project is a directory as a user's checkout is (HOMELAB_ROOT: its config, its
    k8s/sealed) with its own state directory. The reference config's
    secrets are given by reference, as a user gives them: the env: references get made-up
    values, the tunnel credentials and the Telegram bot token made-up 0600 files; `inv up`
    seals them itself.
    """

    def __init__(self, work: Path, name: str) -> None:
        self.work = work
        self.root = work / "project"
        (self.root / "config").mkdir(parents=True)
        tunnel = self.root / "tunnel.json"
        tunnel.write_text(json.dumps({"TunnelID": "not-a-real-tunnel", "TunnelSecret": uuid.uuid4().hex}))
        tunnel.chmod(0o600)
        bot_token = self.root / "telegram-bot-token"
        bot_token.write_text("123456789:" + uuid.uuid4().hex + "\n")
        bot_token.chmod(0o600)
        self.data = reference_on_loopback(name, self.root / "state")
        self.data["cloudflare"] = {**self.data["cloudflare"], "tunnel_credentials": {"file": str(tunnel)}}
        self.data["monitoring"]["telegram"]["bot_token"] = {"file": str(bot_token)}
        # The (disabled) bot app reads the same file, as in the reference config.
        self.data["apps"]["telegram-bot"]["secrets"] = {"TELEGRAM_BOT_TOKEN": {"file": str(bot_token)}}
        self.config = write_config(self.root / "config", self.data)
        self.env = clean_env(HOMELAB_CONFIG=str(self.config), HOMELAB_ROOT=str(self.root), **REFERENCED)
        self.kubectl = [
            kubectl_binary(),
            f"--kubeconfig={self.root / 'state' / 'kubeconfig'}",
            f"--context={name}-sandbox",
            f"--cache-dir={work / 'kubectl-cache'}",  # not ~/.kube: discovery cached like homelab's own
        ]

    def inv(self, *args: str, config: Path | None = None, expect: str | None = None) -> float:
        env = {**self.env, "HOMELAB_CONFIG": str(config or self.config)}
        return timed([INV, *args], ROOT, env, expect)

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """A session on the project in this process, for what the bench reads untimed."""
        from invoke import Context

        from homelab.core.session import Session

        saved = os.environ.get("HOMELAB_ROOT")
        os.environ["HOMELAB_ROOT"] = str(self.root)
        try:
            yield Session(Context(), config_path=self.config, out=lambda _: None)
        finally:
            if saved is None:
                os.environ.pop("HOMELAB_ROOT")
            else:
                os.environ["HOMELAB_ROOT"] = saved

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

    def apply_and_wait(self, objects: list[dict[str, Any]], name: str) -> float:
        """`kubectl apply --server-side` of ``objects``, then `kubectl wait` until their Deployments are Available.

        Its own field manager; ``--force-conflicts`` takes over fields another manager set (the
        platform objects that list the apps, which gitops.apply takes back with force too).
        """
        manifest = self.work / f"{name}.yaml"
        manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        deployments = self.work / f"{name}-deployments.yaml"
        deployments.write_text(yaml.safe_dump_all([o for o in objects if o["kind"] == "Deployment"], sort_keys=False))
        apply = [*self.kubectl, "apply", "--server-side", "--field-manager=bench", "--force-conflicts"]
        wait = [*self.kubectl, "wait", "--for=condition=Available", "--timeout=300s"]  # gitops.apply's wait, 300 s
        return timed([*apply, f"--filename={manifest}"], self.work, self.env) + timed(
            [*wait, f"--filename={deployments}"], self.work, self.env
        )

    def remove_apps(self, apps: list[str]) -> None:
        """Delete the Deployments, pods and Services of these apps: the sandbox has room for a few sets only.

        Its Service range (254 addresses) and its nodes' pods (3 x 110) run out after about
        five sets of 50 apps. The pods and Services go at once; their owners are orphaned
        first, and not waited for. Only the generated apps go: the platform's Deployments
        (cloudflared) are in every set's tree, and one deleted while the next run plans
        would read as unchanged there, then be gone when that run waits for it.
        """
        names = sorted(apps)
        selector = f"--selector=app.kubernetes.io/name in ({','.join(names)})"
        delete = [*self.kubectl, "delete", "--all-namespaces", selector, "--wait=false"]
        timed([*delete, "deployments,replicasets", "--cascade=orphan"], self.work, self.env)
        timed([*delete, "pods,services", "--grace-period=0", "--force"], self.work, self.env)


RENDER_BASELINE = """
import pickle
import sys
from pathlib import Path

import yaml

config, rendered, root, header = sys.argv[1:]
yaml.safe_load(Path(config).read_text())


class Dumper(yaml.SafeDumper):
    pass


def text(dumper, data):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\\n" in data else None)


Dumper.add_representer(str, text)
for path, objects in pickle.loads(Path(rendered).read_bytes()).items():
    target = Path(root, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + "---\\n".join(yaml.dump(o, Dumper=Dumper, sort_keys=False, width=120) for o in objects))
"""


def render_rows(apps: dict[str, dict[str, Any]]) -> list[Row]:
    """`inv gitops.render` of a config with ``apps`` into an empty project, as a user runs it, against a
    process that loads the same config and writes the same files from the already-rendered objects.

    Each run writes into an empty project of its own (HOMELAB_ROOT), so every run writes every
    file; the baseline dumps with the render's YAML settings, and the two trees are compared
    byte for byte.
    """
    from homelab.config.loader import load
    from homelab.gitops import tree

    with tempfile.TemporaryDirectory() as work:
        base = Path(work)
        config = write_config(base, {**reference_on_loopback("benchrender", base / "state"), "apps": apps})
        rendered = tree.render(load(config, environ={}).config)
        objects = base / "rendered.pickle"  # pickle keeps the objects' shared parts, which the dump writes as anchors
        objects.write_bytes(pickle.dumps(rendered.files))
        projects: dict[str, list[Path]] = {"ours": [], "baseline": []}

        def project(side: str) -> Path:
            made = base / f"{side}-{len(projects[side])}"
            made.mkdir()
            projects[side].append(made)
            return made

        def ours() -> float:
            env = clean_env(HOMELAB_CONFIG=str(config), HOMELAB_ROOT=str(project("ours")))
            return timed([INV, "gitops.render"], ROOT, env, expect="k8s/: converged")

        def baseline() -> float:
            argv = [sys.executable, "-c", RENDER_BASELINE, str(config), str(objects), "k8s", tree.HEADER]
            return timed(argv, project("baseline"), clean_env())

        mine, theirs = alternating(ours, baseline, CHEAP_RUNS)
        same_tree(projects["ours"][-1] / "k8s", projects["baseline"][-1] / "k8s")
    count = sum(len(objs) for objs in rendered.files.values())
    name = f"inv gitops.render, {len(apps)} apps ({count} objects, {len(rendered.files)} files) vs python writing them"
    return [Row(name, mine, theirs)]


def same_tree(ours: Path, theirs: Path) -> None:
    """Stop the bench if the render's baseline wrote other files, or other bytes, than the render."""

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    mine, baseline = files(ours), files(theirs)
    differ = sorted(path for path in mine.keys() | baseline.keys() if mine.get(path) != baseline.get(path))
    if differ or not mine:
        raise MeasurementFailed(f"the render baseline writes other files than inv gitops.render: {differ[:5]}")


REBUILD_STEP_LINE = re.compile(r"^\[\d+/\d+\] (\S+): done \(([\d.]+)s\)$", re.MULTILINE)
LAYER_LINE = re.compile(r"^\[\d+/\d+\] (\S+): (?:changed|up to date) \((\d+(?:\.\d+)?)s\)$", re.MULTILINE)


def first_up_rows(cluster: Cluster) -> list[Row]:
    """The first `inv up --target sandbox` in the fresh project against its budget, then `sandbox.up`, a no-op.

    That one run makes the sandbox (warm binaries), seals the secrets from their references,
    publishes the tree and waits until Argo CD has synced every Application. The layers'
    shares are shown as `inv up` times them itself.
    """
    first, output = run_timed([INV, "up", "--target", "sandbox"], ROOT, cluster.env)
    sealed = sorted((cluster.root / "k8s" / "sealed").glob("*.yaml"))
    if not sealed or "reference is not found" in output:
        raise MeasurementFailed(f"the first inv up did not seal every secret from its reference:\n{output}")
    noop = cluster.inv("sandbox.up", expect="nothing to do")
    return [
        Row(
            f"first inv up --target sandbox from nothing ({len(sealed)} secrets sealed)", first, budget=FIRST_UP_BUDGET
        ),
        *(Row(f"  its {layer} layer, as inv up times it", float(s)) for layer, s in LAYER_LINE.findall(output)),
        Row("sandbox.up again (no-op)", noop),
    ]


def up_rows(cluster: Cluster) -> list[Row]:
    """The no-op `inv up` against kubectl's server-side dry run of every object that no-op checks.

    Those are what the sandbox layer keeps applied (the controllers' CRDs, namespaces, Argo
    CD's base config and project, the Sealed Secrets identity), then the GitOps layer's: the
    components' CRDs, the volumes it makes for the claims, and the sandbox's tree (the
    render's sandbox switch, the sandbox's repository) with the sealed secrets published in
    it, which Argo CD keeps applied. Each object once, in that order.
    """
    from homelab.core.kube import load_manifests
    from homelab.gitops import deploy, local, tree
    from homelab.sandbox import controller_objects, controllers
    from homelab.sandbox.cluster import volumes_for

    with cluster.session() as session:
        url = controllers.repo_url(session)
        cfg = local.sandbox_config(session.cfg, url)
        rendered = tree.render(cfg, local_controllers=True)
        published = local.published_files(cfg, rendered)
        sandbox_layer = controller_objects.crds() + controller_objects.cluster_objects(session, url)
    sealed = [o for o in load_manifests(list(published.values())) if o.get("kind") == "SealedSecret"]
    tree_objects = tree.objects_in_apply_order(rendered)
    volumes = volumes_for([o for o in tree_objects if o["kind"] == "PersistentVolumeClaim"])
    once: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for obj in sandbox_layer + deploy.component_crds() + volumes + tree_objects + sealed:
        once.setdefault(key(obj), obj)
    objects = list(once.values())
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
            "public": True,  # each through the tunnel too, as every app was before private-by-default
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
    """Stop the sandbox's controllers: the direct applies measured next write the tree without Argo CD,
    whose self-heal would otherwise undo the writes (the apply's re-check then reports them pending)."""
    from homelab.sandbox import controllers

    with cluster.session() as session:
        controllers.stop(session)


def apply_rows(cluster: Cluster, apps: dict[str, dict[str, Any]]) -> list[Row]:
    """`inv gitops.apply` of a fresh copy of ``apps`` until every Deployment is Available, against kubectl doing that.

    Every measured run gets apps under new names, so it creates them all. What it must send is
    every object of the rendered tree that differs from another copy's (the new apps' objects
    and the platform objects that list the apps); the baseline sends that share of a fresh copy
    of its own with `kubectl apply --server-side`, then `kubectl wait`s until its Deployments
    are Available, as gitops.apply waits for them. Between runs, untimed, the apps of all but
    the last LIVE_SETS runs are removed (``remove_apps``), so each measured run meets a cluster
    of the same size.
    """
    stop_argocd(cluster)
    _, other = cluster.with_apps(apps, f"x{len(apps)}")
    previous = {key(o): o for o in other}
    runs = iter(range(1000))
    sent: list[int] = []
    live: list[list[str]] = []

    def made(tag: str) -> None:
        live.append(list(renamed(apps, tag)))
        if len(live) > LIVE_SETS:
            cluster.remove_apps(live.pop(0))

    def ours() -> float:
        tag = f"a{len(apps)}-{next(runs)}"
        config, _ = cluster.with_apps(apps, tag)
        took = cluster.inv("gitops.apply", config=config, expect="gitops.apply: converged")
        made(tag)
        return took

    def baseline() -> float:
        tag = f"k{len(apps)}-{next(runs)}"
        _, objects = cluster.with_apps(apps, tag)
        must_send = [o for o in objects if previous.get(key(o)) != o]
        sent.append(len(must_send))
        took = cluster.apply_and_wait(must_send, f"apply-{tag}")
        made(tag)
        return took

    applied, floor = alternating(ours, baseline)
    name = f"inv gitops.apply + wait, {len(apps)} new apps vs kubectl apply + wait ({sent[-1]} objects)"
    return [Row(name, applied, floor)]


def rebuild_rows(work: Path, mebibytes: int) -> list[Row]:
    """`inv up --restore` from nothing against raw `restic restore` of the same snapshot plus a first `inv up`."""
    from homelab.core.tools import require
    from homelab.sandbox.cluster import volumes_dir

    restic = require("restic")
    cluster = Cluster(work, "rebuild")
    password = work / "pw"
    password.write_text("bench-password\n")
    password.chmod(0o600)
    repository = work / "repo"
    cluster.data["backup"] = {
        **cluster.data["backup"],
        "repository": str(repository),
        "password": {"file": str(password)},
    }
    cluster.data["backup"]["notify_api"] = "http://127.0.0.1:9"  # nothing listens: a notification fails quietly
    cluster.config = write_config(cluster.root / "config", cluster.data)
    state = cluster.root / "state"
    cache = {"HOMELAB_RESTIC_CACHE": str(work / "restic-cache")}
    env = {**cluster.env, **cache}

    def gone() -> None:
        timed([INV, "sandbox.down"], ROOT, env)
        shutil.rmtree(state, ignore_errors=True)

    try:
        timed([INV, "up", "--target", "sandbox"], ROOT, env)
        with cluster.session() as s:
            apps = sorted(n for n, a in s.cfg.deployed_apps.items() if a.storage)
        originals: dict[Path, str] = {}
        for i in range(mebibytes):
            path = volumes_dir(state) / apps[i % len(apps)] / f"{apps[i % len(apps)]}-data" / "bench" / f"{i}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(1 << 20))
            originals[path] = sha256(path)
        timed([INV, "backup.run"], ROOT, env, expect="backup ok")
        raw_env = clean_env(
            RESTIC_REPOSITORY=str(repository),
            RESTIC_PASSWORD_FILE=str(password),
            RESTIC_CACHE_DIR=cache["HOMELAB_RESTIC_CACHE"],
        )
        gone()
        # The baseline's first inv up seals anew with its new controller's key; the rebuild needs the
        # files sealed with the backed-up key, as the project's Git holds them: kept aside meanwhile.
        sealed, aside = cluster.root / "k8s" / "sealed", work / "sealed-aside"
        shutil.move(sealed, aside)
        restored = work / "raw-restore"
        baseline = timed([restic, "restore", "latest", "--target", str(restored)], work, raw_env)
        baseline += timed([INV, "up", "--target", "sandbox"], ROOT, env)
        shutil.rmtree(restored)
        gone()
        shutil.rmtree(sealed)
        shutil.move(aside, sealed)
        ours, output = run_timed([INV, "up", "--restore"], ROOT, env, expect="rebuilt from snapshot")
        changed = [str(p) for p, digest in originals.items() if not p.is_file() or sha256(p) != digest]
        if changed:
            raise MeasurementFailed(f"inv up --restore did not bring back {len(changed)} files, e.g. {changed[0]}")
    finally:
        with contextlib.suppress(MeasurementFailed):
            timed([INV, "sandbox.down"], ROOT, env)
    return [
        Row(f"inv up --restore vs raw restic restore + first inv up, {mebibytes} MiB", ours, baseline, 1.5),
        *(Row(f"  its step {step}, as inv up times it", float(s)) for step, s in REBUILD_STEP_LINE.findall(output)),
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

    def add(
        self, name: str, measure: Callable[[], list[Row]], target: float | None = None, budget: float | None = None
    ) -> None:
        try:
            self.rows += measure()
        except MeasurementFailed as err:
            self.rows.append(Row(name, None, target=target, budget=budget))
            self.failures.append(f"{name}: {err}")


def main() -> int:
    started = time.perf_counter()
    bench = Bench()
    bench.add("CLI start-up", cli_startup, 1.2)
    for mebibytes in BACKUP_MIB:
        bench.add(f"backup.run vs raw restic, {mebibytes} MiB", functools.partial(backup_rows, mebibytes), 2.0)
    bench.add(f"inv gitops.render, {GENERATED_APPS} apps", lambda: render_rows(generated_apps(GENERATED_APPS)))
    with tempfile.TemporaryDirectory() as work:
        cluster = Cluster(Path(work), "bench")
        try:
            bench.add("first inv up from nothing", lambda: first_up_rows(cluster), budget=FIRST_UP_BUDGET)
            bench.add("inv up no-op vs kubectl dry run", lambda: up_rows(cluster), 1.2)
            bench.add(
                f"inv gitops.apply + wait, {GENERATED_APPS} new apps",
                lambda: apply_rows(cluster, generated_apps(GENERATED_APPS)),
            )
        finally:
            bench.add(
                "sandbox.down",
                lambda: [Row("sandbox.down (after the rows above)", cluster.inv("sandbox.down"))],
            )
    with tempfile.TemporaryDirectory() as work:
        bench.add("inv up --restore", lambda: rebuild_rows(Path(work), REBUILD_MIB), 1.5)
    bench.add("parallel node steps", parallel_rows, 1.2)
    print_table(bench.rows)
    took = time.perf_counter() - started
    runs = f"median of {RUNS} runs a side ({CHEAP_RUNS} for backup, render and steps, {max(RUNS, 11)} for start-up)"
    print(f"\n{runs}, alternating, after a warm-up each; the bench took {took:.0f} s")
    for failure in bench.failures:
        print(f"\nFAILED {failure}", file=sys.stderr)
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
