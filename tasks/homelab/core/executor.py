"""The one executor: runs a plan's actions locally or on nodes, or only shows them.

Every host is an invoke ``Context``: the task's own context for ``local`` and a
fabric ``Connection`` (itself a Context) for a node, so the same code runs in
both places and unit tests can pass invoke's ``MockContext``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from homelab.core.errors import CommandFailed, HomelabError
from homelab.core.plan import LOCAL, Note, Plan, Run, WriteFile
from homelab.core.secret_refs import REDACTOR


class Output(Protocol):
    def __call__(self, text: str) -> None: ...


def _print(text: str) -> None:
    print(text, flush=True)


class Executor:
    """Turns plans into effects, or into printed text under ``--dry-run``."""

    def __init__(
        self,
        local: Any,
        connect: Callable[[str], Any] | None = None,
        dry_run: bool = False,
        out: Output = _print,
    ) -> None:
        self.local = local
        self.connect = connect
        self.dry_run = dry_run
        self.out = out

    def execute(self, plan: Plan) -> list[Any]:
        """Run ``plan`` in order; print it instead when dry-running."""
        if self.dry_run or plan.empty:
            for line in plan.lines():
                self.out(line)
            return []
        self.out(REDACTOR.redact(f"==> {plan.title}"))
        return [self.apply(action) for action in plan.actions]

    def execute_concurrently(self, plan: Plan, key: Callable[[Run | WriteFile | Note], str] | None = None) -> None:
        """Run groups of ``plan`` at the same time; order is kept within a group.

        Groups are hosts by default, so each node works through its own steps
        while the nodes proceed in parallel.
        """
        if self.dry_run or plan.empty:
            self.execute(plan)
            return
        group_of = key or (lambda action: action.host)
        groups: dict[str, list[Run | WriteFile | Note]] = {}
        for action in plan.actions:
            groups.setdefault(group_of(action), []).append(action)
        self.out(REDACTOR.redact(f"==> {plan.title}"))
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            futures = [pool.submit(self._run_actions, actions) for actions in groups.values()]
        errors = [str(f.exception()) for f in futures if f.exception() is not None]
        if errors:
            raise HomelabError("; ".join(errors))

    def _run_actions(self, actions: Iterable[Run | WriteFile | Note]) -> None:
        for action in actions:
            self.apply(action)

    def apply(self, action: Run | WriteFile | Note) -> Any:
        self.out("  " + action.display())
        if isinstance(action, Note):
            return None
        if isinstance(action, WriteFile):
            return self._write(action)
        return self.run(action)

    def context_for(self, host: str) -> Any:
        if host == LOCAL:
            return self.local
        if self.connect is None:
            raise HomelabError(f"no SSH connector configured to reach {host}")
        return self.connect(host)

    def run(self, action: Run, check: bool = True) -> Any:
        """Run one command; a failure raises ``CommandFailed`` with redacted output."""
        ctx = self.context_for(action.host)
        kwargs: dict[str, Any] = {"hide": True, "warn": True, "pty": False}
        if action.stdin is not None:
            kwargs["in_stream"] = io.StringIO(action.stdin.reveal())
        else:
            kwargs["in_stream"] = False
        if action.env:
            kwargs["env"] = dict(action.env)
        if action.timeout:
            kwargs["timeout"] = action.timeout
        result = ctx.run(action.shell_line(), **kwargs)
        if check and result.exited != 0:
            raise CommandFailed(
                action.host,
                REDACTOR.redact(action.shell_line()),
                result.exited,
                REDACTOR.redact(result.stderr or result.stdout or ""),
            )
        return result

    def _write(self, action: WriteFile) -> None:
        if action.host == LOCAL and not action.sudo:
            write_local(Path(action.path), action.data(), action.mode)
            return
        ctx = self.context_for(action.host)
        tmp = self.run(Run(("mktemp",), host=action.host)).stdout.strip()
        ctx.put(io.BytesIO(action.data()), remote=tmp)
        install = Run(
            ("install", "-D", "-m", f"{action.mode:04o}", tmp, action.path), host=action.host, sudo=action.sudo
        )
        try:
            self.run(install)
        finally:
            self.run(Run(("rm", "-f", tmp), host=action.host), check=False)


def write_local(path: Path, data: bytes, mode: int) -> None:
    """Atomically replace ``path``; the file never exists with a looser mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.homelab-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o700 if mode & 0o077 == 0 else 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
