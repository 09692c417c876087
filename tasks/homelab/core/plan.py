"""Actions and plans: what a task intends to do, as plain values.

Planning functions return a ``Plan``; they never touch disk or network. The same
plan is printed for ``--dry-run`` and executed otherwise, so what the user
reviews is exactly what runs. Display text is always passed through the
redactor, and secret contents are shown only as their size.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from homelab.core.secret_refs import REDACTOR, Secret

LOCAL = "local"


@dataclass(frozen=True)
class Run:
    """Run one argv on a host (``local`` or a node name)."""

    argv: tuple[str, ...]
    host: str = LOCAL
    why: str = ""
    sudo: bool = False
    stdin: Secret | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None

    def shell_line(self) -> str:
        """The argv quoted once, for the shell that invoke or fabric runs it in."""
        argv = ("sudo", "-n", "--", *self.argv) if self.sudo else self.argv
        line = shlex.join(argv)
        if self.cwd:
            line = f"cd {shlex.quote(self.cwd)} && {line}"
        return line

    def display(self) -> str:
        text = f"[{self.host}] run: {self.shell_line()}"
        if self.env:
            text += "  (env " + " ".join(f"{k}={v}" for k, v in self.env) + ")"
        if self.stdin is not None:
            text += f"  < {self.stdin.source} (secret)"
        return REDACTOR.redact(text)


@dataclass(frozen=True)
class WriteFile:
    """Create or replace a file with exact content and mode."""

    path: str
    content: str | bytes | Secret
    mode: int = 0o644
    host: str = LOCAL
    why: str = ""
    sudo: bool = False

    def display(self) -> str:
        kind = "secret, " if isinstance(self.content, Secret) else ""
        return REDACTOR.redact(
            f"[{self.host}] write {self.path} ({kind}mode {self.mode:04o}, {len(self.data())} bytes)"
        )

    def data(self) -> bytes:
        if isinstance(self.content, bytes):
            return self.content
        text = self.content.reveal() if isinstance(self.content, Secret) else self.content
        return text.encode()


@dataclass(frozen=True)
class Note:
    """A step that is not a command (e.g. 'vm-a: already running')."""

    text: str
    host: str = LOCAL

    def display(self) -> str:
        return REDACTOR.redact(f"[{self.host}] {self.text}")


Action = Run | WriteFile | Note


@dataclass
class Plan:
    """An ordered list of actions with a title; empty means nothing to do."""

    title: str
    actions: list[Action] = field(default_factory=list)

    def add(self, *actions: Action) -> Plan:
        self.actions.extend(actions)
        return self

    def extend(self, actions: Iterable[Action]) -> Plan:
        self.actions.extend(actions)
        return self

    def changes(self) -> list[Run | WriteFile]:
        return [a for a in self.actions if not isinstance(a, Note)]

    @property
    def empty(self) -> bool:
        return not self.changes()

    def hosts(self) -> list[str]:
        return sorted({a.host for a in self.changes()})

    def for_host(self, host: str) -> Plan:
        return Plan(f"{self.title} [{host}]", [a for a in self.actions if a.host == host])

    def lines(self) -> Iterator[str]:
        yield REDACTOR.redact(f"plan: {self.title}")
        if self.empty:
            yield "  nothing to do"
        for action in self.actions:
            yield "  " + action.display()
