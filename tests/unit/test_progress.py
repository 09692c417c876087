"""``inv up``'s output: steps with a live status on a terminal, the full text otherwise, always a log."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from homelab.core import progress
from homelab.core.secret_refs import REDACTOR


def run_steps(log: Path | None, live: bool, monkeypatch: pytest.MonkeyPatch) -> str:
    shown = io.StringIO()
    monkeypatch.setattr(sys, "stdout", shown)
    with progress.Steps(log, live) as steps:
        steps.start("[1/2] sandbox")
        print("plan: sandbox")
        print("  [local] write /tmp/x (mode 0600, 3 bytes)")
        steps.finish("[1/2] sandbox: changed (0.1s)")
        steps.start("[2/2] gitops")
        print("plan: gitops\n  nothing to do")
        steps.finish("[2/2] gitops: up to date (0.0s)")
        steps.say("up: target sandbox converged (0.1s)")
    assert sys.stdout is shown, "stdout is given back"
    return shown.getvalue()


FULL = """\
[1/2] sandbox
plan: sandbox
  [local] write /tmp/x (mode 0600, 3 bytes)
[1/2] sandbox: changed (0.1s)
[2/2] gitops
plan: gitops
  nothing to do
[2/2] gitops: up to date (0.0s)
up: target sandbox converged (0.1s)
"""


def test_without_a_terminal_every_line_is_printed_as_before_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "logs" / "up-1.log"
    assert run_steps(log, live=False, monkeypatch=monkeypatch) == FULL
    assert log.read_text() == FULL
    assert log.stat().st_mode & 0o777 == 0o600


def test_a_dry_run_has_no_log_and_prints_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_steps(None, live=False, monkeypatch=monkeypatch) == FULL
    assert not any(tmp_path.iterdir())


def test_on_a_terminal_the_steps_are_shown_and_the_plans_only_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "up.log"
    shown = run_steps(log, live=True, monkeypatch=monkeypatch)
    assert "[1/2] sandbox: changed (0.1s)" in shown and "[2/2] gitops: up to date (0.0s)" in shown
    assert "up: target sandbox converged" in shown
    assert "plan: sandbox" not in shown and "write /tmp/x" not in shown
    assert log.read_text() == FULL


def test_a_failing_step_is_marked_and_the_log_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "up.log"
    with pytest.raises(RuntimeError), progress.Steps(log, live=False) as steps:
        steps.start("[1/1] gitops")
        print("  [cluster] apply Namespace argocd")
        raise RuntimeError("boom")
    assert log.read_text().splitlines()[-1] == "[1/1] gitops: failed"
    assert f"log: {log}" in capsys.readouterr().err


def test_lines_are_redacted_before_they_reach_the_screen_or_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hunter2-not-a-real-token-0123456789"
    REDACTOR.register(secret)
    shown = io.StringIO()
    monkeypatch.setattr(sys, "stdout", shown)
    log = tmp_path / "up.log"
    with progress.Steps(log, live=False):
        print(f"token={secret}")
    assert secret not in shown.getvalue() and secret not in log.read_text()


def test_only_the_newest_logs_are_kept(tmp_path: Path) -> None:
    for second in range(25):
        progress.log_path(tmp_path, "up", now=1_800_000_000 + second).parent.mkdir(exist_ok=True)
        progress.log_path(tmp_path, "up", now=1_800_000_000 + second).write_text("")
    progress.prune_logs(tmp_path / "logs", "up", keep=20)
    kept = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert len(kept) == 20 and kept[-1] == progress.log_path(tmp_path, "up", now=1_800_000_024).name


def test_a_question_reaches_the_terminal_while_steps_hold_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = io.StringIO()
    monkeypatch.setattr(sys, "stdout", shown)
    with progress.Steps(None, live=True):
        with progress.paused():
            assert sys.stdout is shown
            print("Publish? [y/N]")
        assert sys.stdout is not shown
    assert "Publish? [y/N]" in shown.getvalue()


def test_each_run_has_its_own_log_even_within_one_second(tmp_path: Path) -> None:
    first, second = (
        progress.log_path(tmp_path, "up", now=1_800_000_000.1),
        progress.log_path(tmp_path, "up", now=1_800_000_000.2),
    )
    assert first != second and first.name < second.name
    assert first.name == "up-20270115T080000.100Z.log"
