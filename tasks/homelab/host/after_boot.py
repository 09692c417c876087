"""After a boot: wait (bounded) until K3S and Argo CD are back, then say so once by Telegram.

An owner whose Mac restarted at 4 a.m. after an update wants one message: "back
in 6 min" or "still down after 30 min: worker-2 not Ready, plex Progressing".
The message goes through backup.run's ``notify`` (same bot, same redaction).
The wait polls what ``inv doctor`` reads (nodes' Ready condition, every Argo CD
Application's sync and health status) and never changes anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from homelab.core.errors import HomelabError

SHOWN = 6  # a message lists at most this many things still down


def down(session: Any, kube: Any) -> list[str]:
    """What is not back yet: nodes not Ready, Applications not Synced and Healthy; empty when all are."""
    missing: list[str] = []
    try:
        ready = kube.ready_nodes()
    except HomelabError as err:
        return [f"the API server does not answer ({err})"]
    missing += [f"node {n.name} not Ready" for n in session.cfg.nodes if not ready.get(n.name)]
    try:
        apps = kube.list_objects("argoproj.io/v1alpha1", "Application", "argocd")
    except HomelabError as err:
        return [*missing, f"Argo CD does not answer ({err})"]
    if not apps:
        missing.append("no Argo CD Applications yet")
    for app in apps:
        status = app.get("status") or {}
        sync = (status.get("sync") or {}).get("status", "Unknown")
        health = (status.get("health") or {}).get("status", "Unknown")
        if sync != "Synced" or health != "Healthy":
            missing.append(f"{app['metadata']['name']} {sync}/{health}")
    return missing


def message(missing: list[str], seconds: float, name: str) -> str:
    """The one message: how long it took, or what is still down when the wait ran out."""
    minutes = f"{seconds / 60:.1f} min"
    if not missing:
        return f"{name}: back after boot in {minutes}; every node Ready, every Application Synced and Healthy"
    shown = "; ".join(missing[:SHOWN]) + (f" (and {len(missing) - SHOWN} more)" if len(missing) > SHOWN else "")
    return f"{name}: still down {minutes} after boot: {shown}"


def wait(
    session: Any,
    connect: Callable[[], Any],
    timeout: float,
    interval: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[str], float]:
    """Poll until nothing is down or ``timeout`` passes; what is still down and the seconds it took."""
    started = clock()
    missing = ["not checked yet"]
    while True:
        try:
            missing = down(session, connect())
        except HomelabError as err:
            missing = [f"the cluster does not answer ({err})"]
        elapsed = clock() - started
        if not missing or elapsed >= timeout:
            return missing, elapsed
        sleep(min(interval, max(timeout - elapsed, 0.0)))


def report(session: Any, timeout: float, interval: float = 10.0) -> tuple[bool, str]:
    """Wait, send the one Telegram message, and return (all back, the message)."""
    from homelab.backup.run import notify
    from homelab.core import cluster

    missing, seconds = wait(session, lambda: cluster.connect(session), timeout, interval)
    text = message(missing, seconds, session.cfg.name)
    notify(session, text)
    return not missing, text
