"""Converged means re-checked: execute, plan again, and only an empty plan counts."""

from __future__ import annotations

import pytest
from invoke import MockContext, Result

from homelab.core.converge import NotConverged, converge
from homelab.core.executor import Executor
from homelab.core.plan import Note, Plan, Run, Wait


def executor(dry_run: bool = False) -> tuple[Executor, list[str], MockContext]:
    lines: list[str] = []
    ctx = MockContext(run={"limactl start vm-a": Result(exited=0)})
    return Executor(ctx, dry_run=dry_run, out=lines.append), lines, ctx


def plans(*rounds: list[Run | Note | Wait]):
    """A build() that returns one plan per call, in order."""
    made = iter(rounds)
    return lambda: Plan("start VMs", list(next(made)))


START = Run(("limactl", "start", "vm-a"))


def test_a_plan_that_is_empty_after_acting_is_converged() -> None:
    ex, _, ctx = executor()
    assert converge(ex, plans([START], [Note("vm-a: already running")])) is True
    assert [call.args[0] for call in ctx.run.call_args_list] == ["limactl start vm-a"]


def test_work_left_after_acting_exits_1_naming_it() -> None:
    ex, _, _ = executor()
    with pytest.raises(NotConverged) as caught:
        converge(ex, plans([START], [START]))
    assert caught.value.exit_code == 1
    assert "not converged" in str(caught.value) and "run: limactl start vm-a" in str(caught.value)


def test_a_dry_run_prints_the_plan_once_and_never_plans_again() -> None:
    ex, lines, ctx = executor(dry_run=True)
    assert converge(ex, plans([START])) is False  # a second build() would raise StopIteration
    assert lines == ["plan: start VMs", "  [local] run: limactl start vm-a"]
    assert ctx.run.call_args_list == []


def test_an_empty_plan_still_waits_for_what_is_not_there_yet() -> None:
    ex, lines, _ = executor()
    answers = iter(["booting", "booting", None])
    wait = Wait("vm-a to answer", lambda: next(answers), timeout=5, interval=0.01)
    satisfied = Wait("vm-b to answer", lambda: None, timeout=5)
    assert converge(ex, plans([wait, satisfied])) is False
    assert lines[:2] == ["plan: start VMs", "  nothing to do"]
    # Listed once in the plan; only vm-a's wait runs afterwards (its display printed again, then its progress).
    assert sum("wait for vm-a" in line for line in lines) == 2 and sum("wait for vm-b" in line for line in lines) == 1
    assert "  waiting for vm-a to answer: booting" in lines
