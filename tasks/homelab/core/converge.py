"""Converged means re-checked: after acting, plan again, and only an empty plan counts.

A layer builds its plan from the config and what it observes, executes it, then
builds it once more from what it observes now. Whatever the second plan still
holds is work the run did not finish (a controller that undid a write, a command
that exited 0 without doing its job): the task names it and exits 1 rather than
report success.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homelab.core.errors import EXIT_FAILURE, HomelabError
from homelab.core.plan import Plan, Wait


class NotConverged(HomelabError):
    """The plan made after acting is not empty."""

    exit_code = EXIT_FAILURE


def require_empty(plan: Plan) -> None:
    """Raise ``NotConverged`` naming every action still in ``plan`` (a plan made after acting)."""
    if plan.empty:
        return
    pending = "\n  ".join(action.display() for action in plan.changes())
    raise NotConverged(f"{plan.title}: not converged; still pending after acting:\n  {pending}")


def settle(executor: Any, plan: Plan) -> None:
    """Run the waits of a plan with nothing to change whose condition does not hold yet.

    An earlier run may have been stopped while waiting (for a rollout, for nodes):
    a re-run with nothing to apply still waits for what that run waited for.
    """
    for action in plan.actions:
        if isinstance(action, Wait) and action.check() is not None:
            executor.apply(action)


def converge(executor: Any, build: Callable[[], Plan]) -> bool:
    """Execute ``build()``'s plan, then re-check with a fresh ``build()``; True when something changed.

    Under ``--dry-run`` the first plan is printed and nothing else happens.
    """
    plan = build()
    executor.execute(plan)
    if executor.dry_run:
        return False
    if plan.empty:
        settle(executor, plan)
        return False
    require_empty(build())
    return True
