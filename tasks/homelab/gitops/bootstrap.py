"""Bootstrap ArgoCD on a real cluster: its pinned install manifest, then the root Application.

After this, ArgoCD manages everything under k8s/ (itself included, through the
argocd Application) with automated sync and prune.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

from homelab.apps.render import namespace
from homelab.core import cluster
from homelab.core.kube import load_manifests
from homelab.gitops import deploy
from homelab.gitops.platform import ARGOCD_NAMESPACE, root_application


def install_objects(source: str) -> list[dict[str, Any]]:
    """ArgoCD's install manifest (a URL or a local file), namespaced into argocd."""
    if "://" in source:
        with urllib.request.urlopen(source, timeout=60) as response:  # noqa: S310 - https URL from config
            text = response.read().decode()
    else:
        text = Path(source).expanduser().read_text()
    objects = load_manifests([text])
    for obj in objects:
        if obj["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            obj["metadata"].setdefault("namespace", ARGOCD_NAMESPACE)
    return objects


def bootstrap(session: Any, wait: int) -> bool:
    cfg = session.cfg
    source = cfg.gitops.install_manifest.format(version=cfg.gitops.argocd_version)
    root = root_application(cfg)
    if session.dry_run:
        print(f"plan: install ArgoCD {cfg.gitops.argocd_version} from {source} into namespace {ARGOCD_NAMESPACE}")
        print(f"  then apply the root Application (repo {cfg.gitops.repo_url}, path {cfg.gitops.path}/argocd)")
        if wait:
            print(f"  then wait up to {wait}s for ArgoCD's deployments and the root Application to be healthy")
        return False
    kube = cluster.connect(session)
    objects = install_objects(source)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    changed = deploy.install_crds(kube, crds)
    rest = [namespace(ARGOCD_NAMESPACE)] + [o for o in objects if o["kind"] != "CustomResourceDefinition"]
    changed = any(a.changed for a in kube.apply(rest)) or changed
    changed = any(a.changed for a in kube.apply([root])) or changed
    if wait:
        names = [(ARGOCD_NAMESPACE, o["metadata"]["name"]) for o in rest if o["kind"] == "Deployment"]
        kube.wait_deployments(names, timeout=wait, progress=print)

        def root_health() -> str | None:
            live = kube.get("argoproj.io/v1alpha1", "Application", "root", ARGOCD_NAMESPACE) or {}
            health = ((live.get("status") or {}).get("health") or {}).get("status", "Unknown")
            return None if health == "Healthy" else f"root Application health {health}"

        kube.wait_for("the root Application", root_health, timeout=wait, progress=print)

        def children_pending() -> str | None:
            # ArgoCD reports an Application healthy without looking at its children, so
            # every Application (platform, apps, monitoring) is waited for in its own right.
            pending = []
            for app in kube.list_objects("argoproj.io/v1alpha1", "Application", ARGOCD_NAMESPACE):
                st = app.get("status") or {}
                sync = (st.get("sync") or {}).get("status", "Unknown")
                health = (st.get("health") or {}).get("status", "Unknown")
                if sync != "Synced" or health != "Healthy":
                    pending.append(f"{app['metadata']['name']} {sync}/{health}")
            return ", ".join(pending[:4]) + (f" (+{len(pending) - 4} more)" if len(pending) > 4 else "") or None

        kube.wait_for("every Application to be Synced and Healthy", children_pending, timeout=wait, progress=print)
    print("gitops: ArgoCD bootstrapped" if changed else "gitops: ArgoCD already bootstrapped; nothing to do")
    return changed
