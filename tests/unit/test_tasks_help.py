"""What every task promises its user, stated as rules over the whole collection.

These are specifications, not copies of what the code builds: each test names a
property (help for every flag, booleans off by default, --dry-run on everything that
changes something, commands as argv with secrets kept out of it) and checks it
wherever it applies, so a new task or a new command is held to it without a new test.
"""

from __future__ import annotations

import copy
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Context

from helpers import LOOPBACK_CONFIG, loopback_data
from homelab.cli import namespace
from homelab.config import loader
from homelab.core.plan import Plan, Run, WriteFile
from homelab.core.secret_refs import Secret, SecretLocation
from homelab.core.session import Session

# Tasks that change something: VMs, nodes, the cluster, the backup repository, files the user keeps.
MUTATING = {
    "gitops.publish",
    "net.tunnel-routes",
    "net.forwarder",
    "up",
    "down",
    "vm.render",
    "vm.apply",
    "vm.create",
    "vm.delete",
    "vm.destroy",
    "vm.start",
    "vm.stop",
    "vm.adopt",
    "vm.forget",
    "k3s.install",
    "k3s.upgrade",
    "k3s.kubeconfig",
    "k3s.uninstall",
    "k3s.snapshot",
    "sandbox.up",
    "sandbox.down",
    "k3d.up",
    "k3d.down",
    "gitops.render",
    "gitops.apply",
    "gitops.sync",
    "gitops.bootstrap",
    "backup.run",
    "backup.prune",
    "backup.restore",
    "backup.schedule",
    "secrets.fetch-cert",
    "secrets.seal",
    "secrets.rotate",
    "secrets.backup-key",
    "host.autostart",
    "host.boot",
    "host.prepare",
    "storage.longhorn-uninstall",
}
# The allow-list: tasks that only look, each with what it reads (read from the task's code). A task
# named here needs no --dry-run; any task not named here or in MUTATING fails the classification test.
READ_ONLY = {
    "status": "each layer's status function: reads limactl, the nodes, the cluster",
    "doctor": "probes tools, config, nodes and cluster; prints ok/warn/fail",
    "config.validate": "loads and validates the config (--secrets: checks references exist)",
    "config.show": "prints the effective config",
    "config.schema": "prints the JSON Schema of the config model",
    "vm.plan": "terraform plan in a scratch copy of the workspace",
    "vm.status": "limactl list",
    "vm.ip": "prints an address from the config",
    "vm.shell": "hands the terminal to limactl shell or ssh",
    "k3s.preflight": "read-only checks on each node over SSH",
    "k3s.status": "reads versions over SSH and readiness from the cluster",
    "sandbox.status": "reads the sandbox's processes and API server",
    "net.status": "reads MetalLB, Services and the tunnel",
    "net.forward": "relays the Mac's LAN ports to the pool addresses while it runs; writes nothing",
    "tls.status": "reads Certificates",
    "gitops.diff": "server-side dry run of the rendered tree",
    "gitops.status": "reads Applications",
    "apps.status": "reads Deployments",
    "apps.url": "prints a URL from the config",
    "apps.list": "prints the catalog",
    "backup.list": "restic snapshots",
    "backup.verify": "restic check and reads of the snapshot; records only its verdict",
    "backup.drill": "restores into a scratch directory, server-side dry run against the cluster",
    "secrets.check": "scans the files Git tracks",
    "secrets.grafana": "prints where Grafana's login is (address, user, the password's file); reads no secret",
    "versions.check": "asks upstream sources over HTTP; writes only its cache of a passing run",
    "host.check": "sysctl or /proc/meminfo, compared with the nodes' sizes",
    "host.after-boot": "waits on node and Application status; sends one Telegram message, changes nothing",
}
# The one list of mutating tasks still without --dry-run. Adding the flag to one of them
# makes test_mutating_tasks_take_dry_run fail until its name is removed here.
LACKING_DRY_RUN: set[str] = set()
# A mutating task whose dry run has another name: render --check writes nothing and lists what would change.
DRY_RUN_FLAG = {"gitops.render": "check"}


def all_tasks(collection: Any = namespace, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, task in collection.tasks.items():
        yield prefix + name, task
    for name, sub in collection.collections.items():
        yield from all_tasks(sub, prefix + name + ".")


def flags(task: Any) -> dict[str, Any]:
    """The task's arguments by name (on a copy: invoke's get_arguments pops each help text it uses)."""
    probe = copy.copy(task)
    probe.help = dict(task.help)
    return {argument.name: argument for argument in probe.get_arguments()}


def test_every_task_has_a_docstring_and_help_for_every_argument() -> None:
    missing = []
    for name, task in all_tasks():
        if not (task.__doc__ or task.body.__doc__ or "").strip():
            missing.append(f"{name}: no docstring")
        for argument in flags(task).values():
            if not (argument.help or "").strip():
                missing.append(f"{name} --{argument.name}: no help")
    assert missing == []


def test_every_namespace_the_design_names_is_listed() -> None:
    names = set(namespace.collections)
    assert {"vm", "k3s", "net", "tls", "gitops", "apps", "backup", "secrets", "config"} <= names
    assert {"up", "down", "status", "doctor"} <= set(namespace.tasks)


def test_every_task_is_either_mutating_or_read_only() -> None:
    names = {name for name, _ in all_tasks()}
    assert not MUTATING & set(READ_ONLY)
    assert sorted(names - MUTATING - set(READ_ONLY)) == [], "classify the new task in MUTATING or READ_ONLY"
    assert sorted((MUTATING | set(READ_ONLY)) - names) == [], "a listed task no longer exists"
    assert [name for name, why in READ_ONLY.items() if not why.strip()] == [], "say why each task only looks"


def test_boolean_flags_default_to_false() -> None:
    on = [
        f"{name} --{argument.name}"
        for name, task in all_tasks()
        for argument in flags(task).values()
        if argument.kind is bool and argument.default is not False
    ]
    assert on == []


def test_mutating_tasks_take_dry_run_and_read_only_ones_do_not() -> None:
    tasks = dict(all_tasks())
    lacking = {name for name in MUTATING if DRY_RUN_FLAG.get(name, "dry_run") not in flags(tasks[name])}
    assert sorted(lacking) == sorted(LACKING_DRY_RUN), "LACKING_DRY_RUN lists exactly the tasks still without it"
    assert [name for name in READ_ONLY if "dry_run" in flags(tasks[name])] == []


def test_dry_run_is_a_boolean_flag_that_says_what_it_does() -> None:
    for name, task in all_tasks():
        dry_run = flags(task).get("dry_run")
        if dry_run is not None:
            assert dry_run.kind is bool and dry_run.default is False, name
            assert any(word in dry_run.help.lower() for word in ("nothing", "only", "print", "show")), name


# Commands: argv values quoted once at the edge; secrets never in an argument list, env or plan line.


def shell_words(run: Run) -> list[str]:
    """What the shell that invoke or fabric starts will see as words."""
    return shlex.split(run.shell_line())


def expected_words(run: Run) -> list[str]:
    prefix = ["cd", run.cwd, "&&"] if run.cwd else []
    sudo = ["sudo", "-n", "--"] if run.sudo else []
    return [*prefix, *sudo, *run.argv]


def assert_clean(plan: Plan, secrets: list[str]) -> None:
    """Every command is argv the shell sees unchanged; no secret value in argv, env or any plan line."""
    for action in plan.changes():
        if not isinstance(action, Run):
            continue
        assert all(isinstance(item, str) for item in action.argv), action.argv
        assert shell_words(action) == expected_words(action), action.argv
        exposed = " ".join([*action.argv, *(f"{k}={v}" for k, v in action.env)])
        assert not [s for s in secrets if s in exposed], action.argv
    text = "\n".join(plan.lines())
    assert not [s for s in secrets if s in text]


@pytest.fixture
def cfg() -> Any:
    return loader.load(LOOPBACK_CONFIG, environ={}).config


def test_k3d_cluster_is_one_argv_like_the_reference_homelab(tmp_path: Path) -> None:
    from homelab.k3d import cluster as k3d

    data = loopback_data()
    data.update({"target": "k3d", "state_dir": str(tmp_path / "state")})
    (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
    session = Session(Context(), config_path=tmp_path / "homelab.yaml", out=lambda _: None)
    binary = str(tmp_path / "my tools" / "k3d")  # a path with a space stays one word
    run = k3d.create_run(session, binary)
    assert_clean(Plan("k3d", [run]), [])
    argv = list(run.argv)
    assert argv[:4] == [binary, "cluster", "create", k3d.cluster_name(session)]

    def value_of(flag: str) -> list[str]:
        return [argv[i + 1] for i, item in enumerate(argv) if item == flag]

    assert value_of("--agents") == [str(len(session.cfg.agents))]
    assert value_of("--image") == [f"rancher/k3s:{session.cfg.k3s.version.replace('+', '-')}"]
    assert set(value_of("--k3s-arg")) >= {"--disable=traefik@server:0", "--disable=servicelb@server:0"}
    assert "--kubeconfig-update-default=false" in argv, "the user's default kubeconfig is never touched"


def test_k3s_token_reaches_nodes_only_as_a_0600_file(cfg: Any) -> None:
    from homelab.k3s import plan as k3s

    token = Secret("K10" + "f" * 61, "test")
    plans = k3s.plan_nodes(cfg, {n.name: k3s.Observed(None, None, None) for n in cfg.nodes}, token)
    for plan in plans.install.values():
        assert_clean(plan, [token.reveal()])
        [written] = [a for a in plan.actions if isinstance(a, WriteFile) and a.path == k3s.TOKEN_PATH]
        assert isinstance(written.content, Secret) and written.mode == 0o600 and written.sudo


def test_vm_power_commands_are_argv(cfg: Any) -> None:
    from homelab.vm import plan as vms

    stopped = {n.name: vms.VmState(n.name, "Stopped") for n in cfg.nodes}
    plan = vms.power_plan(cfg.nodes, stopped, "/opt/lima tools/limactl", "Running")
    assert len(plan.changes()) == len(cfg.nodes)
    assert_clean(plan, [])


@pytest.mark.parametrize("password", ["file", "env"])
def test_restic_password_never_reaches_argv_or_env(
    password: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from homelab.backup import restic

    monkeypatch.setattr(restic, "require", lambda tool: f"/usr/bin/{tool}")
    value = "correct-horse-battery-staple"
    if password == "file":
        secret = tmp_path / "restic-password"
        secret.write_text(value + "\n")
        secret.chmod(0o600)
        location = SecretLocation(file=str(secret))
    else:
        monkeypatch.setenv("HOMELAB_TEST_RESTIC_PASSWORD", value)
        location = SecretLocation(env="HOMELAB_TEST_RESTIC_PASSWORD")
    repository = str(tmp_path / "my backups $(reboot)")
    run = restic.Restic(repository, location, executor=None).action("snapshots", "--json")
    assert_clean(Plan("restic", [run]), [value])
    assert ("RESTIC_REPOSITORY", repository) in run.env, "the repository travels as one env value"
    assert repository not in run.argv
    if password == "env":
        assert run.stdin is not None and value in run.stdin.reveal()


def test_cron_entry_quotes_every_path_it_names(tmp_path: Path) -> None:
    """The one shell string the toolkit writes: paths with spaces and $( ) stay single words."""
    from homelab.backup.schedule import MARK, cron_line

    odd = tmp_path / "my homelab $(reboot)"
    odd.mkdir()
    data = loopback_data()
    data["state_dir"] = str(odd / "state")
    (odd / "homelab.yaml").write_text(yaml.safe_dump(data))
    session = Session(Context(), config_path=odd / "homelab.yaml", out=lambda _: None)
    line = cron_line(session)
    schedule = session.cfg.backup.schedule
    assert line.startswith(schedule + " ") and line.endswith(" " + MARK)
    words = shlex.split(line[len(schedule) : -len(MARK)])
    assert f"HOMELAB_CONFIG={odd / 'homelab.yaml'}" in words
    assert str(session.state_dir / "backup.log") in words
    assert words[words.index(">>") - 1] == "backup.run"
