"""What a long task shows while it works: steps with a live status, and every line in a log file.

``inv up`` is minutes of plans, waits and tool output. On a terminal the owner sees one
line per step with a spinner, the latest thing it did and its elapsed time (rich), then
each step's result; the full text (every plan line) goes to a log file under the state
dir, whose path the summary names. Without a terminal (cron, CI, tests), or with
``--verbose``, the full text is printed as it comes, line by line and flushed, exactly
as before, and still written to the log. Every line is redacted before it leaves.

``Steps`` takes ``sys.stdout`` over while it runs, so the layers' own ``print`` calls
and the executor's plan lines are caught without changing them. Only the step lines
and the summary are written by this module.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from homelab.core.secret_refs import REDACTOR

KEEP_LOGS = 20  # a task's newest logs kept in <state_dir>/logs; older ones are removed
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ACTIVE: list[Steps] = []  # the Steps that holds sys.stdout now, if any (see ``paused``)


def log_path(state_dir: Path, task: str, now: float | None = None) -> Path:
    """``<state_dir>/logs/<task>-<UTC time to the millisecond>.log``: one file per run, sorted by time."""
    at = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
    return state_dir / "logs" / f"{task}-{stamp}.log"


def prune_logs(directory: Path, task: str, keep: int = KEEP_LOGS) -> None:
    """Remove all but the newest ``keep`` logs of ``task``."""
    logs = sorted(directory.glob(f"{task}-*.log"))
    for old in logs[: max(len(logs) - keep, 0)]:
        old.unlink(missing_ok=True)


@dataclass
class _Step:
    title: str
    started: float = field(default_factory=time.monotonic)
    latest: str = ""
    result: str = ""  # set when finished: the line that replaces the spinner


class Steps(io.TextIOBase):
    """Replaces ``sys.stdout`` for a task's run: tees every line to the log, shows it or folds it into steps."""

    def __init__(self, log: Path | None, live: bool) -> None:
        self.log_file: Path | None = log
        self.live = live
        self._sink: TextIO | None = None
        self._real: Any = None
        self._partial = ""
        self._lock = threading.RLock()
        self._steps: list[_Step] = []
        self._live: Any = None

    # --- the stream the task's prints go to

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False  # what runs under us must not decide to draw on the terminal itself

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                self._line(REDACTOR.redact(line))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._sink is not None:
                self._sink.flush()
            if not self.live and self._real is not None:
                self._real.flush()

    def _line(self, line: str) -> None:
        if self._sink is not None:
            self._sink.write(line + "\n")
        if not self.live:
            self._real.write(line + "\n")
            self._real.flush()
        elif line.strip() and self._steps:
            self._steps[-1].latest = line.strip()

    # --- steps

    def start(self, title: str) -> None:
        """A step begins: shown at once (a spinner on a terminal, the title line otherwise)."""
        with self._lock:
            self._steps.append(_Step(title))
            if self._sink is not None:
                self._sink.write(title + "\n")
            if not self.live:
                self._real.write(title + "\n")
                self._real.flush()

    def finish(self, result: str) -> None:
        """The current step ended: ``result`` (its title, what happened, the time) replaces its live line."""
        with self._lock:
            if self._steps:
                self._steps[-1].result = result
            if self.live:
                self._log_only(result)
            else:
                self._line(result)
            if self._live is not None:
                self._live.refresh()

    def say(self, text: str) -> None:
        """A line for the owner in every mode (the summary), below the steps."""
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None
            self._log_only(text)
            self._real.write(text + "\n")
            self._real.flush()

    def _log_only(self, line: str) -> None:
        if self._sink is not None:
            self._sink.write(line + "\n")

    def _render(self) -> Any:
        """One line per step: a mark or a spinner, the title, the elapsed time, the latest line it printed."""
        from rich.console import Group
        from rich.text import Text

        now = time.monotonic()
        width = self._live.console.width if self._live is not None else 80
        lines = []
        with self._lock:
            for step in self._steps:
                if step.result:
                    failed = step.result.endswith("failed")
                    line = Text.assemble(("✗ " if failed else "✓ ", "red" if failed else "green"), step.result)
                else:
                    frame = SPINNER[int(now * 8) % len(SPINNER)]
                    line = Text.assemble(
                        (f"{frame} ", "cyan"),
                        (step.title, "bold"),
                        f"  {now - step.started:.0f}s  ",
                        (step.latest, "dim"),
                    )
                line.truncate(width, overflow="ellipsis")
                lines.append(line)
        return Group(*lines)

    # --- taking stdout over

    def __enter__(self) -> Steps:
        self._real = sys.stdout
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._sink = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self._real)
            self._live = Live(
                get_renderable=self._render,
                console=console,
                refresh_per_second=4,
                redirect_stdout=False,
                redirect_stderr=True,  # warnings and prompts appear above the steps
            )
            self._live.start()
        sys.stdout = self
        ACTIVE.append(self)
        return self

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The real terminal back for a moment (a question and its answer), then the steps again."""
        with self._lock:
            live = self._live
            if live is not None:
                live.stop()
            sys.stdout = self._real
        try:
            yield
        finally:
            with self._lock:
                sys.stdout = self
                if live is not None:
                    live.start()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        with self._lock:
            if self._partial:
                self._line(REDACTOR.redact(self._partial))
                self._partial = ""
            if kind is not None and self._steps and not self._steps[-1].result:
                self._steps[-1].result = f"{self._steps[-1].title}: failed"
                self._log_only(self._steps[-1].result)
            if self._live is not None:
                self._live.stop()
                self._live = None
            sys.stdout = self._real
            if self in ACTIVE:
                ACTIVE.remove(self)
            if self._sink is not None:
                self._sink.close()
                self._sink = None
        if kind is not None and self.log_file is not None:
            print(f"log: {self.log_file}", file=sys.stderr, flush=True)


def paused() -> Any:
    """A context in which ``input()`` and ``print`` reach the terminal even while steps are shown."""
    return ACTIVE[-1].paused() if ACTIVE else nullcontext()
