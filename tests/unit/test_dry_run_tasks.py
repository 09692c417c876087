"""gitops.sync, secrets.rotate, vm.adopt and vm.forget: --dry-run prints the plan the real run executes.

Task wiring, in-process: each task is called as invoke calls it, with a ``MockContext``
for the local host (any command it was not told about fails the test), a recording
stand-in for the cluster client and a scanned host key handed in; everything else
is real (config loading, planning, the executor, the files in a scratch directory).
Each test takes a picture of what the task could change, runs the dry run, checks
that the picture is the same and the plan's action lines were printed, then runs the
same command for real and checks that the picture did change: a dry run that wrote
would fail the first half, a test that could not see a write would fail the second.
The integration tests (test_gitops_plans, test_secrets, test_vm_host_keys and the
walk in test_dry_run_walk) do the same against a real API server, kubeseal and sshd.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import stat
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from invoke import MockContext, Result

from helpers import loopback_data
from homelab.cli import namespace
from homelab.core.ssh import Endpoint, fingerprint

APPLICATION = ("argoproj.io/v1alpha1", "Application")
SEALED = "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nspec: {encryptedData: {token: AgB...}}\n"


def picture(root: Path) -> dict[str, str]:
    """Every file under ``root``: its mode and content hash."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = f"{stat.S_IMODE(path.stat().st_mode):o}:{digest}"
    return found


def action_lines(out: str) -> list[str]:
    """The plan's action lines (``  [host] ...``) a task printed."""
    return [line.strip() for line in out.splitlines() if re.match(r"^\s+\[[\w.-]+\] ", line)]


class FakeCluster:
    """Stands in for ``Kube``: holds objects by (kind, namespace, name); merge patches are recorded and kept."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {self.key(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}
        self.writes: list[tuple[Any, ...]] = []

    @staticmethod
    def key(kind: str, namespace: str | None, name: str) -> tuple[str, str, str]:
        return kind, namespace or "", name

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.objects.get(self.key(kind, namespace, name))

    def merge_patch(self, api_version: str, kind: str, name: str, namespace: str | None, body: dict[str, Any]) -> None:
        self.writes.append(("merge_patch", kind, namespace, name, body))
        self.objects[self.key(kind, namespace, name)] = {**self.objects[self.key(kind, namespace, name)], **body}

    def __getattr__(self, name: str) -> Any:  # any other write is recorded, so the test sees it
        def record(*args: Any, **kwargs: Any) -> None:
            self.writes.append((name, args, kwargs))

        return record


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A loopback homelab whose state, secrets and sealed tree all live under ``tmp_path/home``."""
    root = tmp_path / "home"
    data = loopback_data()
    data["state_dir"] = str(root / "state")
    data["secrets"] = {
        **(data.get("secrets") or {}),
        "sealed_dir": str(root / "sealed"),
        "plaintext_file": str(root / "secrets.local.yaml"),
        "cert_file": str(root / "cert.pem"),
    }
    root.mkdir()
    (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
    for name in [k for k in os.environ if k.startswith("HOMELAB")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOMELAB_CONFIG", str(tmp_path / "homelab.yaml"))
    return root


def call(task: str, ctx: MockContext, /, **kwargs: Any) -> None:
    """Call a task as ``inv`` does: the context first, then its flags by name."""
    namespace[task](ctx, **kwargs)


def endpoint_of(node: str) -> Endpoint:
    from homelab.core.session import Session

    session = Session(MockContext())
    return session.endpoint(session.node(node))


# gitops.sync: one merge patch of the Application, sent through the executor's cluster client.


def application(name: str) -> dict[str, Any]:
    return {"apiVersion": APPLICATION[0], "kind": APPLICATION[1], "metadata": {"name": name, "namespace": "argocd"}}


def test_sync_dry_run_prints_the_patch_and_sends_nothing_then_sync_sends_it(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from homelab.core import cluster

    kube = FakeCluster(application("app-homepage"))
    monkeypatch.setattr(cluster, "connect", lambda session: kube)
    ctx = MockContext(run={})  # no command expected: any would raise NotImplementedError

    call("gitops.sync", ctx, app="app-homepage", dry_run=True)
    out = capsys.readouterr().out
    assert action_lines(out) == ["[cluster] patch Application argocd/app-homepage: sync now, with prune"]
    assert "plan: sync Application app-homepage" in out and "requested" not in out
    assert kube.writes == [] and "operation" not in kube.objects[("Application", "argocd", "app-homepage")]

    call("gitops.sync", ctx, app="app-homepage")
    assert "sync of app-homepage requested" in capsys.readouterr().out
    body = {"operation": {"initiatedBy": {"username": "homelab"}, "sync": {"prune": True}}}
    assert kube.writes == [("merge_patch", "Application", "argocd", "app-homepage", body)]
    assert ctx.run.call_count == 0, "a sync is a cluster write, not a command"


# secrets.rotate: the plaintext file (0600) and the re-sealed file; kubeseal seals offline, an observation.

OLD, NEW = "old-value-9f2c41", "new-value-5d7a03"


@pytest.fixture
def plaintext(home: Path) -> Path:
    path = home / "secrets.local.yaml"
    path.write_text(yaml.safe_dump({"secrets": [{"name": "api", "namespace": "apps", "data": {"token": OLD}}]}))
    path.chmod(0o600)
    (home / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return path


def test_rotate_dry_run_prints_both_writes_and_writes_nothing_then_rotate_writes_them(
    home: Path, plaintext: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from homelab.secrets import sealing

    monkeypatch.setattr(sealing, "require", lambda tool: f"/opt/bin/{tool}")
    monkeypatch.setenv("NEW_TOKEN", NEW)
    cert = str(home / "cert.pem")
    kubeseal = shlex.join(("/opt/bin/kubeseal", "--cert", cert, "--scope", "strict", "--format", "yaml"))
    ctx = MockContext(run={kubeseal: Result(stdout=SEALED)})
    sealed = home / "sealed" / "apps-api.yaml"
    before = picture(home)

    call("secrets.rotate", ctx, name="api", key="token", value_env="NEW_TOKEN", dry_run=True)
    out = capsys.readouterr().out
    assert action_lines(out) == [
        f"[local] write {plaintext} (secret, mode 0600, {len(plaintext.read_text()) + len(NEW) - len(OLD)} bytes)",
        f"[local] write {sealed} (mode 0644, {len(SEALED)} bytes)",
    ]
    assert picture(home) == before
    assert NEW not in out and OLD not in out
    # The one command: kubeseal sealing offline (plaintext on stdin, never in argv), which a dry run may run.
    assert [call.args[0] for call in ctx.run.call_args_list] == [kubeseal]

    call("secrets.rotate", ctx, name="api", key="token", value_env="NEW_TOKEN")
    assert "rotated api.token" in capsys.readouterr().out
    after = picture(home)
    assert after != before and set(after) - set(before) == {"sealed/apps-api.yaml"}
    assert yaml.safe_load(plaintext.read_text())["secrets"][0]["data"]["token"] == NEW
    assert stat.S_IMODE(plaintext.stat().st_mode) == 0o600 and sealed.read_text() == SEALED


# vm.adopt and vm.forget: one write of the toolkit's own known_hosts file.


@pytest.fixture
def host_key(monkeypatch: pytest.MonkeyPatch) -> paramiko.PKey:
    """The key the node presents: what ``scan_host_key`` (a read, no login) would return."""
    from homelab.core import ssh

    key = paramiko.ECDSAKey.generate()
    monkeypatch.setattr(ssh, "scan_host_key", lambda endpoint, timeout=10.0: key)
    return key


def test_adopt_dry_run_prints_the_key_and_the_write_and_pins_nothing_then_adopt_pins_it(
    home: Path, host_key: paramiko.PKey, capsys: pytest.CaptureFixture[str]
) -> None:
    known_hosts = home / "state" / "known_hosts"
    seen = fingerprint(host_key)
    ctx = MockContext(run={})  # no command expected: any would raise NotImplementedError
    before = picture(home)

    call("vm.adopt", ctx, name="k3s-server", dry_run=True)  # no --yes, no --fingerprint: a dry run asks nothing
    lines = action_lines(capsys.readouterr().out)
    assert lines[0].startswith("[local] k3s-server (") and lines[0].endswith(f") presents {seen}")
    assert lines[1:] == [f"[local] write {known_hosts} (mode 0600, {len(pinned_line(host_key))} bytes)"]
    assert picture(home) == before

    call("vm.adopt", ctx, name="k3s-server", fingerprint=seen)
    assert f"host key {seen} pinned" in capsys.readouterr().out
    assert known_hosts.read_text() == pinned_line(host_key) and picture(home) != before
    assert ctx.run.call_count == 0


def pinned_line(key: paramiko.PKey) -> str:
    return f"{endpoint_of('k3s-server').known_hosts_name} {key.get_name()} {key.get_base64()}\n"


def test_forget_dry_run_prints_the_write_and_keeps_the_key_then_forget_drops_it(
    home: Path, host_key: paramiko.PKey, capsys: pytest.CaptureFixture[str]
) -> None:
    known_hosts = home / "state" / "known_hosts"
    other = f"[127.0.0.1]:2299 {host_key.get_name()} {host_key.get_base64()}\n"
    known_hosts.parent.mkdir(parents=True)
    known_hosts.write_text(other + pinned_line(host_key))
    known_hosts.chmod(0o600)
    ctx = MockContext(run={})  # no command expected: any would raise NotImplementedError
    before = picture(home)

    call("vm.forget", ctx, name="k3s-server", dry_run=True)  # no --yes: a dry run asks nothing
    assert action_lines(capsys.readouterr().out) == [f"[local] write {known_hosts} (mode 0600, {len(other)} bytes)"]
    assert picture(home) == before

    call("vm.forget", ctx, name="k3s-server", yes=True)
    assert "host key forgotten" in capsys.readouterr().out
    assert known_hosts.read_text() == other and picture(home) != before
    assert ctx.run.call_count == 0
