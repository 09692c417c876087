"""The task decorator every namespace uses: invoke's ``@task`` plus error mapping.

A ``HomelabError`` becomes invoke's ``Exit`` with the error's documented code and
a redacted message, so users see one line, not a traceback. Anything else a task
raises is a bug, and its text may quote a secret (urllib quotes the URL, with the
bot token in it; a library may echo a value): the last-resort handler turns it
into a redacted message and exit code 1, so no traceback reaches a terminal or
cron's ``backup.log`` unredacted. ``HOMELAB_DEBUG=1`` adds the traceback, redacted
too. Only cheap modules are imported here: ``inv --list`` must not pay for
pydantic, fabric or kubernetes.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, overload

from invoke.exceptions import Exit, UnexpectedExit
from invoke.tasks import Task
from invoke.tasks import task as invoke_task

from homelab.core import signals
from homelab.core.errors import EXIT_FAILURE, EXIT_INTERRUPTED, HomelabError, UsageError
from homelab.core.secret_refs import REDACTOR

Body = Callable[..., Any]
DEBUG_ENV = "HOMELAB_DEBUG"


@overload
def task(body: Body, /) -> Task[Body]: ...
@overload
def task(**kwargs: Any) -> Callable[[Body], Task[Body]]: ...


def task(*args: Any, **kwargs: Any) -> Any:
    """Like ``invoke.task`` (same keyword arguments), with the toolkit's error handling."""

    def decorate(body: Body) -> Task[Body]:
        name = _task_name(body, kwargs.get("name"))

        @functools.wraps(body)
        def wrapper(c: Any, *a: Any, **kw: Any) -> Any:
            signals.install()
            try:
                return body(c, *a, **kw)
            except BaseException as err:
                raise _exit_for(name, err) from None

        made: Task[Body] = invoke_task(**kwargs)(wrapper)
        return made

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])  # bare @task
    return decorate


def _exit_for(name: str, err: BaseException) -> BaseException:
    """The ``Exit`` a task ends with for ``err``: a signal that came first decides, whatever failed after it.

    An interrupted tool fails in its own words (restic: "interrupted"); what the owner
    did was stop the task, so that is what they read, with the exit code of the signal.
    """
    if signum := signals.interrupted_by():
        signals.settle()
        message, code = signals.exit_message(signum)
        return Exit(message, code=code)
    if isinstance(err, HomelabError):
        return Exit(REDACTOR.redact(str(err)), code=err.exit_code)
    if isinstance(err, KeyboardInterrupt):
        return Exit("interrupted; re-run the same command to continue", code=EXIT_INTERRUPTED)
    if isinstance(err, Exit):
        return Exit(REDACTOR.redact(err.message) if err.message else None, code=err.code)
    if isinstance(err, Exception):
        from homelab.core.kube import unreachable  # only when a task failed: --list stays cheap

        if text := unreachable.message(name, err):
            return Exit(REDACTOR.redact(text), code=EXIT_FAILURE)
        return unexpected(name, err)
    return err  # SystemExit and the like pass unchanged


def _task_name(body: Body, name: str | None) -> str:
    """``backup.run`` for ``run`` in ``homelab.backup.tasks``: how the user typed it."""
    namespace = body.__module__.split(".")[1] if body.__module__.startswith("homelab.") else ""
    short = name or body.__name__.strip("_").replace("_", "-")
    return short if namespace in ("", "root") else f"{namespace}.{short}"


def unexpected(name: str, err: Exception) -> Exit:
    """The last resort: any other exception as a redacted message and a non-zero exit.

    Every registered secret value and every credential shape is masked (see
    ``Redactor``). The traceback is printed, redacted, only with ``HOMELAB_DEBUG=1``.
    """
    if os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes"):
        text = "".join(traceback.format_exception(err))
        print(REDACTOR.redact(text), file=sys.stderr, end="", flush=True)
        hint = ""
    else:
        hint = f"\n(this is a bug in the toolkit; {DEBUG_ENV}=1 shows the traceback, redacted)"
    code = EXIT_FAILURE
    if isinstance(err, UnexpectedExit):
        code = err.result.exited or EXIT_FAILURE
    detail = str(err).strip() or "no message"
    return Exit(REDACTOR.redact(f"{name} failed: unexpected {type(err).__name__}: {detail}{hint}"), code=code)


def session(c: Any, dry_run: bool = False, **overrides: Any) -> Any:
    """Open a ``Session`` (imported here, lazily, because it pulls in pydantic)."""
    from homelab.core.session import Session

    return Session(c, overrides, dry_run=dry_run)


def confirm(question: str, yes: bool) -> bool:
    """Ask before a destructive step; ``--yes`` or a non-interactive stdin decide."""
    import sys

    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{question} Refusing without a terminal; pass --yes to confirm")
    from homelab.core import progress

    with progress.paused():  # a task showing steps holds stdout: the question must reach the terminal
        answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")
