"""gitops.sync, gitops.apply, gitops.bootstrap and gitops.render as plans: --dry-run shows them and changes nothing.

Against the shared sandbox (a real API server) with Argo CD's real Application
CRD; the k8s/ tree is rendered into a scratch project root, never the checkout.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import run_cli, sample_application, settled_objects
from homelab.core.kube import Kube
from homelab.core.session import Session
from homelab.gitops import deploy, tree

pytestmark = pytest.mark.integration

APP = "dry-sync"


def application(name: str) -> dict[str, Any]:
    return sample_application(name)


@pytest.fixture(scope="module")
def argocd_app(kube: Kube) -> str:
    """A fake Application (no Argo CD controller runs): only the object a sync request patches."""
    crds = [c for c in deploy.component_crds() if c["metadata"]["name"] == "applications.argoproj.io"]
    assert crds, "scripts/get-binaries.sh crds provides Argo CD's CRDs"
    deploy.install_crds(kube, crds)
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}, application(APP)])
    return APP


def config_of(session: Session) -> Path:
    return session.loaded.files[0]


def env_of(session: Session, **extra: str) -> dict[str, str]:
    return {"HOMELAB_CONFIG": str(config_of(session)), **extra}


def test_sync_dry_run_shows_the_patch_and_sends_nothing_then_sync_sends_it(
    kube: Kube, sandbox_session: Session, argocd_app: str
) -> None:
    before = kube.get("argoproj.io/v1alpha1", "Application", argocd_app, "argocd")
    dry = run_cli(["gitops.sync", argocd_app, "--dry-run"], env_of(sandbox_session))
    assert dry.code == 0, dry.output
    assert f"[cluster] patch Application argocd/{argocd_app}: sync now, with prune" in dry.stdout
    after = kube.get("argoproj.io/v1alpha1", "Application", argocd_app, "argocd")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "operation" not in after

    missing = run_cli(["gitops.sync", "nope", "--dry-run"], env_of(sandbox_session))
    assert missing.code == 2 and "no ArgoCD Application named 'nope'" in missing.stderr

    sent = run_cli(["gitops.sync", argocd_app], env_of(sandbox_session))
    assert sent.code == 0 and f"sync of {argocd_app} requested" in sent.stdout, sent.output
    operation = kube.get("argoproj.io/v1alpha1", "Application", argocd_app, "argocd")["operation"]
    assert operation == {"initiatedBy": {"username": "homelab"}, "sync": {"prune": True}}


def cluster_picture(kube: Kube) -> dict[str, str]:
    """The desired state of every object of the kinds the rendered tree and ArgoCD's manifest hold."""
    kinds = [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "PersistentVolume"),
        ("apps/v1", "Deployment"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("argoproj.io/v1alpha1", "Application"),
    ]
    found = {}
    for kind, obj in settled_objects(kube, kinds):
        meta = obj["metadata"]
        desired = {
            "generation": meta.get("generation"),
            "labels": meta.get("labels"),
            "annotations": meta.get("annotations"),
            "body": {k: v for k, v in obj.items() if k not in ("metadata", "status")},
        }
        found[f"{kind} {meta.get('namespace', '')}/{meta['name']}"] = json.dumps(desired, sort_keys=True, default=str)
    return found


def test_apply_dry_run_plans_the_whole_tree_and_creates_nothing(
    kube: Kube, sandbox_session: Session, argocd_app: str
) -> None:
    before = cluster_picture(kube)
    dry = run_cli(["gitops.apply", "--dry-run"], env_of(sandbox_session))
    assert dry.code == 0, dry.output
    # CRDs are planned unless an earlier test on this shared sandbox already applied them unchanged.
    assert "[cluster] apply CustomResourceDefinition" in dry.stdout or "CRDs to be Established" in dry.stdout
    assert "[cluster] apply Namespace " in dry.stdout and "objects)" in dry.stdout
    assert "[cluster] wait for deployments to be Available" in dry.stdout
    assert cluster_picture(kube) == before
    assert [kube.get("v1", "Namespace", app) for app in sandbox_session.cfg.apps] == [None] * len(
        sandbox_session.cfg.apps
    )


def test_bootstrap_dry_run_plans_argocd_and_the_root_application_and_creates_nothing(
    kube: Kube, sandbox_session: Session, argocd_app: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "install.yaml"
    manifest.write_text(
        yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"}, "data": {"a": "1"}},
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "argocd-server"},
                    "spec": {
                        "selector": {"matchLabels": {"app": "argocd-server"}},
                        "template": {
                            "metadata": {"labels": {"app": "argocd-server"}},
                            "spec": {"containers": [{"name": "server", "image": "quay.io/argoproj/argocd:v3.1.8"}]},
                        },
                    },
                },
            ]
        )
    )
    data = yaml.safe_load(config_of(sandbox_session).read_text())
    data["gitops"]["install_manifest"] = str(manifest)
    config = tmp_path / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    before = cluster_picture(kube)
    dry = run_cli(["gitops.bootstrap", "--dry-run", "--wait", "30"], {"HOMELAB_CONFIG": str(config)})
    assert dry.code == 0, dry.output
    assert "ConfigMap argocd/argocd-cm" in dry.stdout and "Deployment argocd/argocd-server" in dry.stdout
    assert "[cluster] apply Application argocd/root" in dry.stdout or root_is_current(kube)
    assert "wait for the root Application to be Healthy (up to 30s)" in dry.stdout
    assert cluster_picture(kube) == before


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_render_dry_run_lists_writes_and_removals_and_writes_nothing(sandbox_session: Session, tmp_path: Path) -> None:
    env = env_of(sandbox_session, HOMELAB_ROOT=str(tmp_path))
    first = run_cli(["gitops.render"], env)
    assert first.code == 0 and "k8s/: converged" in first.stdout, first.output
    k8s = tmp_path / "k8s"
    (k8s / "apps" / "gone").mkdir()
    (k8s / "apps" / "gone" / "app.yaml").write_text(tree.HEADER)
    (k8s / "apps" / "plex" / "app.yaml").write_text(tree.HEADER + "edited: true\n")
    before = digest(k8s)

    dry = run_cli(["gitops.render", "--dry-run"], env)
    assert dry.code == 0, dry.output
    assert f"write {k8s / 'apps' / 'plex' / 'app.yaml'} (mode 0644" in dry.stdout
    assert f"run: rm -- {k8s / 'apps' / 'gone' / 'app.yaml'}" in dry.stdout
    assert digest(k8s) == before

    fixed = run_cli(["gitops.render"], env)
    assert fixed.code == 0 and "k8s/: converged" in fixed.stdout, fixed.output
    assert not (k8s / "apps" / "gone" / "app.yaml").exists()
    assert "nothing to do" in run_cli(["gitops.render"], env).stdout


def test_bootstrap_dry_run_downloads_no_install_manifest(
    kube: Kube, sandbox_session: Session, argocd_app: str, tmp_path: Path
) -> None:
    import http.server
    import threading

    hits: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{{version}}/install.yaml"
        data = yaml.safe_load(config_of(sandbox_session).read_text())
        data["gitops"]["install_manifest"] = url
        (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
        dry = run_cli(["gitops.bootstrap", "--dry-run"], {"HOMELAB_CONFIG": str(tmp_path / "homelab.yaml")})
    finally:
        server.shutdown()
    assert dry.code == 0, dry.output
    assert "is fetched when the bootstrap runs" in dry.stdout, dry.stdout
    assert "[cluster] apply Application argocd/root" in dry.stdout or root_is_current(kube)
    assert hits == []


def root_is_current(kube: Kube) -> bool:
    """An earlier test on the shared sandbox bootstrapped already: the plan then leaves the root out."""
    return kube.get("argoproj.io/v1alpha1", "Application", "root", "argocd") is not None
