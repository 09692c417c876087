"""Plans are values; the executor runs them once through invoke, or only prints them."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import Mock

import pytest
from invoke import Context, MockContext, Result

from homelab.core.errors import CommandFailed
from homelab.core.executor import Executor
from homelab.core.plan import Note, Plan, Run, WriteFile
from homelab.core.secret_refs import REDACTOR, Secret, SecretLocation


def test_argv_is_quoted_once_at_the_edge() -> None:
    run = Run(("echo", "a b", "$(reboot)", "it's"))
    assert run.shell_line() == "echo 'a b' '$(reboot)' 'it'\"'\"'s'"


def test_sudo_is_non_interactive() -> None:
    assert Run(("systemctl", "restart", "k3s"), sudo=True).shell_line() == "sudo -n -- systemctl restart k3s"


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    target = tmp_path / "file"
    plan = Plan("demo", [Run(("touch", str(target))), WriteFile(str(target), "x")])
    Executor(MockContext(), dry_run=True, out=lines.append).execute(plan)  # MockContext raises on any run
    assert lines[0] == "plan: demo"
    assert f"[local] run: touch {target}" in lines[1]
    assert "write" in lines[2] and not target.exists()


def test_empty_plan_says_nothing_to_do() -> None:
    lines: list[str] = []
    Executor(MockContext(), out=lines.append).execute(Plan("vms", [Note("a: already running")]))
    assert "nothing to do" in "\n".join(lines)


def test_executor_runs_exact_commands_in_order_with_secrets_only_on_stdin() -> None:
    token = Secret("K10-stdin-only-token", "test")
    ctx = MockContext(
        run={
            "limactl start --tty=false 'vm one'": Result(stdout="started", exited=0),
            "sudo -n -- k3s agent --token-file /dev/stdin": Result(exited=0),
        }
    )
    plan = Plan(
        "start",
        [
            Run(("limactl", "start", "--tty=false", "vm one")),
            Note("between the two"),
            Run(("k3s", "agent", "--token-file", "/dev/stdin"), sudo=True, stdin=token, env=(("A", "1"),), timeout=5),
        ],
    )
    results = Executor(ctx, out=lambda _: None).execute(plan)
    first, second = ctx.run.call_args_list
    assert first.args == ("limactl start --tty=false 'vm one'",)
    stdin = first.kwargs.pop("in_stream")
    assert stdin.read() == "", "a stdin that ends at once: nothing can wait on it"
    assert first.kwargs == {"hide": True, "warn": True, "pty": False, "timeout": 1200}  # limactl's bound
    assert second.args == ("sudo -n -- k3s agent --token-file /dev/stdin",)
    assert second.kwargs["in_stream"].read() == "K10-stdin-only-token"
    assert (second.kwargs["env"], second.kwargs["timeout"]) == ({"A": "1"}, 5)
    assert results[0].stdout == "started" and results[1] is None and results[2].exited == 0


def test_a_failing_command_stops_the_plan_before_the_next_action(tmp_path: Path) -> None:
    ctx = MockContext(run={"false": Result(exited=3, stderr="boom")})
    later = tmp_path / "later"
    plan = Plan("stops", [Run(("false",)), WriteFile(str(later), "x"), Run(("never",))])
    with pytest.raises(CommandFailed, match=r"local: `false` failed with exit code 3: boom"):
        Executor(ctx, out=lambda _: None).execute(plan)
    assert [c.args[0] for c in ctx.run.call_args_list] == ["false"]
    assert not later.exists()


def test_a_node_file_is_uploaded_to_a_temp_file_then_installed_with_its_mode() -> None:
    node = MockContext(
        run={
            "mktemp": Result(stdout="/tmp/tmp.abc\n"),
            "sudo -n -- install -D -m 0600 /tmp/tmp.abc /etc/rancher/token": Result(),
            "rm -f /tmp/tmp.abc": Result(),
        }
    )
    node.put = Mock()
    hosts: list[str] = []

    def connect(host: str) -> MockContext:
        hosts.append(host)
        return node

    plan = Plan("token", [WriteFile("/etc/rancher/token", "secret-ish", 0o600, host="k3s-server", sudo=True)])
    Executor(MockContext(), connect=connect, out=lambda _: None).execute(plan)
    assert set(hosts) == {"k3s-server"}
    assert [c.args[0] for c in node.run.call_args_list] == [
        "mktemp",
        "sudo -n -- install -D -m 0600 /tmp/tmp.abc /etc/rancher/token",
        "rm -f /tmp/tmp.abc",
    ]
    [put] = node.put.call_args_list
    assert put.args[0].getvalue() == b"secret-ish" and put.kwargs == {"remote": "/tmp/tmp.abc"}


def test_secret_values_are_masked_in_plans_and_errors(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("K10-very-secret-token\n")
    token_file.chmod(0o600)
    token = SecretLocation(file=str(token_file)).resolve()
    assert isinstance(token, Secret) and str(token) == "<redacted>"
    plan = Plan(
        "join",
        [Run(("k3s", "agent", "--token-file", "/dev/stdin"), stdin=token), WriteFile("/etc/token", token, 0o600)],
    )
    text = "\n".join(plan.lines())
    assert "K10-very-secret-token" not in text
    ctx = MockContext(run=Result(exited=1, stderr="bad token K10-very-secret-token"))
    with pytest.raises(CommandFailed) as caught:
        Executor(ctx, out=lambda _: None).run(Run(("false",)))
    assert "K10-very-secret-token" not in str(caught.value)
    assert REDACTOR.redact("x K10-very-secret-token y") == "x <redacted> y"


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    from homelab.core.errors import SecretError

    token_file = tmp_path / "token"
    token_file.write_text("value-value")
    token_file.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        SecretLocation(file=str(token_file)).resolve()


def test_local_write_has_exact_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "secret.txt"
    Executor(Context(), out=lambda _: None).execute(Plan("w", [WriteFile(str(target), "data", 0o600)]))
    assert target.read_text() == "data"
    assert target.stat().st_mode & 0o777 == 0o600


def test_concurrent_groups_run_in_parallel(tmp_path: Path) -> None:
    import time

    plan = Plan("sleepers", [Run(("sleep", "0.5"), host="local", why=str(i)) for i in range(3)])
    start = time.monotonic()
    Executor(Context(), out=lambda _: None).execute_concurrently(
        plan, key=lambda a: a.why if isinstance(a, Run) else ""
    )
    assert time.monotonic() - start < 1.2
