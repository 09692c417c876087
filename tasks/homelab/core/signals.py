"""Ctrl-C and SIGTERM end a task with its documented exit and message, and stop what it started.

Without this, Ctrl-C reaches the running tool (restic, terraform) too; the tool
exits with its own code, invoke returns that as an ordinary failure, and the task
ends with exit 1 and the tool's words. SIGTERM (a scheduler stopping the job, a
shutdown) killed the Python process at once and left its children running, a
restic among them still holding the repository lock.

So each task installs two handlers. Both record which signal came, then raise
``KeyboardInterrupt`` in the main thread: invoke's wait forwards that and keeps
waiting for the child, Python code unwinds through its ``finally`` blocks. The
children are stopped from a watchdog thread, gently first: a Ctrl-C in a terminal
already reached them (one process group), so they get the same signal again only
if still alive after a grace period, then SIGTERM, then SIGKILL. The task wrapper
turns any failure that follows into exit 130 (SIGINT) or 143 (SIGTERM) with
"re-run the same command", since every task finishes interrupted work on re-run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from types import FrameType

from homelab.core.errors import EXIT_INTERRUPTED, EXIT_TERMINATED

RECEIVED: list[int] = []  # the signals that arrived during this task, in order
GRACE_SECONDS = 3.0  # a tool handling its own Ctrl-C (restic removing its lock) gets this long first
KILL_AFTER_SECONDS = 15.0  # then SIGTERM; SIGKILL this long after the first signal

_installed = False
_watchdog: list[threading.Thread] = []


def interrupted_by() -> int | None:
    """The first signal that interrupted this task, or None."""
    return RECEIVED[0] if RECEIVED else None


def _processes() -> dict[int, int]:
    """Every running process (zombies left out) and its parent, from one ``ps`` listing (Linux and macOS)."""
    try:
        listing = subprocess.run(
            ["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "stat="],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    parents = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0].isdigit() and fields[1].isdigit() and not fields[2].startswith("Z"):
            parents[int(fields[0])] = int(fields[1])
    return parents


def descendants(pid: int, processes: dict[int, int] | None = None) -> list[int]:
    """Every process below ``pid`` (children, their children...)."""
    children: dict[int, list[int]] = {}
    for child, parent in (_processes() if processes is None else processes).items():
        children.setdefault(parent, []).append(child)
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop()
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def _send(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _stop_children(signum: int) -> None:
    """The watchdog: the same signal after the grace period, SIGTERM, then SIGKILL, to whatever is still running."""
    me = os.getpid()
    steps = [(GRACE_SECONDS, signum), (GRACE_SECONDS * 2, signal.SIGTERM), (KILL_AFTER_SECONDS, signal.SIGKILL)]
    started = time.monotonic()
    # Every process seen below us from the signal on stays ours: one whose parent died first is
    # re-parented (to init) and would no longer be found below us, yet it is still our work.
    seen = set(descendants(me))
    if signum == signal.SIGTERM:  # nothing else sent it to the children: they hear it now
        _send(sorted(seen), signal.SIGTERM)
    for at, step in steps:
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        running = _processes()
        seen |= set(descendants(me, running))
        alive = sorted(pid for pid in seen if pid in running)
        if not alive:
            return
        _send(alive, step)


def _handle(signum: int, frame: FrameType | None) -> None:
    first = not RECEIVED
    RECEIVED.append(signum)
    if first:
        watchdog = threading.Thread(target=_stop_children, args=(signum,), name="homelab-stop-children", daemon=True)
        _watchdog.append(watchdog)
        watchdog.start()
    raise KeyboardInterrupt


def settle() -> None:
    """Before the task exits: wait until the children it started are gone (the watchdog ends them)."""
    for watchdog in _watchdog:
        watchdog.join(KILL_AFTER_SECONDS + 5)


def exit_message(signum: int) -> tuple[str, int]:
    """The words and exit code of a task that ``signum`` ended: 128 + the signal, as shells report it."""
    if signum == signal.SIGINT:
        return "interrupted; re-run the same command to continue", EXIT_INTERRUPTED
    return "stopped by SIGTERM; re-run the same command to continue", EXIT_TERMINATED


def install() -> None:
    """Handle SIGINT and SIGTERM for the rest of this process (main thread only; once)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    _installed = True
