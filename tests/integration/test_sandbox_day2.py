"""Day-2 tasks on a sandbox whose real Argo CD self-heals every Application, as on the homelab.

One sandbox of its own, brought up by ``inv up --target sandbox`` in a project of its
own (``HOMELAB_ROOT``): Argo CD syncs the rendered tree from the sandbox's git daemon,
with automated sync, prune and self-heal. On it:

- a new app's public hostname reaches cloudflared's ConfigMap and changes its pod
  template (cloudflared reads its rules only at start: its pods must roll);
- a rotated secret reaches its app's pod template (the app reads it only at start);
- a volume restore runs while Argo CD self-heals: the app, managed by an Application
  under a parent Application (an app of apps), stays at 0 replicas for as long as its
  files are replaced, and automated sync is back afterwards; a restore killed half-way
  leaves the pause recorded, and the next run puts it back. The restore reaches the
  volume over SSH on K3S test nodes (sshd on 127.0.0.x) whose kubeconfig is this sandbox.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from backup_support import app_deployment, kill_group, local_path_claim, start_receiver
from invoke import Context
from k3s_nodes import NODES, embedded_kubeconfig, start_node
from k3s_nodes import Lab as NodesLab
from sandbox_project import SandboxProject as Project

from helpers import CliResult, loopback_data, run_cli, start_inv
from homelab.core.kube import Kube
from homelab.core.kube.waits import wait_for
from homelab.core.session import Session
from homelab.core.tools import require
from homelab.gitops import checksums, hold, local, platform, tree
from homelab.gitops.platform import ARGOCD_NAMESPACE
from homelab.sandbox import cluster, controllers
from sshd import keygen

pytestmark = pytest.mark.integration

APPLICATION = hold.APPLICATION
REFERENCED = {  # the env: references of the reference config, with values only this run knows
    "CLOUDFLARE_API_TOKEN": "cf-token-" + uuid.uuid4().hex,
    "VAULTWARDEN_ADMIN_TOKEN": "admin-" + uuid.uuid4().hex,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("day2-project")
    (root / "config").mkdir()
    data = loopback_data()
    data.update({"name": "d2", "state_dir": str(root / "state")})
    data["secrets"] = {"sealed_dir": "k8s/sealed", "plaintext_file": "config/secrets.local.yaml"}
    (root / "tunnel.json").write_text(json.dumps({"TunnelID": "not-a-real-tunnel", "TunnelSecret": uuid.uuid4().hex}))
    (root / "tunnel.json").chmod(0o600)
    data["cloudflare"] = {**data.get("cloudflare", {}), "tunnel_credentials": {"file": str(root / "tunnel.json")}}
    (root / "telegram-bot-token").write_text("123456789:" + uuid.uuid4().hex + "\n")
    (root / "telegram-bot-token").chmod(0o600)
    data["monitoring"]["telegram"]["bot_token"] = {"file": str(root / "telegram-bot-token")}
    config = root / "config" / "homelab.yaml"
    original = yaml.safe_dump(data)
    config.write_text(original)
    env = {"HOMELAB_CONFIG": str(config), "HOMELAB_ROOT": str(root), **REFERENCED}
    try:
        first = run_cli(["up", "--target", "sandbox"], env, timeout=900)
        assert first.code == 0, first.output
        session = Session(Context(), config_path=config, out=lambda _: None)
        paths = cluster.paths_for(session.cfg, session.state_dir)
        yield Project(root, config, env, session, Kube(paths.kubeconfig, paths.context))
    finally:
        config.write_text(original)  # a test's config edit that does not load must not keep the sandbox alive
        down = run_cli(["sandbox.down"], env, timeout=300)
        assert down.code == 0, down.output


def template_annotations(kube: Kube, name: str, namespace: str) -> dict[str, str]:
    live = kube.get("apps/v1", "Deployment", name, namespace) or {}
    return dict(((live.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {})


def rendered_annotations(project: Project, path: str) -> dict[str, str]:
    """What the render puts in the pod template now (the sandbox's render: its repository, its switch)."""
    cfg = Session(Context(), config_path=project.config, out=lambda _: None).cfg
    with mock.patch.dict(os.environ, {"HOMELAB_ROOT": str(project.root)}):  # its k8s/sealed, as the CLI reads it
        rendered = tree.render(local.sandbox_config(cfg, controllers.repo_url(project.session)), True)
    [deployment] = [o for o in rendered.files[path] if o["kind"] == "Deployment"]
    return dict(deployment["spec"]["template"]["metadata"].get("annotations") or {})


def rolled_to(kube: Kube, name: str, namespace: str, key: str, value: str) -> None:
    """The Deployment controller made a ReplicaSet of the new template and scaled it up: the pods rolled."""

    def rolled() -> str | None:
        for rs in kube.list_objects("apps/v1", "ReplicaSet", namespace):
            meta = rs["spec"]["template"]["metadata"]
            if (meta.get("annotations") or {}).get(key) == value and (rs.get("status") or {}).get("readyReplicas"):
                return None
        return f"no ready ReplicaSet of {namespace}/{name} with the new {key}"

    wait_for(f"{namespace}/{name} to roll", rolled, 180)


def test_a_new_apps_hostname_reaches_cloudflareds_config_and_rolls_its_pods(project: Project) -> None:
    before = template_annotations(project.kube, "cloudflared", "cloudflared")
    assert checksums.CONFIG in before, before
    data = project.data()
    host = f"d2new-{uuid.uuid4().hex[:6]}"
    data["apps"]["d2new"] = {"image": "traefik/whoami:v1.11", "port": 80, "hostname": host, "public": True}
    project.write(data)
    project.up()
    config = project.kube.get("v1", "ConfigMap", "cloudflared", "cloudflared")
    rules = yaml.safe_load(config["data"]["config.yaml"])["ingress"]
    assert f"{host}.{project.session.cfg.domain}" in [r.get("hostname") for r in rules]
    after = template_annotations(project.kube, "cloudflared", "cloudflared")
    assert after[checksums.CONFIG] != before[checksums.CONFIG]
    assert (
        after[checksums.CONFIG]
        == rendered_annotations(project, "platform/cloudflared/manifests.yaml")[checksums.CONFIG]
    )
    rolled_to(project.kube, "cloudflared", "cloudflared", checksums.CONFIG, after[checksums.CONFIG])


def test_a_rotated_secret_reaches_the_pods_template_and_rolls_them(project: Project) -> None:
    name, namespace = "vaultwarden-secrets", "vaultwarden"
    before = template_annotations(project.kube, "vaultwarden", namespace)
    assert checksums.SECRET in before, before
    plaintext = project.root / "config" / "secrets.local.yaml"
    entry = {"name": name, "namespace": namespace, "data": {"ADMIN_TOKEN": {"env": "VAULTWARDEN_ADMIN_TOKEN"}}}
    plaintext.write_text(yaml.safe_dump({"secrets": [entry]}))
    plaintext.chmod(0o600)
    new = "rotated-" + uuid.uuid4().hex
    rotate = ["secrets.rotate", "--name", name, "--key", "ADMIN_TOKEN", "--value-env", "NEW_ADMIN_TOKEN"]
    rendered = project.root / "k8s" / "apps" / "vaultwarden" / "app.yaml"
    committed = rendered.read_text() if rendered.is_file() else ""
    done = run_cli(rotate, {**project.env, "NEW_ADMIN_TOKEN": new}, timeout=300)
    assert done.code == 0, done.output
    assert new not in done.output
    assert f"write {rendered}" in done.stdout, done.stdout  # the pods' template goes into the same commit
    assert rendered.read_text() != committed and new not in rendered.read_text()
    out = project.up()
    assert new not in out
    secret = project.kube.get("v1", "Secret", name, namespace)
    assert base64.b64decode(secret["data"]["ADMIN_TOKEN"]).decode() == new
    after = template_annotations(project.kube, "vaultwarden", namespace)
    assert after[checksums.SECRET] != before[checksums.SECRET]
    assert after[checksums.SECRET] == rendered_annotations(project, "apps/vaultwarden/app.yaml")[checksums.SECRET]
    rolled_to(project.kube, "vaultwarden", namespace, checksums.SECRET, after[checksums.SECRET])


# --- a volume restore while Argo CD self-heals ----------------------------------------------------


def git(*args: str, cwd: Path) -> None:
    subprocess.run([require("git"), *args], cwd=cwd, check=True, capture_output=True)


@dataclass
class Restorable:
    nodes: NodesLab
    kube: Kube
    name: str
    parent: str
    child: str
    volume: Path  # the app's volume directory on k3s-worker-1, as seen from here

    def automated(self, application: str) -> Any:
        live = self.kube.get(*APPLICATION, application, ARGOCD_NAMESPACE) or {}
        return ((live.get("spec") or {}).get("syncPolicy") or {}).get("automated")

    def replicas(self) -> int:
        return int(self.kube.get("apps/v1", "Deployment", self.name, self.name)["spec"]["replicas"])

    def marker(self) -> Path:
        return self.nodes.tmp / "state" / hold.MARKER

    def start_restore(self) -> subprocess.Popen[str]:
        """``backup.restore --component volumes`` in its own process group (a kill reaches all of it)."""
        return start_inv(
            ["backup.restore", "--component", "volumes", "--yes"], {"HOMELAB_CONFIG": str(self.nodes.config)}
        )


def app_of_apps(project: Project, name: str, branch: str, tmp: Path) -> tuple[str, str]:
    """A parent Application whose Git path holds the child Application of app ``name``; (parent, child).

    The same sync policy as every rendered Application (automated, prune, self-heal), so the
    parent puts the child's spec back from Git, and the child the app's Deployment.
    """
    repo = controllers.repo_url(project.session)
    parent, child = f"day2-{name}", f"app-{name}"
    child_app = platform.application(child, {"repoURL": repo, "targetRevision": branch, "path": "app"}, name, 1)
    deployment = app_deployment(name, 2)
    work = tmp / branch
    (work / "apps").mkdir(parents=True)
    (work / "app").mkdir()
    (work / "apps" / "child.yaml").write_text(yaml.safe_dump(child_app))
    (work / "app" / "deployment.yaml").write_text(yaml.safe_dump(deployment))
    git("init", "--quiet", f"--initial-branch={branch}", cwd=work)
    git("add", ".", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "--quiet", "-m", branch, cwd=work)
    git("push", "--quiet", str(controllers.layout(project.session).repository), f"HEAD:refs/heads/{branch}", cwd=work)
    source = {"repoURL": repo, "targetRevision": branch, "path": "apps"}
    project.kube.apply([platform.application(parent, source, ARGOCD_NAMESPACE, 0)])
    return parent, child


@pytest.fixture(scope="module")
def restorable(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restorable]:
    """An app of apps on the sandbox's Argo CD, its volume on a K3S test node, one backup of it."""
    tmp = tmp_path_factory.mktemp("day2-nodes")
    receiver, server = start_receiver()
    key = tmp / "client_ed25519"
    keygen(key)
    k3s_yaml, _ = embedded_kubeconfig(project.session)
    nodes = []
    for node_name, ip in NODES:
        node = start_node(node_name, ip, tmp / node_name, key)
        (node.root / "lib" / "fake-k3s.yaml").write_text(yaml.safe_dump(k3s_yaml))
        nodes.append(node)
    lab = NodesLab(tmp, project.session, nodes, key)
    name = f"notes-{uuid.uuid4().hex[:6]}"
    (tmp / "pw").write_text("correct horse battery staple\n")
    (tmp / "pw").chmod(0o600)
    app = {"image": "registry.home.arpa/notes:1", "port": 8080, "hostname": name, "storage": "1GiB"}
    lab.data["apps"] = {name: app}
    lab.data["backup"] = {
        "repository": str(tmp / "repo"),
        "password": {"file": str(tmp / "pw")},
        "notify_api": receiver.url,
    }
    lab.data["secrets"] = {"sealed_dir": str(tmp / "sealed")}
    lab.save()
    parent = child = ""
    try:
        installed = lab.cli("k3s.install")
        assert installed.code == 0, installed.output
        inside = local_path_claim(project.kube, name, "k3s-worker-1")
        volume = lab.nodes["k3s-worker-1"].path(inside)
        volume.mkdir(parents=True)
        (volume / "notes.txt").write_text("before the backup\n")
        parent, child = app_of_apps(project, name, f"day2-{name}", tmp)
        made = Restorable(lab, project.kube, name, parent, child, volume)
        wait_for(
            "the child Application and its Deployment (2 replicas, Available)",
            lambda: project.kube.deployment_waiting(name, name) if made.automated(child) else "no child yet",
            300,
        )
        backed_up = lab.cli("backup.run")
        assert backed_up.code == 0, backed_up.output
        yield made
    finally:
        for application in (parent, child):
            if application:
                project.kube.delete(*APPLICATION, application, ARGOCD_NAMESPACE)
        for node in lab.nodes.values():
            node.stop()
        server.shutdown()


def test_argo_cd_self_heals_the_apps_replicas_here(restorable: Restorable) -> None:
    """What the restore is up against: a hand-made scale to 0 is undone within seconds."""
    restorable.kube.merge_patch("apps/v1", "Deployment", restorable.name, restorable.name, {"spec": {"replicas": 0}})
    wait_for("Argo CD to put the replicas back", lambda: None if restorable.replicas() == 2 else "at 0", 120)


# Stands in for ``find`` on the node: the restore's first step that touches the volume. It says it
# got there and waits until the test has looked at the cluster, then does find's job.
PAUSING_FIND = """#!/bin/sh
touch /var/lib/rancher/volume-write-reached
while [ -e /var/lib/rancher/volume-write-reached ]; do sleep 0.05; done
exec /usr/bin/find "$@"
"""
HELD_FOR = 15.0  # seconds the test watches the app while the restore holds it (self-heal acts within ~5)


@contextlib.contextmanager
def pausing_find(restorable: Restorable) -> Iterator[Path]:
    node = restorable.nodes.nodes["k3s-worker-1"].root
    (node / "bin" / "find").write_text(PAUSING_FIND)
    (node / "bin" / "find").chmod(0o755)
    reached = node / "lib" / "volume-write-reached"
    try:
        yield reached
    finally:
        reached.unlink(missing_ok=True)
        (node / "bin" / "find").unlink(missing_ok=True)


def wait_reached(reached: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 240
    while not reached.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not reached.exists():
        out, err = process.communicate(timeout=60) if process.poll() is not None else ("", "")
        raise AssertionError(f"the restore never reached the volume:\n{out}\n{err}")


def watch_held(restorable: Restorable) -> list[str]:
    """Every sign, over HELD_FOR seconds, that Argo CD acted on the app while the restore held it."""
    seen: list[str] = []
    deadline = time.monotonic() + HELD_FOR
    while time.monotonic() < deadline:
        if restorable.replicas() != 0:
            seen.append(f"replicas {restorable.replicas()}")
        pods = restorable.kube.list_objects("v1", "Pod", restorable.name)
        if pods:
            seen.append(f"{len(pods)} pods")
        for application in (restorable.parent, restorable.child):
            if restorable.automated(application) is not None:
                seen.append(f"{application} automated sync on")
        time.sleep(0.5)
    return sorted(set(seen))


def test_a_volume_restore_under_self_heal_keeps_the_app_stopped_then_gives_argo_cd_back(
    restorable: Restorable,
) -> None:
    original = {a: restorable.automated(a) for a in (restorable.parent, restorable.child)}
    assert all(original.values()), original
    (restorable.volume / "notes.txt").write_text("written after the backup\n")
    with pausing_find(restorable) as reached:
        process = restorable.start_restore()
        try:
            wait_reached(reached, process)
            marker = json.loads(restorable.marker().read_text())
            acted = watch_held(restorable)
        finally:
            reached.unlink(missing_ok=True)
        out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out + err
    assert acted == [], acted
    assert [a["name"] for a in marker["applications"]] == [restorable.parent, restorable.child]
    assert (restorable.volume / "notes.txt").read_text() == "before the backup\n"
    assert {a: restorable.automated(a) for a in original} == original
    assert not restorable.marker().exists()
    assert restorable.replicas() == 2
    restorable.kube.wait_deployments([(restorable.name, restorable.name)], timeout=120)
    assert f"patch Application argocd/{restorable.parent}: pause automated sync" in out, out


def test_a_restore_killed_while_holding_argo_cd_is_finished_by_the_next_run(restorable: Restorable) -> None:
    original = {a: restorable.automated(a) for a in (restorable.parent, restorable.child)}
    with pausing_find(restorable) as reached:
        process = restorable.start_restore()
        try:
            wait_reached(reached, process)
        finally:
            kill_group(process)
            reached.unlink(missing_ok=True)
    left = json.loads(restorable.marker().read_text())
    assert {a["name"]: a["automated"] for a in left["applications"]} == original
    assert {a: restorable.automated(a) for a in original} == dict.fromkeys(original)  # still paused
    env = {"HOMELAB_CONFIG": str(restorable.nodes.config)}
    dry = run_cli(["backup.restore", "--component", "volumes", "--yes", "--dry-run"], env)
    assert dry.code == 0, dry.output
    assert "was stopped while it held Argo CD back" in dry.stdout and restorable.marker().exists()
    assert f"patch Application argocd/{restorable.parent}: pause automated sync" in dry.stdout, dry.stdout
    assert {a: restorable.automated(a) for a in original} == dict.fromkeys(original)  # the dry run put nothing back
    again = run_cli(["backup.restore", "--component", "volumes", "--yes"], env, timeout=600)
    assert again.code == 0, again.output
    assert "was stopped while it held Argo CD back" in again.stdout, again.stdout
    assert {a: restorable.automated(a) for a in original} == original
    assert not restorable.marker().exists()
    wait_for("the app at 2 replicas again", lambda: None if restorable.replicas() == 2 else "not yet", 120)


def test_a_failing_restore_still_gives_argo_cd_back(restorable: Restorable) -> None:
    original = {a: restorable.automated(a) for a in (restorable.parent, restorable.child)}
    broken_tar = restorable.nodes.nodes["k3s-worker-1"].root / "bin" / "tar"
    broken_tar.write_text("#!/bin/sh\necho 'tar: simulated unreadable archive' >&2\nexit 2\n")
    broken_tar.chmod(0o755)
    try:
        failed: CliResult = run_cli(
            ["backup.restore", "--component", "volumes", "--yes"], {"HOMELAB_CONFIG": str(restorable.nodes.config)}
        )
    finally:
        broken_tar.unlink()
    assert failed.code == 1, failed.output
    assert "simulated unreadable archive" in failed.stderr and "resume automated sync" in failed.stderr
    assert {a: restorable.automated(a) for a in original} == original
    assert not restorable.marker().exists()
