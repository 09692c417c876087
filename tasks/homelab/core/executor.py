"""The one executor: runs a plan's actions locally, on nodes or in the cluster, or only shows them.

Every host is an invoke ``Context``: the task's own context for ``local`` and a
fabric ``Connection`` (itself a Context) for a node, so the same code runs in
both places and unit tests can pass invoke's ``MockContext``. Kubernetes actions
go to one lazily opened client. Under ``--dry-run`` nothing but ``observe`` (a
read-only command) runs: every action is printed instead.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from invoke.exceptions import CommandTimedOut

from homelab.core import bounds, signals
from homelab.core.errors import CommandFailed, HomelabError
from homelab.core.plan import (
    LOCAL,
    Action,
    Apply,
    Cordon,
    Delete,
    Download,
    Drain,
    LiftPdbs,
    Note,
    Patch,
    Plan,
    RestorePdbs,
    Run,
    Upload,
    Wait,
    WriteFile,
)
from homelab.core.secret_refs import REDACTOR


class Output(Protocol):
    def __call__(self, text: str) -> None: ...


def print_line(text: str) -> None:
    print(text, flush=True)


class ProgressLines(io.TextIOBase):
    """A stream for a command's output that shows each complete line matching ``pattern``, redacted."""

    def __init__(self, pattern: str, out: Callable[[str], None]) -> None:
        self.pattern, self.out, self.partial = re.compile(pattern), out, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            if self.pattern.search(line):
                self.out("    | " + REDACTOR.redact(line.rstrip()))
        return len(text)


class Executor:
    """Turns plans into effects, or into printed text under ``--dry-run``."""

    def __init__(
        self,
        local: Any,
        connect: Callable[[str], Any] | None = None,
        dry_run: bool = False,
        out: Output = print_line,
        kube: Callable[[], Any] | None = None,
    ) -> None:
        self.local = local
        self.connect = connect
        self.dry_run = dry_run
        self.out = out
        self._kube_factory = kube
        self._kube: Any = None

    def kube(self) -> Any:
        """The cluster client, opened on first use (a plan without Kubernetes actions never needs one)."""
        if self._kube is None:
            if self._kube_factory is None:
                raise HomelabError("no cluster configured for this task's Kubernetes actions")
            self._kube = self._kube_factory()
        return self._kube

    def execute(self, plan: Plan) -> list[Any]:
        """Run ``plan`` in order; print it instead when dry-running."""
        if self.dry_run or plan.empty:
            for line in plan.lines():
                self.out(line)
            return []
        self.out(REDACTOR.redact(f"==> {plan.title}"))
        return [self.apply(action) for action in plan.actions]

    def execute_concurrently(self, plan: Plan, key: Callable[[Action], str] | None = None) -> None:
        """Run groups of ``plan`` at the same time; order is kept within a group.

        Groups are hosts by default, so each node works through its own steps
        while the nodes proceed in parallel.
        """
        if self.dry_run or plan.empty:
            self.execute(plan)
            return
        group_of = key or (lambda action: action.host)
        groups: dict[str, list[Action]] = {}
        for action in plan.actions:
            groups.setdefault(group_of(action), []).append(action)
        self.out(REDACTOR.redact(f"==> {plan.title}"))
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            futures = [pool.submit(self._run_actions, actions) for actions in groups.values()]
        errors = [str(f.exception()) for f in futures if f.exception() is not None]
        if errors:
            raise HomelabError("; ".join(errors))

    def _run_actions(self, actions: Iterable[Action]) -> None:
        for action in actions:
            self.apply(action)

    def apply(self, action: Action) -> Any:
        """Carry out one action (printed first); under ``--dry-run`` only print it."""
        self.out("  " + action.display())
        if self.dry_run or isinstance(action, Note):
            return None
        if isinstance(action, WriteFile):
            return self._write(action)
        if isinstance(action, Run):
            return self.run(action)
        if isinstance(action, Upload):
            return self._upload(action)
        if isinstance(action, Download):
            return self._download(action)
        if isinstance(action, Wait):
            from homelab.core.kube.waits import wait_for

            return wait_for(action.what, action.check, action.timeout, action.interval, progress=self.out)
        return self._kube_action(action)

    def _kube_action(self, action: Apply | Delete | Patch | Cordon | Drain | LiftPdbs | RestorePdbs) -> Any:
        kube = self.kube()
        if isinstance(action, Apply):
            return kube.apply(list(action.objects))
        if isinstance(action, Delete):
            return kube.delete(action.api_version, action.kind, action.name, action.namespace)
        if isinstance(action, Patch):
            return kube.merge_patch(action.api_version, action.kind, action.name, action.namespace, action.body)
        if isinstance(action, Cordon):
            return kube.cordon(action.node, unschedulable=not action.uncordon)
        if isinstance(action, Drain):
            return kube.drain(action.node, action.timeout, progress=self.out)
        if isinstance(action, LiftPdbs):
            return kube.lift_single_replica_pdbs(action.node)
        return kube.restore_lifted_pdbs()

    def observe(self, action: Run, check: bool = True) -> Any:
        """Run a read-only command (a probe, a listing); it runs under ``--dry-run`` too."""
        return self._run(action, check)

    def context_for(self, host: str) -> Any:
        if host == LOCAL:
            return self.local
        if self.connect is None:
            raise HomelabError(f"no SSH connector configured to reach {host}")
        return self.connect(host)

    def run(self, action: Run, check: bool = True) -> Any:
        """Run one changing command; a failure raises ``CommandFailed`` with redacted output.

        Under ``--dry-run`` the command is printed and not run (the result is an
        empty success): only ``observe`` runs commands then.
        """
        if self.dry_run:
            from invoke.runners import Result

            self.out("  " + action.display())
            return Result(stdout="", stderr="", exited=0)
        return self._run(action, check)

    def _run(self, action: Run, check: bool) -> Any:
        ctx = self.context_for(action.host)
        kwargs: dict[str, Any] = {"hide": True, "warn": True, "pty": False}
        # Always a stream that ends: invoke's ``in_stream=False`` leaves the child's stdin an open pipe,
        # so a tool that falls back to prompting (restic without a password) would wait forever.
        kwargs["in_stream"] = io.StringIO(action.stdin.reveal() if action.stdin is not None else "")
        if action.env:
            kwargs["env"] = dict(action.env)
        tool = Path(action.argv[0]).name if action.argv else ""
        timeout = action.timeout or bounds.default_for(tool, action.host != LOCAL)
        if timeout:
            kwargs["timeout"] = timeout
        if action.progress:  # still captured in the result; matching lines are also shown as they come
            shown = ProgressLines(action.progress, self.out)
            kwargs.update(hide=False, out_stream=shown, err_stream=shown)
        try:
            result = ctx.run(action.shell_line(), **kwargs)
        except CommandTimedOut as err:
            where = f"{tool or 'the command'} on {action.host}"
            last = REDACTOR.redact(bounds.last_error(err.result.stderr or ""))
            raise HomelabError(bounds.ran_out(where, timeout or 0, action.why, last)) from None
        except (ValueError, OSError):
            # invoke forwards a Ctrl-C by writing to the child's stdin, closed once it was read: the
            # signal (see core.signals) is what happened, and the watchdog stops the child
            if signals.interrupted_by():
                raise KeyboardInterrupt from None
            raise
        if check and result.exited != 0:
            raise CommandFailed(
                action.host,
                REDACTOR.redact(action.shell_line()),
                result.exited,
                REDACTOR.redact(result.stderr or result.stdout or ""),
                action.hint,
            )
        return result

    def _write(self, action: WriteFile) -> None:
        if action.host == LOCAL and not action.sudo:
            write_local(Path(action.path), action.data(), action.mode)
            return
        self._put(action.host, io.BytesIO(action.data()), action.path, action.mode, action.sudo)

    def _put(self, host: str, source: Any, path: str, mode: int, sudo: bool) -> None:
        """Upload to a temp file, then ``install`` it: the target never exists half-written."""
        ctx = self.context_for(host)
        tmp = self._run(Run(("mktemp",), host=host), True).stdout.strip()
        try:
            if host == LOCAL:
                Path(tmp).write_bytes(source.read() if hasattr(source, "read") else Path(source).read_bytes())
            else:
                ctx.put(source, remote=tmp)
            self._run(Run(("install", "-D", "-m", f"{mode:04o}", tmp, path), host=host, sudo=sudo), True)
        finally:
            self._run(Run(("rm", "-f", tmp), host=host), False)

    def _upload(self, action: Upload) -> None:
        self._put(action.host, action.local, action.remote, action.mode, action.sudo)

    def _download(self, action: Download) -> None:
        """Fetch into a 0600 temp file beside the target, then rename it into place.

        A root-only file (``sudo``) is first copied to a 0600 temp file owned by
        the SSH user, so it is never readable by anyone else on the way.
        """
        target = Path(action.local)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.homelab-tmp")
        source, staged = action.remote, None
        if action.sudo and action.host != LOCAL:
            user = str(self.context_for(action.host).user)
            staged = self._run(Run(("mktemp",), host=action.host), True).stdout.strip()
            copy = ("install", "-m", "0600", "-o", user, action.remote, staged)
            self._run(Run(copy, host=action.host, sudo=True), True)
            source = staged
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as sink:
                if action.host == LOCAL:
                    sink.write(Path(source).read_bytes())
                else:
                    self.context_for(action.host).get(source, local=sink)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
            if staged:
                self._run(Run(("rm", "-f", staged), host=action.host), False)


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
