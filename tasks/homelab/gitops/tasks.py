"""GitOps: render k8s/ from the config, bootstrap ArgoCD (app of apps), status, sync, diff, direct apply."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task

DRY_RUN = "Print the plan and change nothing."


def _rendered(s: Any) -> Any:
    from homelab.gitops.tree import render

    return render(s.cfg)


def _k8s_root() -> Any:
    from homelab.core.paths import project_root

    return project_root() / "k8s"


@task(help={"check": "Do not write; exit 1 listing files that are stale or would change (for CI)."})
def render(c: Any, check: bool = False) -> None:
    """Write the k8s/ tree from the config: platform, apps, ArgoCD root. Deterministic."""
    from invoke.exceptions import Exit

    from homelab.gitops.tree import drift, write

    s = session(c)
    rendered = _rendered(s)
    root = _k8s_root()
    for note in rendered.notes:
        print(f"note: {note}")
    if check:
        found = drift(rendered, root)
        if not found.clean:
            lines = [f"  would change: k8s/{p}" for p in found.changed] + [f"  stale: k8s/{p}" for p in found.stale]
            raise Exit("k8s/ is out of date with the config; run inv gitops.render\n" + "\n".join(lines), code=1)
        print(f"k8s/ is up to date ({len(rendered.files)} files)")
        return
    found = write(rendered, root)
    if found.clean:
        print(f"k8s/: nothing to do ({len(rendered.files)} files up to date)")
    for path in found.changed:
        print(f"wrote k8s/{path}")
    for path in found.stale:
        print(f"removed k8s/{path}")


def apply_direct(s: Any) -> bool:
    """CRDs, then the rendered tree, server-side applied and waited for."""
    from homelab.core import cluster
    from homelab.gitops import deploy
    from homelab.gitops.tree import objects_in_apply_order

    rendered = _rendered(s)
    if s.dry_run:
        objects = objects_in_apply_order(rendered)
        print(f"plan: install component CRDs from {deploy.crd_dir()}, then server-side apply {len(objects)} objects:")
        for obj in objects:
            meta = obj["metadata"]
            where = f"{meta['namespace']}/" if meta.get("namespace") else ""
            print(f"  apply {obj['kind']} {where}{meta['name']}")
        return False
    from homelab.sandbox.cluster import bind_pending_claims

    kube = cluster.connect(s)
    crds_changed = deploy.install_crds(kube, deploy.component_crds())
    binder = bind_pending_claims if s.cfg.target == "sandbox" else None
    return deploy.apply_tree(kube, rendered, before_wait=binder) or crds_changed


@task(help={"dry_run": DRY_RUN, "target": "Cluster target (default from config)."})
def apply(c: Any, dry_run: bool = False, target: str | None = None) -> None:
    """Apply the rendered tree straight to the cluster (no ArgoCD); how the sandbox runs the apps."""
    s = session(c, dry_run, target=target)
    changed = apply_direct(s)
    if not dry_run:
        print("gitops.apply: converged" if changed else "gitops.apply: nothing to do")


@task(help={"target": "Cluster target (default from config)."})
def diff(c: Any, target: str | None = None) -> None:
    """Rendered manifests against the live cluster (server-side dry run); exit 1 when they differ."""
    from invoke.exceptions import Exit

    from homelab.core import cluster
    from homelab.gitops import deploy

    s = session(c, target=target)
    lines = deploy.diff_tree(cluster.connect(s), _rendered(s))
    if not lines:
        print("no differences")
        return
    print("\n".join(lines))
    raise Exit(code=1)


@task(help={"target": "Cluster target (default from config)."})
def status(c: Any, target: str | None = None) -> None:
    """ArgoCD Applications: sync status, health, revision."""
    from homelab.core import cluster

    s = session(c, target=target)
    apps = cluster.connect(s).list_objects("argoproj.io/v1alpha1", "Application", "argocd")
    print(f"{'APPLICATION':<28} {'SYNC':<10} {'HEALTH':<12} REVISION")
    for app in sorted(apps, key=lambda a: a["metadata"]["name"]):
        st = app.get("status") or {}
        print(
            f"{app['metadata']['name']:<28} {(st.get('sync') or {}).get('status', 'Unknown'):<10} "
            f"{(st.get('health') or {}).get('status', 'Unknown'):<12} {(st.get('sync') or {}).get('revision', '-')}"
        )


@task(help={"app": "Application name (see gitops.status).", "target": "Cluster target (default from config)."})
def sync(c: Any, app: str, target: str | None = None) -> None:
    """Ask ArgoCD to sync one Application now (with prune)."""
    from homelab.core import cluster
    from homelab.core.errors import UsageError

    s = session(c, target=target)
    kube = cluster.connect(s)
    if kube.get("argoproj.io/v1alpha1", "Application", app, "argocd") is None:
        raise UsageError(f"no ArgoCD Application named {app!r}; see inv gitops.status")
    patch = {"operation": {"initiatedBy": {"username": "homelab"}, "sync": {"prune": True}}}
    kube.resource("argoproj.io/v1alpha1", "Application").patch(
        name=app, namespace="argocd", body=patch, content_type="application/merge-patch+json"
    )
    print(f"sync of {app} requested")


@task(help={"dry_run": DRY_RUN, "wait": "Seconds to wait for ArgoCD and the root Application (0: do not wait)."})
def bootstrap(c: Any, dry_run: bool = False, wait: int = 600) -> None:
    """Install ArgoCD (pinned), the repository credentials and the root Application; wait until healthy."""
    from homelab.gitops import bootstrap as gitops_bootstrap

    with session(c, dry_run) as s:
        gitops_bootstrap.bootstrap(s, wait)


def layer_up(c: Any, dry_run: bool, overrides: dict[str, Any]) -> bool:
    from homelab.gitops import bootstrap as gitops_bootstrap

    s = session(c, dry_run, **overrides)
    if s.cfg.target == "sandbox":
        return apply_direct(s)
    return gitops_bootstrap.bootstrap(s, 600)


def layer_down(c: Any, dry_run: bool, overrides: dict[str, Any]) -> None:
    print("  gitops: the cluster layer below removes everything; nothing to do here")


def layer_status(c: Any, overrides: dict[str, Any]) -> tuple[bool, str]:
    from homelab.core import cluster
    from homelab.core.errors import HomelabError
    from homelab.gitops import deploy

    s = session(c, **overrides)
    try:
        lines = deploy.diff_tree(cluster.connect(s), _rendered(s))
    except HomelabError as err:
        return False, str(err)
    return (
        not lines,
        "live matches the rendered manifests" if not lines else f"{len(lines)} fields differ (gitops.diff)",
    )


ns = Collection("gitops", render, apply, diff, status, sync, bootstrap)
