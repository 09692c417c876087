"""The whole homelab: ``up``, ``down`` and ``status`` compose every layer in order."""

from __future__ import annotations

import sys
import time
from typing import Any

from homelab.core.tasks import confirm, session, task

TARGET = "Cluster target: lima (the Mac's VMs), sandbox (local API server), k3d, or existing (a kubeconfig context)."


@task(
    optional=["restore"],
    help={
        "target": TARGET,
        "dry_run": "Print the plan of every layer and change nothing.",
        "restore": "Rebuild an empty target from a backup: this snapshot id, or the newest complete one "
        "when no id follows. Keys first, then objects, then each app's volume before the app starts.",
        "restore_from": "The repository --restore reads: local (backup.repository, the default) or offsite.",
        "only": "Run just this layer.",
        "from": "Start at this layer (the ones before it are assumed done).",
        "yes": "Do not ask before publishing the render to a branch that holds nothing but the toolkit's renders.",
        "offline": "Go on when the upstream sources cannot be checked (no network); a broken source still stops.",
        "delete_data": "Delete the claims (and the data their volumes hold) of apps no longer in the config, "
        "after asking (--yes skips it); without it they are kept and named.",
        "verbose": "Print every step's full plan as it runs (without a terminal it always is); "
        "the log under <state_dir>/logs holds it either way.",
    },
)
def up(
    c: Any,
    target: str | None = None,
    dry_run: bool = False,
    only: str | None = None,
    from_: str | None = None,
    yes: bool = False,
    offline: bool = False,
    delete_data: bool = False,
    verbose: bool = False,
    restore: Any = None,
    restore_from: str = "local",
) -> None:
    """Bring the homelab up: every layer in dependency order, each a plan that may be empty."""
    from homelab.core import progress
    from homelab.core.errors import UsageError
    from homelab.root.layers import select
    from homelab.versions.check import require_sources

    overrides = {"target": target}
    s = session(c, dry_run, **overrides)
    chosen = select(s.cfg.target, only, from_)
    if restore is not None and (only or from_):
        raise UsageError("up --restore rebuilds every layer: it takes neither --only nor --from")
    require_sources(s, offline, [layer.name for layer in chosen], dry_run)  # before any node or cluster is touched
    if restore is not None:
        rebuild(c, s, chosen, None if restore is True else str(restore), restore_from, overrides, yes, delete_data)
        return
    # A dry run's output is its plan, all of it, and it writes nothing (not even a log).
    log = None if dry_run else progress.log_path(s.state_dir, "up")
    live = sys.stdout.isatty() and not verbose and not dry_run
    changed_any = False
    started = time.monotonic()
    with progress.Steps(log, live) as steps:
        for i, layer in enumerate(chosen, 1):
            steps.start(f"[{i}/{len(chosen)}] {layer.name}")
            t0 = time.monotonic()
            hook = layer.hook("up")
            changed = hook(c, dry_run, overrides, yes, delete_data) if layer.asks else hook(c, dry_run, overrides)
            changed_any = changed_any or bool(changed)
            outcome = "changed" if changed else "up to date"
            steps.finish(f"[{i}/{len(chosen)}] {layer.name}: {outcome} ({time.monotonic() - t0:.1f}s)")
        elapsed = time.monotonic() - started
        if dry_run:
            steps.say("dry run: nothing was changed")
        elif not changed_any:
            steps.say(f"up: nothing to do; target {s.cfg.target} already matches the config ({elapsed:.1f}s)")
        else:
            steps.say(f"up: target {s.cfg.target} converged ({elapsed:.1f}s)")
        if log is not None:
            steps.say(f"log: {log}")
    if log is not None:
        progress.prune_logs(log.parent, "up")


def rebuild(
    c: Any,
    s: Any,
    chosen: list[Any],
    snapshot: str | None,
    source: str,
    overrides: dict[str, Any],
    yes: bool,
    delete_data: bool,
) -> None:
    """``up --restore``: the layers and the restore steps in the order ``homelab.root.rebuild`` plans."""
    from homelab.root import rebuild as rebuilding

    names = [layer.name for layer in chosen]
    split = names.index(rebuilding.GITOPS) if rebuilding.GITOPS in names else len(names)
    layers = {layer.name: layer for layer in chosen}

    def layer_up(name: str) -> bool:
        layer = layers[name]
        hook = layer.hook("up")
        changed = hook(c, s.dry_run, overrides, yes, delete_data) if layer.asks else hook(c, s.dry_run, overrides)
        return bool(changed)

    for line in rebuilding.run(s, layer_up, names[:split], names[split:], snapshot, source):
        print(line)
    if s.dry_run:
        print("dry run: nothing was changed")


@task(
    help={
        "target": TARGET,
        "yes": "Do not ask for confirmation.",
        "dry_run": "Print what would be torn down and change nothing.",
        "verbose": "Print every step's full plan as it runs (without a terminal it always is); "
        "the log under <state_dir>/logs holds it either way.",
    }
)
def down(c: Any, target: str | None = None, yes: bool = False, dry_run: bool = False, verbose: bool = False) -> None:
    """Tear the homelab down in reverse layer order (backups are never touched); asks unless --yes."""
    from homelab.core import progress
    from homelab.root.layers import select

    overrides = {"target": target}
    s = session(c, dry_run, **overrides)
    chosen = list(reversed(select(s.cfg.target)))
    if not dry_run and not confirm(
        f"Tear down {', '.join(layer.name for layer in chosen)} of target {s.cfg.target}?", yes
    ):
        print("nothing torn down")
        return
    log = None if dry_run else progress.log_path(s.state_dir, "down")
    with progress.Steps(log, sys.stdout.isatty() and not verbose and not dry_run) as steps:
        for layer in chosen:
            steps.start(f"--> {layer.name}")
            t0 = time.monotonic()
            layer.hook("down")(c, dry_run, overrides)
            steps.finish(f"--> {layer.name}: done ({time.monotonic() - t0:.1f}s)")
        if log is not None:
            steps.say(f"log: {log}")
    if log is not None:
        progress.prune_logs(log.parent, "down")


@task(help={"target": TARGET, "json": 'Print JSON: {"target", "ok", "layers": [{"name", "ok", "summary"}]}.'})
def status(c: Any, target: str | None = None, json: bool = False) -> None:
    """One line per layer: ok or not, and what it found."""
    import json as jsonlib

    from invoke.exceptions import Exit

    from homelab.root.layers import select

    overrides = {"target": target}
    s = session(c, False, **overrides)
    layers = []
    for layer in select(s.cfg.target):
        ok, summary = layer.hook("status")(c, overrides)
        layers.append({"name": layer.name, "ok": bool(ok), "summary": summary})
        if not json:
            print(f"{layer.name:<10} {'ok' if ok else 'FAIL':<5} {summary}")
    healthy = all(row["ok"] for row in layers)
    if json:
        print(jsonlib.dumps({"target": s.cfg.target, "ok": healthy, "layers": layers}, indent=2))
    if not healthy:
        raise Exit(code=1)


@task(
    help={
        "json": 'Print JSON (for cron and monitoring): [{"name", "status", "detail", "fix"}], status ok/warn/fail.',
        "target": TARGET,
    }
)
def doctor(c: Any, json: bool = False, target: str | None = None) -> None:
    """Check every layer (tools, config, host network, nodes, K3S, ArgoCD, certificates, tunnel, backups)."""
    from invoke.exceptions import Exit

    from homelab.root.doctor import render, run_checks

    with session(c, False, target=target) as s:
        checks = run_checks(s)
    print(render(checks, json))
    failed = [check for check in checks if check.status == "fail"]
    if failed:
        raise Exit(code=1)
