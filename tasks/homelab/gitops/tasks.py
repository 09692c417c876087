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


@task(
    help={
        "check": "Do not write; exit 1 listing files that are stale or would change (for CI).",
        "dry_run": "Print the files that would be written or removed; write nothing.",
    }
)
def render(c: Any, check: bool = False, dry_run: bool = False) -> None:
    """Write the k8s/ tree from the config: platform, apps, ArgoCD root. Deterministic."""
    from invoke.exceptions import Exit

    from homelab.core.converge import converge
    from homelab.core.plan import Plan, Run, WriteFile
    from homelab.gitops.tree import drift

    s = session(c, dry_run)
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

    def build() -> Plan:
        found = drift(rendered, root)
        plan = Plan(f"render k8s/ ({len(rendered.files)} files)")
        plan.extend(WriteFile(str(root / path), rendered.text(path), 0o644, why="rendered") for path in found.changed)
        plan.extend(Run(("rm", "--", str(root / path)), why="no longer rendered") for path in found.stale)
        return plan

    changed = converge(s.executor, build)
    if not dry_run:
        print("k8s/: converged" if changed else f"k8s/: nothing to do ({len(rendered.files)} files up to date)")


def apply_plan(s: Any) -> Any:
    """CRDs, then the rendered tree: applies of what differs from the cluster, then waits until it is ready.

    On the sandbox each rendered claim gets the volume local-path-provisioner would make.
    """
    from homelab.core.plan import Note, Plan
    from homelab.gitops import deploy
    from homelab.gitops.tree import objects_in_apply_order
    from homelab.sandbox.cluster import volumes_for

    objects = objects_in_apply_order(_rendered(s))
    if s.cfg.target == "sandbox":
        objects += volumes_for([o for o in objects if o["kind"] == "PersistentVolumeClaim"])
    kube, problem = deploy.cluster_for_planning(s)
    plan = Plan(f"apply the rendered tree ({len(objects)} objects) to context {s.cfg.context_name()}")
    if problem:
        plan.add(Note(f"the cluster cannot be read ({problem}): planned as if it were empty"))
    plan.extend(deploy.crd_actions(kube, s.executor.kube, deploy.component_crds(), "component CRDs"))
    return plan.extend(deploy.tree_actions(kube, s.executor.kube, objects))


def apply_direct(s: Any) -> bool:
    """Apply the rendered tree and wait, then plan again; True when something changed."""
    from homelab.core.converge import converge

    return converge(s.executor, lambda: apply_plan(s))


DELETE_DATA = (
    "Delete the claims (and the data their volumes hold) of apps no longer in the config, "
    "after asking (--yes skips it); without it they are kept and named."
)
YES_DELETE = "Do not ask before --delete-data deletes data."


@task(
    help={
        "dry_run": DRY_RUN,
        "target": "Cluster target (default from config).",
        "delete_data": DELETE_DATA,
        "yes": YES_DELETE,
    }
)
def apply(
    c: Any, dry_run: bool = False, target: str | None = None, delete_data: bool = False, yes: bool = False
) -> None:
    """Apply the rendered tree straight to the cluster (no ArgoCD); how the sandbox runs the apps."""
    from homelab.gitops import kept
    from homelab.gitops.tree import objects_in_apply_order

    s = session(c, dry_run, target=target)
    changed = apply_direct(s)
    claims = kept.rendered_claims(objects_in_apply_order(_rendered(s)))
    changed = kept.converge_data(s, claims, delete_data, yes, "inv gitops.apply") or changed
    if not dry_run:
        print("gitops.apply: converged" if changed else "gitops.apply: nothing to do")


@task(help={"target": "Cluster target (default from config)."})
def diff(c: Any, target: str | None = None) -> None:
    """Rendered vs live (server-side dry run): changed fields, and ours the config dropped; exit 1 if any."""
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


def application_rows(apps: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per Argo CD Application, as ``gitops.status --json`` prints it."""
    rows = []
    for app in sorted(apps, key=lambda a: a["metadata"]["name"]):
        st = app.get("status") or {}
        sync, health = st.get("sync") or {}, st.get("health") or {}
        rows.append(
            {
                "name": app["metadata"]["name"],
                "sync": sync.get("status", "Unknown"),
                "health": health.get("status", "Unknown"),
                "revision": sync.get("revision") or None,
            }
        )
    return rows


@task(
    help={
        "target": "Cluster target (default from config).",
        "json": 'Print JSON: [{"name", "sync", "health", "revision"}] (revision null before the first sync).',
    }
)
def status(c: Any, target: str | None = None, json: bool = False) -> None:
    """ArgoCD Applications: sync status, health, revision."""
    import json as jsonlib

    from homelab.core import cluster

    s = session(c, target=target)
    rows = application_rows(cluster.connect(s).list_objects("argoproj.io/v1alpha1", "Application", "argocd"))
    if json:
        print(jsonlib.dumps(rows, indent=2))
        return
    print(f"{'APPLICATION':<28} {'SYNC':<10} {'HEALTH':<12} REVISION")
    for r in rows:
        print(f"{r['name']:<28} {r['sync']:<10} {r['health']:<12} {r['revision'] or '-'}")


@task(
    help={
        "app": "Application name (see gitops.status).",
        "target": "Cluster target (default from config).",
        "dry_run": "Print the patch that would request the sync; send nothing.",
    }
)
def sync(c: Any, app: str, target: str | None = None, dry_run: bool = False) -> None:
    """Ask ArgoCD to sync one Application now (with prune).

    A sync is a request, not a state: the plan is one merge patch of the
    Application's ``operation`` field, which ArgoCD's controller picks up and
    clears, so there is nothing to re-check afterwards but that it was accepted.
    """
    from homelab.core.errors import UsageError
    from homelab.core.plan import Patch, Plan

    s = session(c, dry_run, target=target)
    if s.executor.kube().get("argoproj.io/v1alpha1", "Application", app, "argocd") is None:
        raise UsageError(f"no ArgoCD Application named {app!r}; see inv gitops.status")
    body = {"operation": {"initiatedBy": {"username": "homelab"}, "sync": {"prune": True}}}
    request = Patch("argoproj.io/v1alpha1", "Application", app, "argocd", body, why="sync now, with prune")
    s.executor.execute(Plan(f"sync Application {app}", [request]))
    if not dry_run:
        print(f"sync of {app} requested")


@task(help={"dry_run": "Fetch the branch and print the diff a publish would push; commit and push nothing."})
def publish(c: Any, dry_run: bool = False) -> None:
    """Commit the rendered tree on top of gitops.repo_url's branch gitops.revision and push it (never forced)."""
    from homelab.gitops import publish as gitops_publish

    s = session(c, dry_run)
    if s.cfg.target == "sandbox":
        from homelab.core.errors import UsageError

        raise UsageError("the sandbox publishes to its own git server: inv up --target sandbox")
    gitops_publish.require_real_repository(s.cfg)
    wanted = gitops_publish.wanted_files(s)
    if dry_run:
        remote = gitops_publish.fetch(s)
        found = gitops_publish.difference(s.cfg, wanted, remote)
        s.executor.execute(gitops_publish.publish_plan(s, remote, wanted))
        print(gitops_publish.diff_text(remote, wanted, found, s.cfg.gitops.revision), end="")
        return
    changed = gitops_publish.push(s)
    where = f"{s.cfg.gitops.repo_url} ({s.cfg.gitops.revision})"
    print(f"gitops.publish: pushed to {where}" if changed else f"gitops.publish: {where} already holds the render")


@task(help={"dry_run": DRY_RUN, "wait": "Seconds to wait for ArgoCD and the root Application (0: do not wait)."})
def bootstrap(c: Any, dry_run: bool = False, wait: int = 600) -> None:
    """Install ArgoCD (pinned), the repository credentials and the root Application; wait until healthy."""
    from homelab.gitops import bootstrap as gitops_bootstrap

    with session(c, dry_run) as s:
        gitops_bootstrap.bootstrap(s, wait)


def seal_missing(s: Any, key_wait: float) -> bool:
    """Seal every Secret the cluster needs that has no SealedSecret yet; True when files were written.

    First the pinned certificate is checked against the controller's keys (``pinning.agree``: pinned
    when there is none, re-pinned and resealed on the sandbox, a stop naming the fix on a real
    cluster). ``key_wait``: seconds to wait for a starting controller's first key.
    """
    from homelab.secrets import pinning, sealing

    state = pinning.agree(s, key_wait)
    plan = sealing.missing_plan(s)
    s.executor.execute(plan)
    if not s.dry_run:
        sealing.require_written(plan)
    return not plan.empty or state == "mismatch"


def layer_up(c: Any, dry_run: bool, overrides: dict[str, Any], yes: bool = False, delete_data: bool = False) -> bool:
    """The GitOps layer of ``inv up``: from an empty branch to every Application Synced and Healthy, in one run.

    On a real cluster: seal what can be sealed, publish the render where the toolkit may
    (``require_published``), bootstrap Argo CD, then, once the Sealed Secrets controller it
    installs answers, seal the rest and publish them in the same run, and wait for every
    Application (a SealedSecret no key decrypts stops the wait at once). Last, the apps' data
    (``kept``): volumes retained, claims of dropped apps named, or deleted with ``delete_data``.
    """
    from homelab.gitops import bootstrap as gitops_bootstrap
    from homelab.gitops import hold, kept

    s = session(c, dry_run, **overrides)
    hold.recover(s)  # a day-2 task killed while it held Argo CD back: its automated sync on again first
    claims = kept.rendered_claims(tree_objects(s))
    if s.cfg.target == "sandbox":
        from homelab.gitops import local

        if dry_run:  # a cluster target says it in its narration; the sandbox's plan says it here
            show_exposure(s)
        sealed = seal_missing(s, key_wait=0 if dry_run else 60)  # the sandbox's controller is starting or running
        synced = local.sync(s)
        return kept.converge_data(s, claims, delete_data, yes, "inv up") or synced or sealed
    sealed_now = seal_missing(s, key_wait=0)
    if dry_run:
        from homelab.gitops.narrate import narration

        s.executor.execute(narration(s.cfg))
    published = require_published(
        s, yes
    )  # before the cluster is touched: Argo CD would sync (or wait for) another tree
    changed = gitops_bootstrap.bootstrap(s, 600, applications=False)
    sealed_later = finish_sealing(s, yes)
    gitops_bootstrap.wait_applications(s, 600)
    data = kept.converge_data(s, claims, delete_data, yes, "inv up")
    return changed or sealed_now or published or sealed_later or data


def show_exposure(s: Any) -> None:
    """The dry run's word on who reaches what: the hostnames the tunnel publishes, and those only the LAN reaches."""
    from homelab.apps import exposure
    from homelab.core.plan import Note, Plan

    s.executor.execute(Plan("who reaches each hostname", [Note(line) for line in exposure.summary(s.cfg)]))


def tree_objects(s: Any) -> list[Any]:
    from homelab.gitops.tree import objects_in_apply_order

    return objects_in_apply_order(_rendered(s))


KEY_WAIT = 300.0  # seconds for the controller Argo CD installs to make its first key


def finish_sealing(s: Any, yes: bool) -> bool:
    """Seal what waited for the controller Argo CD just installed, publish it and ask Argo CD to read it now."""
    from homelab.core.plan import Note, Plan
    from homelab.gitops import bootstrap as gitops_bootstrap
    from homelab.secrets import sealing

    todo, _ = sealing.unsealed(s)
    if not todo:
        return False
    if s.dry_run:
        names = ", ".join(f"{x.namespace}/{x.name}" for x in todo)
        s.executor.execute(Plan("seal in this run", [Note(f"{names}: sealed once the controller answers, published")]))
        return False
    print(f"gitops: waiting for the Sealed Secrets controller to seal {len(todo)} secrets", flush=True)
    if not seal_missing(s, key_wait=KEY_WAIT):
        return False
    require_published(s, yes)
    gitops_bootstrap.refresh_applications(s)
    return True


def require_published(s: Any, yes: bool = False) -> bool:
    """The branch Argo CD syncs must hold the render; True when this run published it.

    A branch that is empty or holds only the toolkit's own earlier publishes is published
    here (after asking; ``--yes`` skips the question). A branch with commits of anyone else
    is never pushed to by ``inv up``: that stays ``inv gitops.publish``, run by its owner.
    """
    from homelab.core.errors import HomelabError, UsageError
    from homelab.core.plan import Note, Plan
    from homelab.core.tasks import confirm
    from homelab.gitops import publish as gitops_publish

    try:
        found, remote = gitops_publish.pending(s)
    except HomelabError as err:
        if not s.dry_run:
            raise
        s.executor.execute(Plan("gitops", [Note(f"the real run stops here: {err}")]))
        return False
    if found.clean:
        return False
    where = f"{s.cfg.gitops.repo_url} ({s.cfg.gitops.revision})"
    ours = remote.foreign == 0
    if s.dry_run:
        then = "the real run publishes the render there" if ours else "the real run stops: run inv gitops.publish"
        s.executor.execute(
            Plan("gitops", [Note(f"{where} differs from the render: {', '.join(found.lines(4))}; {then}")])
        )
        return False
    why = f"it holds {remote.foreign} commit{'s' if remote.foreign != 1 else ''} not made by the toolkit"
    if ours:
        try:
            if confirm(f"Publish the render to {where} ({len(found.changed) + len(found.stale)} files)?", yes):
                return gitops_publish.push(s)
            why = "publishing was declined"
        except UsageError:
            why = "no terminal to ask whether to publish: pass --yes"
    raise HomelabError(
        f"not converged: Argo CD syncs {where}, which differs from the render ({why}):\n  "
        + "\n  ".join(found.lines())
        + "\nrun inv gitops.publish (inv gitops.publish --dry-run shows the diff)"
    )


def layer_down(c: Any, dry_run: bool, overrides: dict[str, Any]) -> None:
    from homelab.core.plan import Note, Plan

    s = session(c, dry_run, **overrides)
    s.executor.execute(Plan("gitops", [Note("the cluster layer below removes everything it applied")]))


def layer_status(c: Any, overrides: dict[str, Any]) -> tuple[bool, str]:
    from homelab.core import cluster
    from homelab.core.errors import HomelabError
    from homelab.gitops import deploy

    s = session(c, **overrides)
    if s.cfg.target == "sandbox":
        from homelab.gitops import local

        return local.status(s)
    try:
        lines = deploy.diff_tree(cluster.connect(s), _rendered(s))
    except HomelabError as err:
        return False, str(err)
    return (
        not lines,
        "live matches the rendered manifests" if not lines else f"{len(lines)} fields differ (gitops.diff)",
    )


ns = Collection("gitops", render, publish, apply, diff, status, sync, bootstrap)
