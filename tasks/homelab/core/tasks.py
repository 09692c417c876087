"""The task decorator every namespace uses: invoke's ``@task`` plus error mapping.

A ``HomelabError`` becomes invoke's ``Exit`` with the error's documented code and
a redacted message, so users see one line, not a traceback. Only cheap modules
are imported here: ``inv --list`` must not pay for pydantic, fabric or kubernetes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, overload

from invoke.exceptions import Exit
from invoke.tasks import Task
from invoke.tasks import task as invoke_task

from homelab.core.errors import EXIT_INTERRUPTED, HomelabError, UsageError
from homelab.core.secret_refs import REDACTOR

Body = Callable[..., Any]


@overload
def task(body: Body, /) -> Task[Body]: ...
@overload
def task(**kwargs: Any) -> Callable[[Body], Task[Body]]: ...


def task(*args: Any, **kwargs: Any) -> Any:
    """Like ``invoke.task`` (same keyword arguments), with the toolkit's error handling."""

    def decorate(body: Body) -> Task[Body]:
        @functools.wraps(body)
        def wrapper(c: Any, *a: Any, **kw: Any) -> Any:
            try:
                return body(c, *a, **kw)
            except HomelabError as err:
                raise Exit(REDACTOR.redact(str(err)), code=err.exit_code) from None
            except KeyboardInterrupt:
                raise Exit("interrupted; re-run the same command to continue", code=EXIT_INTERRUPTED) from None

        made: Task[Body] = invoke_task(**kwargs)(wrapper)
        return made

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])  # bare @task
    return decorate


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
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")
