"""The executor, action by action: what reaches a host, a file or the cluster, and what --dry-run prints instead.

Hosts are invoke ``MockContext`` objects (``run`` records exact command lines;
``put``/``get`` are mocks), the cluster is a recording stand-in for ``Kube``: the
executor's part is to hand each action to the right one, exactly once, in order.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import pytest
from invoke import MockContext, Result

from homelab.core.errors import CommandFailed, HomelabError
from homelab.core.executor import Executor, print_line, write_local
from homelab.core.kube.client import KubeError
from homelab.core.plan import (
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


class RecordingKube:
    """Stands in for ``Kube``: records each call and returns a marker naming it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> str:
            self.calls.append((name, args, kwargs))
            return f"{name} done"

        return record


def executor(**kwargs: Any) -> tuple[Executor, list[str]]:
    lines: list[str] = []
    return Executor(kwargs.pop("local", MockContext()), out=lines.append, **kwargs), lines


OBJ = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}


def test_each_kubernetes_action_goes_to_the_one_lazily_opened_client() -> None:
    kube = RecordingKube()
    opened: list[int] = []

    def open_kube() -> RecordingKube:
        opened.append(1)
        return kube

    run, lines = executor(kube=open_kube)
    assert opened == [], "no client is opened before a Kubernetes action needs one"
    body = {"spec": {"replicas": 0}}
    plan = Plan(
        "cluster",
        [
            Apply((OBJ,)),
            Delete("v1", "Secret", "s", "n"),
            Patch("apps/v1", "Deployment", "d", "n", body),
            Cordon("node-a"),
            Cordon("node-a", uncordon=True),
            LiftPdbs("node-a"),
            Drain("node-a", 30),
            RestorePdbs(),
        ],
    )
    results = run.execute(plan)
    assert opened == [1]
    assert [(name, args) for name, args, _ in kube.calls] == [
        ("apply", ([OBJ],)),
        ("delete", ("v1", "Secret", "s", "n")),
        ("merge_patch", ("apps/v1", "Deployment", "d", "n", body)),
        ("cordon", ("node-a",)),
        ("cordon", ("node-a",)),
        ("lift_single_replica_pdbs", ("node-a",)),
        ("drain", ("node-a", 30)),
        ("restore_lifted_pdbs", ()),
    ]
    assert [kw for name, _, kw in kube.calls if name == "cordon"] == [{"unschedulable": True}, {"unschedulable": False}]
    [drain_kwargs] = [kw for name, _, kw in kube.calls if name == "drain"]
    assert drain_kwargs["progress"] == run.out
    assert results == [f"{name} done" for name, _, _ in kube.calls]
    assert lines[0] == "==> cluster" and lines[1:] == ["  " + a.display() for a in plan.actions]


def test_a_kubernetes_action_without_a_cluster_is_refused() -> None:
    run, _ = executor()
    with pytest.raises(HomelabError, match=r"^no cluster configured for this task's Kubernetes actions$"):
        run.execute(Plan("x", [Delete("v1", "Secret", "s", "n")]))


def test_dry_run_prints_every_action_and_touches_nothing(tmp_path: Path) -> None:
    kube = RecordingKube()
    checked: list[int] = []
    run, lines = executor(dry_run=True, kube=lambda: kube, connect=lambda host: pytest.fail("connected"))
    actions = [
        Run(("rm", "-rf", str(tmp_path))),
        WriteFile(str(tmp_path / "f"), "x"),
        Upload(str(tmp_path / "f"), "/etc/x", "node-a"),
        Download("/etc/x", str(tmp_path / "g"), "node-a"),
        Apply((OBJ,)),
        Wait("never", lambda: checked.append(1) or "waiting", timeout=0),
    ]
    for action in actions:
        assert run.apply(action) is None
    assert lines == ["  " + a.display() for a in actions]
    assert kube.calls == [] and checked == [] and not (tmp_path / "f").exists() and not (tmp_path / "g").exists()
    result = run.run(Run(("reboot",)))
    assert (result.exited, result.stdout, result.stderr) == (0, "", "")
    assert lines[-1] == "  [local] run: reboot"


def test_observe_runs_even_under_dry_run_and_can_leave_a_failure_to_the_caller() -> None:
    ctx = MockContext(run={"limactl list --json": Result(stdout="[]"), "false": Result(exited=1, stdout="why")})
    run, lines = executor(local=ctx, dry_run=True)
    assert run.observe(Run(("limactl", "list", "--json"))).stdout == "[]"
    assert run.observe(Run(("false",)), check=False).exited == 1
    with pytest.raises(CommandFailed, match=r"^local: `false` failed with exit code 1: why$"):
        run.observe(Run(("false",)))
    assert lines == [], "an observation is not an action: nothing is printed"


def test_a_failure_names_the_host_the_command_and_the_last_line_of_its_output() -> None:
    ctx = MockContext(run={"sh -c 'exit 4'": Result(exited=4, stdout="first\nlast words\n", stderr="")})
    run, _ = executor(local=ctx)
    with pytest.raises(CommandFailed) as caught:
        run.run(Run(("sh", "-c", "exit 4")))
    assert str(caught.value) == "local: `sh -c 'exit 4'` failed with exit code 4: last words"
    assert caught.value.code == 4
    assert run.run(Run(("sh", "-c", "exit 4")), check=False).exited == 4
    with pytest.raises(CommandFailed) as caught:
        run.run(Run(("sh", "-c", "exit 4"), hint="Set x.y to go on"))
    assert str(caught.value) == "local: `sh -c 'exit 4'` failed with exit code 4: last words. Set x.y to go on"


def test_a_wait_polls_its_check_and_reports_progress() -> None:
    answers = iter(["starting", "starting", None])
    run, lines = executor()
    assert run.apply(Wait("the thing", lambda: next(answers), timeout=5, interval=0.01)) is None
    assert lines == ["  [cluster] wait for the thing (up to 5s)", "  waiting for the thing: starting"]
    with pytest.raises(KubeError, match=r"^timed out after 0s waiting for stuck: still$"):
        run.apply(Wait("stuck", lambda: "still", timeout=0, interval=0.01))


def test_hosts_are_the_local_context_or_a_connection_per_node() -> None:
    local, node = MockContext(), MockContext()
    connected: list[str] = []
    run, _ = executor(local=local, connect=lambda host: connected.append(host) or node)
    assert run.context_for("local") is local and connected == []
    assert run.context_for("node-a") is node and connected == ["node-a"]
    alone, _ = executor(local=local)
    with pytest.raises(HomelabError, match=r"^no SSH connector configured to reach node-a$"):
        alone.context_for("node-a")


def node_context(tmp: str = "/tmp/tmp.up", *commands: str) -> MockContext:
    ctx = MockContext(run={"mktemp": Result(stdout=f"{tmp}\n"), **{c: Result() for c in commands}}, repeat=True)
    ctx.put = Mock()
    ctx.get = Mock()
    return ctx


def test_an_upload_goes_to_a_temp_file_then_is_installed_and_the_temp_file_removed(tmp_path: Path) -> None:
    source = tmp_path / "images.tar"
    source.write_bytes(b"TAR")
    node = MockContext(
        run={
            "mktemp": Result(stdout="/tmp/tmp.up\n"),
            "install -D -m 0640 /tmp/tmp.up /var/lib/images.tar": Result(),
            "rm -f /tmp/tmp.up": Result(),
        }
    )
    node.put = Mock()
    run, _ = executor(connect={"node-a": node}.__getitem__)
    run.execute(Plan("up", [Upload(str(source), "/var/lib/images.tar", "node-a", mode=0o640)]))
    assert [c.args[0] for c in node.run.call_args_list] == [
        "mktemp",
        "install -D -m 0640 /tmp/tmp.up /var/lib/images.tar",
        "rm -f /tmp/tmp.up",
    ]
    node.put.assert_called_once_with(str(source), remote="/tmp/tmp.up")


def test_a_failed_install_still_removes_the_temp_file_and_says_why() -> None:
    node = MockContext(
        run={
            "mktemp": Result(stdout="/tmp/tmp.up\n"),
            "sudo -n -- install -D -m 0600 /tmp/tmp.up /etc/x": Result(exited=1, stderr="read-only file system"),
            "rm -f /tmp/tmp.up": Result(exited=1),
        }
    )
    node.put = Mock()
    run, _ = executor(connect=lambda host: node)
    with pytest.raises(CommandFailed, match="read-only file system"):
        run.apply(WriteFile("/etc/x", "data", 0o600, host="node-a", sudo=True))
    assert [c.args[0] for c in node.run.call_args_list][-1] == "rm -f /tmp/tmp.up"


def test_a_root_owned_local_file_is_staged_in_a_temp_file_and_installed_with_sudo(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    local = MockContext(
        run={
            "mktemp": Result(stdout=f"{staged}\n"),
            f"sudo -n -- install -D -m 0644 {staged} /etc/motd": Result(),
            f"rm -f {staged}": Result(),
        }
    )
    run, _ = executor(local=local)
    run.apply(WriteFile("/etc/motd", "hello\n", 0o644, sudo=True))
    assert staged.read_bytes() == b"hello\n"
    assert [c.args[0] for c in local.run.call_args_list] == [
        "mktemp",
        f"sudo -n -- install -D -m 0644 {staged} /etc/motd",
        f"rm -f {staged}",
    ]


def test_a_download_lands_0600_in_place_through_a_temp_file(tmp_path: Path) -> None:
    node = node_context()
    node.get.side_effect = lambda source, local: local.write(b"kubeconfig-bytes")
    run, _ = executor(connect={"node-a": node}.__getitem__)
    target = tmp_path / "two" / "deep" / "k3s.yaml"
    run.apply(Download("/home/me/k3s.yaml", str(target), "node-a"))
    assert target.read_bytes() == b"kubeconfig-bytes" and target.stat().st_mode & 0o777 == 0o600
    assert node.get.call_args.args[0] == "/home/me/k3s.yaml"
    assert node.run.call_args_list == [], "a file the SSH user can read needs no command"
    assert sorted(p.name for p in target.parent.iterdir()) == ["k3s.yaml"]


def test_a_root_only_download_is_first_copied_0600_for_the_ssh_user_then_removed(tmp_path: Path) -> None:
    node = node_context(
        "/tmp/tmp.stage",
        "sudo -n -- install -m 0600 -o ops /etc/rancher/k3s/k3s.yaml /tmp/tmp.stage",
        "rm -f /tmp/tmp.stage",
    )
    node.user = "ops"
    node.get.side_effect = lambda source, local: local.write(b"secret")
    run, _ = executor(connect={"node-a": node}.__getitem__)
    run.apply(Download("/etc/rancher/k3s/k3s.yaml", str(tmp_path / "k3s.yaml"), "node-a", sudo=True))
    assert [c.args[0] for c in node.run.call_args_list] == [
        "mktemp",
        "sudo -n -- install -m 0600 -o ops /etc/rancher/k3s/k3s.yaml /tmp/tmp.stage",
        "rm -f /tmp/tmp.stage",
    ]
    assert node.get.call_args.args[0] == "/tmp/tmp.stage"
    assert (tmp_path / "k3s.yaml").read_bytes() == b"secret"


def test_a_failed_download_leaves_neither_the_target_nor_a_temp_file(tmp_path: Path) -> None:
    node = node_context()
    node.get.side_effect = OSError("connection lost")
    run, _ = executor(connect=lambda host: node)
    with pytest.raises(OSError, match="connection lost"):
        run.apply(Download("/x", str(tmp_path / "x"), "node-a"))
    assert list(tmp_path.iterdir()) == []


def test_a_local_download_copies_the_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"local")
    run, _ = executor()
    run.apply(Download(str(tmp_path / "a"), str(tmp_path / "b"), "local"))
    assert (tmp_path / "b").read_bytes() == b"local" and (tmp_path / "b").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o755])
def test_a_local_write_replaces_the_file_with_exactly_its_mode(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "two" / "deep" / "file"
    write_local(target, b"first", mode)
    write_local(target, b"second", mode)
    assert target.read_bytes() == b"second" and target.stat().st_mode & 0o777 == mode
    assert [p.name for p in target.parent.iterdir()] == ["file"], "no temp file is left beside it"


def test_a_secret_file_is_never_readable_by_others_while_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    real_write = os.write

    def spy(fd: int, data: bytes) -> int:
        modes.append(os.fstat(fd).st_mode & 0o777)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    old = os.umask(0)
    try:
        for name, mode in (("token", 0o600), ("public", 0o644), ("own-script", 0o700), ("script", 0o755)):
            write_local(tmp_path / name, b"t", mode)
    finally:
        os.umask(old)
    assert modes == [0o600, 0o600, 0o700, 0o600], "owner-only modes as they are; anything wider is 0600 until done"


def test_concurrent_groups_each_keep_their_order_and_every_failure_is_reported() -> None:
    ctx = MockContext(
        run={
            "echo a1": Result(),
            "echo a2": Result(),
            "false b": Result(exited=1, stderr="b broke"),
            "false c": Result(exited=2, stderr="c broke"),
        }
    )
    run, lines = executor(local=ctx)
    plan = Plan(
        "groups",
        [
            Run(("echo", "a1"), why="a"),
            Run(("false", "b"), why="b"),
            Run(("echo", "a2"), why="a"),
            Run(("false", "c"), why="c"),
        ],
    )
    with pytest.raises(HomelabError) as caught:
        run.execute_concurrently(plan, key=lambda action: action.why if isinstance(action, Run) else "")
    assert str(caught.value) == (
        "local: `false b` failed with exit code 1: b broke; local: `false c` failed with exit code 2: c broke"
    )
    ran = [c.args[0] for c in ctx.run.call_args_list]
    assert ran.index("echo a1") < ran.index("echo a2") and sorted(ran) == ["echo a1", "echo a2", "false b", "false c"]
    assert lines[0] == "==> groups"


def test_concurrent_groups_are_hosts_by_default_and_a_dry_run_only_prints() -> None:
    nodes = {"a": MockContext(run={"true": Result()}), "b": MockContext(run={"true": Result()})}
    run, _ = executor(connect=nodes.__getitem__)
    run.execute_concurrently(Plan("hosts", [Run(("true",), host="a"), Run(("true",), host="b")]))
    assert [len(n.run.call_args_list) for n in nodes.values()] == [1, 1]
    dry, lines = executor(dry_run=True, connect=lambda host: pytest.fail("connected"))
    dry.execute_concurrently(Plan("hosts", [Run(("true",), host="a")]))
    assert lines == ["plan: hosts", "  [a] run: true"]
    nothing, said = executor()
    nothing.execute_concurrently(Plan("idle", [Note("all good")]))
    assert said == ["plan: idle", "  nothing to do", "  [local] all good"]


def test_execute_returns_each_actions_result_in_order(tmp_path: Path) -> None:
    ctx = MockContext(run={"echo hi": Result(stdout="hi\n")})
    run, lines = executor(local=ctx)
    results = run.execute(Plan("two", [Note("first"), Run(("echo", "hi")), WriteFile(str(tmp_path / "f"), "x")]))
    assert results[0] is None and results[1].stdout == "hi\n" and results[2] is None
    assert lines == [
        "==> two",
        "  [local] first",
        "  [local] run: echo hi",
        f"  [local] write {tmp_path / 'f'} (mode 0644, 1 bytes)",
    ]


def test_print_line_writes_one_line_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    print_line("plan: x")
    assert capsys.readouterr().out == "plan: x\n"
    assert Executor(MockContext()).out is print_line and Executor(MockContext()).dry_run is False


def test_stdin_carries_the_secret_and_nothing_else() -> None:
    from homelab.core.secret_refs import Secret

    ctx = MockContext(run={"kubeseal --raw": Result()})
    run, _ = executor(local=ctx)
    run.run(Run(("kubeseal", "--raw"), stdin=Secret("v4lue", "env X")))
    stream = ctx.run.call_args.kwargs["in_stream"]
    assert isinstance(stream, io.StringIO) and stream.getvalue() == "v4lue"
    assert "env" not in ctx.run.call_args.kwargs and "timeout" not in ctx.run.call_args.kwargs


def test_a_root_only_download_whose_copy_fails_writes_nothing_and_cleans_up(tmp_path: Path) -> None:
    node = MockContext(
        run={
            "mktemp": Result(stdout="/tmp/tmp.stage\n"),
            "sudo -n -- install -m 0600 -o ops /etc/x /tmp/tmp.stage": Result(exited=1, stderr="no such file"),
            "rm -f /tmp/tmp.stage": Result(exited=1, stderr="already gone"),
        }
    )
    node.user = "ops"
    node.get = Mock()
    run, _ = executor(connect={"node-a": node}.__getitem__)
    with pytest.raises(CommandFailed, match="no such file"):
        run.apply(Download("/etc/x", str(tmp_path / "x"), "node-a", sudo=True))
    assert node.get.call_args_list == [] and list(tmp_path.iterdir()) == []
    ok = MockContext(
        run={
            "mktemp": Result(stdout="/tmp/tmp.stage\n"),
            "sudo -n -- install -m 0600 -o ops /etc/x /tmp/tmp.stage": Result(),
            "rm -f /tmp/tmp.stage": Result(exited=1, stderr="already gone"),
        }
    )
    ok.user = "ops"
    ok.get = Mock(side_effect=lambda source, local: local.write(b"x"))
    done, _ = executor(connect={"node-a": ok}.__getitem__)
    done.apply(Download("/etc/x", str(tmp_path / "x"), "node-a", sudo=True))
    assert (tmp_path / "x").read_bytes() == b"x", "a failed clean-up of the staged copy does not fail the download"


def test_no_temp_file_means_no_upload() -> None:
    node = MockContext(run={"mktemp": Result(exited=1, stderr="no space left on device")})
    node.put = Mock()
    run, _ = executor(connect={"node-a": node}.__getitem__)
    with pytest.raises(CommandFailed, match="no space left on device"):
        run.apply(WriteFile("/etc/x", "data", host="node-a"))
    assert node.put.call_args_list == []


def test_a_local_upload_copies_the_file_then_installs_it_with_sudo(tmp_path: Path) -> None:
    source, staged = tmp_path / "k3s", tmp_path / "staged"
    source.write_bytes(b"ELF")
    local = MockContext(
        run={
            "mktemp": Result(stdout=f"{staged}\n"),
            f"sudo -n -- install -D -m 0755 {staged} /usr/local/bin/k3s": Result(),
            f"rm -f {staged}": Result(),
        }
    )
    run, _ = executor(local=local)
    run.apply(Upload(str(source), "/usr/local/bin/k3s", "local", mode=0o755, sudo=True))
    assert staged.read_bytes() == b"ELF"
    assert f"sudo -n -- install -D -m 0755 {staged} /usr/local/bin/k3s" in [c.args[0] for c in local.run.call_args_list]


def test_a_failure_without_output_says_so() -> None:
    run, _ = executor(local=MockContext(run={"false": Result(exited=1)}))
    with pytest.raises(CommandFailed) as caught:
        run.run(Run(("false",)))
    assert str(caught.value) == "local: `false` failed with exit code 1: no error output"


class SlowHost:
    """A context whose every command takes a while (the MockContext cannot wait)."""

    def run(self, command: str, **kwargs: Any) -> Result:
        import time

        time.sleep(0.4)
        return Result(command=command)


def test_nodes_work_through_their_steps_at_the_same_time() -> None:
    import time

    hosts = {"a": SlowHost(), "b": SlowHost(), "c": SlowHost()}
    run, _ = executor(connect=hosts.__getitem__)
    started = time.monotonic()
    run.execute_concurrently(Plan("hosts", [Run(("true",), host=h) for h in hosts]))
    assert time.monotonic() - started < 1.0, "three 0.4 s steps on three hosts run side by side"


def test_a_wait_polls_at_its_own_interval() -> None:
    import time

    answers = iter(["a", "b", "c", None])
    run, _ = executor()
    started = time.monotonic()
    run.apply(Wait("quick", lambda: next(answers), timeout=10, interval=0.01))
    assert time.monotonic() - started < 0.3


def test_a_long_commands_matching_lines_are_shown_as_they_come_redacted_and_still_captured() -> None:
    from invoke import Context

    from homelab.core.secret_refs import REDACTOR

    REDACTOR.register("s3cr3t-progress-token")
    shown: list[str] = []
    script = (
        "printf 'step: one\\nnoise\\n'; sleep 0.2; printf 'step: two s3cr3t-progress-token'; "
        "sleep 0.2; printf ' done\\nstep: three' >&2; printf '\\n' >&2"
    )
    run = Run(("sh", "-c", script), progress=r"^step: ")
    result = Executor(Context(), None, out=shown.append).run(run)
    assert shown == ["    | step: one", "    | step: two <redacted> done", "    | step: three"]
    assert "noise" in result.stdout and "s3cr3t-progress-token" in result.stdout


def test_without_progress_a_commands_output_stays_hidden() -> None:
    from invoke import Context

    shown: list[str] = []
    result = Executor(Context(), None, out=shown.append).run(Run(("echo", "step: quiet")))
    assert shown == [] and result.stdout == "step: quiet\n"
