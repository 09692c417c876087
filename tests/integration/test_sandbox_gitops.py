"""`inv up --target sandbox` through the real Argo CD, Sealed Secrets and MetalLB controllers.

A sandbox of its own (the controllers reconcile whatever they see), in a project
directory of its own (``HOMELAB_ROOT``), so sealed secrets live under its
``k8s/sealed`` as they would in a user's checkout. Each test drives the toolkit
as a user would (config edits, ``inv up``) and then looks at what the
controllers did.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Context

from helpers import loopback_data, run_cli
from homelab.core.kube import Kube
from homelab.core.kube.waits import wait_for
from homelab.core.session import Session
from homelab.core.tools import require
from homelab.gitops import local, platform, tree
from homelab.gitops.platform import ARGOCD_NAMESPACE, INGRESS_SERVICE
from homelab.sandbox import cluster, controllers

pytestmark = pytest.mark.integration

APPLICATION = ("argoproj.io/v1alpha1", "Application")


@dataclass
class Lab:
    root: Path  # the project directory (HOMELAB_ROOT)
    config: Path
    env: dict[str, str]
    session: Session
    kube: Kube

    def data(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.config.read_text()))

    def write(self, data: dict[str, Any]) -> None:
        self.config.write_text(yaml.safe_dump(data))

    def up(self) -> str:
        done = run_cli(["up", "--target", "sandbox"], self.env, timeout=900)
        assert done.code == 0, done.output
        return str(done.stdout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("gitops-project")
    (root / "config").mkdir()
    data = loopback_data()
    data.update({"name": "gl", "state_dir": str(root / "state")})
    data["secrets"] = {"sealed_dir": "k8s/sealed", "plaintext_file": "config/secrets.local.yaml"}
    config = root / "config" / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {"HOMELAB_CONFIG": str(config), "HOMELAB_ROOT": str(root)}
    try:
        first = run_cli(["up", "--target", "sandbox"], env, timeout=900)
        assert first.code == 0, first.output
        session = Session(Context(), config_path=config, out=lambda _: None)
        paths = cluster.paths_for(session.cfg, session.state_dir)
        yield Lab(root, config, env, session, Kube(paths.kubeconfig, paths.context))
    finally:
        run_cli(["sandbox.down"], env, timeout=300)


def application_state(kube: Kube, name: str) -> tuple[str, str, str]:
    status = (kube.get(*APPLICATION, name, ARGOCD_NAMESPACE) or {}).get("status") or {}
    sync = status.get("sync") or {}
    return sync.get("status", ""), (status.get("health") or {}).get("status", ""), sync.get("revision", "")


def test_up_brings_every_application_synced_and_healthy_at_the_pushed_commit(lab: Lab) -> None:
    rendered = tree.render(local.sandbox_config(lab.session.cfg, controllers.repo_url(lab.session)), True)
    apps = [o for objs in rendered.files.values() for o in objs if o["kind"] == "Application"]
    names = sorted(o["metadata"]["name"] for o in apps)
    commit = local.pushed_commit(controllers.layout(lab.session).repository)
    assert len(commit) == 40
    for name in names:
        sync, health, revision = application_state(lab.kube, name)
        assert (sync, revision) == ("Synced", commit), name
        assert health == "Healthy" or name in local.SYNCED_ONLY, (name, health)
    # The apps came from git through Argo CD (its tracking annotation), not from a direct apply.
    deployment = lab.kube.get("apps/v1", "Deployment", "homepage", "homepage")
    assert deployment is not None
    assert "argocd.argoproj.io/tracking-id" in deployment["metadata"].get("annotations", {})
    managers = {entry["manager"] for entry in deployment["metadata"]["managedFields"]}
    assert "argocd-controller" in managers and "homelab" not in managers, managers
    service = lab.kube.get("v1", "Service", INGRESS_SERVICE, "ingress-nginx")
    assert [e["ip"] for e in service["status"]["loadBalancer"]["ingress"]] == [lab.session.cfg.ingress.load_balancer_ip]
    ingress = lab.kube.get("networking.k8s.io/v1", "Ingress", "homepage", "homepage")
    assert ingress["status"]["loadBalancer"]["ingress"][0]["ip"] == lab.session.cfg.ingress.load_balancer_ip
    again = lab.up()
    assert "up: nothing to do" in again, again


def test_a_sealed_secret_reaches_the_cluster_through_its_application(lab: Lab) -> None:
    value = f"s3cret-{uuid.uuid4().hex[:8]}"
    plaintext = lab.root / "config" / "secrets.local.yaml"
    doc = {"secrets": [{"name": "homepage-api", "namespace": "homepage", "data": {"token": value}}]}
    plaintext.write_text(yaml.safe_dump(doc))
    plaintext.chmod(0o600)
    for step in (["secrets.fetch-cert", "--target", "sandbox"], ["secrets.seal"]):
        done = run_cli(step, lab.env, timeout=300)
        assert done.code == 0, done.output
    sealed = lab.root / "k8s" / "sealed" / "homepage-homepage-api.yaml"
    assert sealed.is_file() and value not in sealed.read_text()
    out = lab.up()
    assert "SealedSecrets to be unsealed" in out, out
    secret = lab.kube.get("v1", "Secret", "homepage-api", "homepage")
    assert secret is not None, "no Secret from the SealedSecret"
    assert base64.b64decode(secret["data"]["token"]).decode() == value
    sync, health, _ = application_state(lab.kube, "sealed-secrets-sealed")
    assert (sync, health) == ("Synced", "Healthy")
    owner = lab.kube.get("bitnami.com/v1alpha1", "SealedSecret", "homepage-api", "homepage")
    assert "argocd.argoproj.io/tracking-id" in owner["metadata"].get("annotations", {})


def test_dropping_an_app_and_an_env_var_from_the_config_reaches_the_cluster(lab: Lab) -> None:
    """Prune (an app dropped) and field removal (an env var dropped) on the GitOps path, through `inv up`."""
    webui = lab.kube.get("apps/v1", "Deployment", "open-webui", "open-webui")
    assert webui["spec"]["template"]["spec"]["containers"][0].get("env"), "the reference config sets an env var"
    assert lab.kube.get("apps/v1", "Deployment", "filebrowser", "filebrowser") is not None
    original = lab.data()
    data = lab.data()
    del data["apps"]["filebrowser"]
    del data["apps"]["open-webui"]["env"]
    lab.write(data)
    try:
        lab.up()
        wait_for(
            "the dropped app's Application to be deleted",
            lambda: None if lab.kube.get(*APPLICATION, "app-filebrowser", ARGOCD_NAMESPACE) is None else "live",
            120,
        )
        wait_for(
            "the dropped app's Deployment to be pruned",
            lambda: None if lab.kube.get("apps/v1", "Deployment", "filebrowser", "filebrowser") is None else "live",
            120,
        )
        live = lab.kube.get("apps/v1", "Deployment", "open-webui", "open-webui")
        assert "env" not in live["spec"]["template"]["spec"]["containers"][0]
    finally:
        lab.write(original)
        lab.up()
    assert lab.kube.get("apps/v1", "Deployment", "filebrowser", "filebrowser") is not None


def test_self_heal_restores_a_hand_edited_object(lab: Lab) -> None:
    before = lab.kube.get("apps/v1", "Deployment", "homepage", "homepage")
    replicas = before["spec"]["replicas"]
    lab.kube.merge_patch("apps/v1", "Deployment", "homepage", "homepage", {"spec": {"replicas": replicas + 3}})

    def healed() -> str | None:
        live = lab.kube.get("apps/v1", "Deployment", "homepage", "homepage")
        return None if live["spec"]["replicas"] == replicas else f"replicas {live['spec']['replicas']}"

    wait_for("Argo CD to undo the hand edit", healed, 180)


def git(*args: str, cwd: Path) -> None:
    subprocess.run([require("git"), *args], cwd=cwd, check=True, capture_output=True)


def test_an_application_synced_before_its_crd_exists_recovers_by_itself(lab: Lab, tmp_path: Path) -> None:
    """The rendered sync policy (retry) lets a child whose CRD another Application installs later recover."""
    group = f"t{uuid.uuid4().hex[:6]}.homelab.dev"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    branch = f"crd-{group.split('.')[0]}"
    work = tmp_path / "work"
    (work / "app").mkdir(parents=True)
    (work / "app" / "widget.yaml").write_text(yaml.safe_dump(widget))
    git("init", "--quiet", f"--initial-branch={branch}", cwd=work)
    git("add", ".", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "--quiet", "-m", "widget", cwd=work)
    git("push", "--quiet", str(controllers.layout(lab.session).repository), f"HEAD:refs/heads/{branch}", cwd=work)
    namespace = f"w-{group.split('.')[0]}"
    source = {"repoURL": controllers.repo_url(lab.session), "targetRevision": branch, "path": "app"}
    app = platform.application(branch, source, namespace, 0)  # the same sync policy every rendered child has
    lab.kube.apply([app])
    try:

        def failed_once() -> str | None:
            state = (lab.kube.get(*APPLICATION, branch, ARGOCD_NAMESPACE) or {}).get("status") or {}
            op = state.get("operationState") or {}
            return None if op.get("retryCount", 0) >= 1 or op.get("phase") in ("Failed", "Error") else str(op)

        wait_for("the first sync to fail on the missing kind", failed_once, 180)
        lab.kube.apply([crd])

        def recovered() -> str | None:
            sync, health, _ = application_state(lab.kube, branch)
            return None if (sync, health) == ("Synced", "Healthy") else f"{sync}/{health}"

        wait_for("the Application to recover once the CRD is served", recovered, 240)
        assert lab.kube.get(f"{group}/v1", "Widget", "w", namespace) is not None
    finally:
        lab.kube.delete(*APPLICATION, branch, ARGOCD_NAMESPACE)
        lab.kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"])


def test_dry_run_lists_the_sandbox_switch_and_changes_nothing(lab: Lab) -> None:
    commit = local.pushed_commit(controllers.layout(lab.session).repository)
    dry = run_cli(["up", "--target", "sandbox", "--dry-run"], lab.env, timeout=300)
    assert dry.code == 0, dry.output
    for line in tree.switch_differences(lab.session.cfg):
        assert f"sandbox switch: {line}" in dry.stdout, dry.stdout
    assert local.pushed_commit(controllers.layout(lab.session).repository) == commit
