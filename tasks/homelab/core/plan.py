"""Actions and plans: what a task intends to do, as plain values.

Planning functions return a ``Plan``; they never touch disk or network. The same
plan is printed for ``--dry-run`` and executed otherwise, so what the user
reviews is exactly what runs. Every side effect the toolkit takes is one of the
actions below: commands (``Run``: limactl, terraform, restic, kubeseal, crontab),
files (``WriteFile``, ``Upload``, ``Download``), Kubernetes writes (``Apply``,
``Delete``, ``Patch``, ``Cordon``, ``Drain``, ``LiftPdbs``, ``RestorePdbs``) and
waits (``Wait``). Display text is always passed through the redactor, and secret
contents are shown only as their size.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from homelab.core.secret_refs import REDACTOR, Secret

LOCAL = "local"
CLUSTER = "cluster"
Obj = dict[str, Any]


def object_ref(obj: Obj) -> str:
    """``Kind namespace/name``: how plans and errors name one Kubernetes object."""
    meta = obj.get("metadata", {})
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {ns}{meta.get('name', '?')}"


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
    # For long commands: a regular expression; each output line it matches is shown as it comes
    # (redacted), so minutes of work are not minutes of silence. Empty: the output stays hidden.
    progress: str = ""
    # What the owner can do when the command fails, added to its error (the command's own
    # last line of error output says what went wrong, not what to change).
    hint: str = ""

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


@dataclass(frozen=True)
class Upload:
    """Copy a local file to a host over SFTP (atomically: a temp file, then ``install``)."""

    local: str
    remote: str
    host: str
    mode: int = 0o600
    sudo: bool = False
    why: str = ""

    def display(self) -> str:
        return REDACTOR.redact(f"[{self.host}] upload {self.local} -> {self.remote} (mode {self.mode:04o})")


@dataclass(frozen=True)
class Download:
    """Copy a file from a host to a local path over SFTP; the local copy is written 0600."""

    remote: str
    local: str
    host: str
    sudo: bool = False
    why: str = ""

    def display(self) -> str:
        return REDACTOR.redact(f"[{self.host}] download {self.remote} -> {self.local} (mode 0600)")


@dataclass(frozen=True, eq=False)
class Apply:
    """Server-side apply of whole objects under the toolkit's field manager."""

    objects: tuple[Obj, ...]
    why: str = ""
    host: str = CLUSTER

    def display(self) -> str:
        refs = [object_ref(o) for o in self.objects]
        shown = ", ".join(refs[:6]) + (f", ... ({len(refs)} objects)" if len(refs) > 6 else "")
        return REDACTOR.redact(f"[{self.host}] apply {shown}")


@dataclass(frozen=True)
class Delete:
    """Delete one object (absent already counts as done)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    host: str = CLUSTER

    def display(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"[{self.host}] delete {self.kind} {ns}{self.name}"


@dataclass(frozen=True, eq=False)
class Patch:
    """A JSON merge patch of one object (e.g. scale a Deployment, ask Argo CD to sync)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    body: Obj
    why: str = ""
    host: str = CLUSTER

    def display(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return REDACTOR.redact(f"[{self.host}] patch {self.kind} {ns}{self.name}: {self.why or self.body}")


@dataclass(frozen=True)
class Cordon:
    """Mark a node unschedulable (``uncordon=True``: schedulable again)."""

    node: str
    uncordon: bool = False
    host: str = CLUSTER

    def display(self) -> str:
        return f"[{self.host}] {'uncordon' if self.uncordon else 'cordon'} node {self.node}"


@dataclass(frozen=True)
class Drain:
    """Evict every pod on a node through the eviction API, honouring PodDisruptionBudgets."""

    node: str
    timeout: float
    host: str = CLUSTER

    def display(self) -> str:
        return f"[{self.host}] drain node {self.node} (evictions honour PDBs; timeout {self.timeout:.0f}s)"


@dataclass(frozen=True)
class LiftPdbs:
    """Lift the single-replica PDBs guarding pods on a node; the old value is kept on the PDB itself."""

    node: str
    host: str = CLUSTER

    def display(self) -> str:
        return f"[{self.host}] lift single-replica PodDisruptionBudgets of pods on {self.node} (allowed downtime)"


@dataclass(frozen=True)
class RestorePdbs:
    """Restore every PDB this toolkit lifted (read back from the PDBs' own annotation)."""

    host: str = CLUSTER

    def display(self) -> str:
        return f"[{self.host}] restore lifted PodDisruptionBudgets"


@dataclass(frozen=True, eq=False)
class Wait:
    """Poll ``check`` (None when done, else what it waits for) until ``timeout``.

    ``check`` only observes. Under ``--dry-run`` a wait is printed, not run.
    """

    what: str
    check: Callable[[], str | None] = field(repr=False)
    timeout: float = 120.0
    interval: float = 0.5
    host: str = CLUSTER

    def display(self) -> str:
        return REDACTOR.redact(f"[{self.host}] wait for {self.what} (up to {self.timeout:.0f}s)")


KubeAction = Apply | Delete | Patch | Cordon | Drain | LiftPdbs | RestorePdbs
Action = Run | WriteFile | Upload | Download | KubeAction | Wait | Note


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

    def changes(self) -> list[Action]:
        """The actions that change something (notes and waits only report or observe)."""
        return [a for a in self.actions if not isinstance(a, Note | Wait)]

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
