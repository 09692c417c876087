"""Bootstrap ArgoCD on a real cluster: its pinned install manifest, then the root Application.

After this, ArgoCD manages everything under k8s/ (itself included, through the
argocd Application) with automated sync and prune. The bootstrap is one plan:
ArgoCD's CRDs (waited for until Established), its other objects, the root
Application, then waits for ArgoCD's Deployments and for every Application to
be Synced and Healthy. Reading the cluster and a local install manifest is
observation; under ``--dry-run`` only that happens (a manifest URL is not fetched).
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from homelab.apps.render import namespace
from homelab.core.converge import converge
from homelab.core.errors import HomelabError
from homelab.core.kube import Kube, load_manifests
from homelab.core.plan import Note, Plan, Wait
from homelab.gitops import deploy
from homelab.gitops.platform import ARGOCD_NAMESPACE, install_url, root_application

Obj = dict[str, Any]


def install_objects(source: str) -> list[Obj]:
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


def root_health(kube: Kube) -> str | None:
    live = kube.get("argoproj.io/v1alpha1", "Application", "root", ARGOCD_NAMESPACE) or {}
    health = ((live.get("status") or {}).get("health") or {}).get("status", "Unknown")
    return None if health == "Healthy" else f"root Application health {health}"


def applications_pending(kube: Kube) -> str | None:
    """Every Application not Synced and Healthy (ArgoCD calls an Application healthy without its children)."""
    pending = []
    for app in kube.list_objects("argoproj.io/v1alpha1", "Application", ARGOCD_NAMESPACE):
        st = app.get("status") or {}
        sync = (st.get("sync") or {}).get("status", "Unknown")
        health = (st.get("health") or {}).get("status", "Unknown")
        if sync != "Synced" or health != "Healthy":
            pending.append(f"{app['metadata']['name']} {sync}/{health}")
    return ", ".join(pending[:4]) + (f" (+{len(pending) - 4} more)" if len(pending) > 4 else "") or None


REPOSITORY_SECRET = "homelab-repository"  # noqa: S105 - the Secret's name


def repository_secret(cfg: Any) -> Obj | None:
    """Argo CD's repository Secret for a private ``gitops.repo_url``, from ``gitops.repo_credentials``.

    Applied by the bootstrap, never rendered into Git: Argo CD needs it to read the
    repository at all, so it cannot come from that repository. An ssh or scp-like
    URL takes the secret as its private key; https takes it as the password (a
    token) of ``gitops.repo_username``.
    """
    ref = cfg.gitops.repo_credentials
    if ref is None:
        return None
    value = ref.location().resolve().reveal()
    url = cfg.gitops.repo_url
    ssh = url.startswith("ssh://") or "://" not in url
    fields = {"type": "git", "url": url}
    fields.update({"sshPrivateKey": value} if ssh else {"username": cfg.gitops.repo_username, "password": value})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": REPOSITORY_SECRET,
            "namespace": ARGOCD_NAMESPACE,
            "labels": {"argocd.argoproj.io/secret-type": "repository", "app.kubernetes.io/part-of": "homelab"},
        },
        "type": "Opaque",
        "data": {key: base64.b64encode(text.encode()).decode() for key, text in fields.items()},
    }


def bootstrap_plan(session: Any, objects: list[Obj] | None, wait: int, applications: bool = True) -> Plan:
    """What bootstrapping still has to do; ``objects`` is the install manifest (None: it could not be read).

    ``applications``: also wait for every Application (``inv up`` waits for them itself, after sealing).
    """
    cfg = session.cfg
    client = session.executor.kube
    kube, problem = deploy.cluster_for_planning(session)
    plan = Plan(f"bootstrap ArgoCD {cfg.gitops.argocd_version} into namespace {ARGOCD_NAMESPACE}")
    if problem:
        plan.add(Note(f"the cluster cannot be read ({problem}): planned as if it were empty"))
    if objects is None:
        source = install_url(cfg)
        plan.add(Note(f"ArgoCD's install manifest {source} is fetched when the bootstrap runs; its objects then"))
    crds = [o for o in objects or [] if o["kind"] == "CustomResourceDefinition"]
    rest = [namespace(ARGOCD_NAMESPACE)] + [o for o in objects or [] if o["kind"] != "CustomResourceDefinition"]
    if crds:
        plan.extend(deploy.crd_actions(kube, client, crds, "ArgoCD's CRDs"))
    plan.extend(deploy.applies(kube, rest, f"ArgoCD {cfg.gitops.argocd_version}, pinned"))
    credentials = repository_secret(cfg)
    if credentials is not None:
        plan.extend(deploy.applies(kube, [credentials], "read access to the private repository"))
    plan.extend(deploy.applies(kube, [root_application(cfg)], f"app of apps: {cfg.gitops.repo_url}"))
    if wait:
        names = [(ARGOCD_NAMESPACE, o["metadata"]["name"]) for o in rest if o["kind"] == "Deployment"]
        plan.add(
            Wait("ArgoCD's deployments to be Available", lambda: client().deployments_pending(names), wait),
            Wait("the root Application to be Healthy", lambda: root_health(client()), wait),
        )
        if applications:
            plan.add(applications_wait(session, wait))
    return plan


UNDECRYPTABLE_FIX = (
    "It was sealed for another key: compare the pinned certificate with the controller's (inv doctor, 'sealing "
    "key'); reseal it from the references (inv secrets.fetch-cert && inv secrets.seal && inv gitops.publish) "
    "or restore the controller's old key (inv backup.restore --component sealed-keys)"
)


def applications_wait(session: Any, wait: float) -> Wait:
    """Every Application Synced and Healthy; a SealedSecret no key decrypts stops the wait at once."""
    from homelab.gitops.local import published_files
    from homelab.gitops.tree import render
    from homelab.secrets import keys

    client = session.executor.kube
    ours = keys.sealed_data(published_files(session.cfg, render(session.cfg)).values())

    def check() -> str | None:
        keys.require_decryptable(client(), UNDECRYPTABLE_FIX, ours)
        return applications_pending(client())

    return Wait("every Application to be Synced and Healthy", check, wait)


def wait_applications(session: Any, wait: float) -> None:
    """``inv up``'s last step on a real cluster: the wait, in a plan of its own (printed in a dry run)."""
    session.executor.execute(Plan("Argo CD syncs the tree", [applications_wait(session, wait)]))


def refresh_applications(session: Any) -> None:
    """Ask Argo CD to read the branch now (it polls every three minutes): a refresh request on every Application."""
    from homelab.core.plan import Patch

    kube = session.executor.kube()
    body = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}
    apps = kube.list_objects("argoproj.io/v1alpha1", "Application", ARGOCD_NAMESPACE)
    patches = [
        Patch(
            "argoproj.io/v1alpha1",
            "Application",
            a["metadata"]["name"],
            ARGOCD_NAMESPACE,
            body,
            why="read the new commit",
        )
        for a in apps
    ]
    session.executor.execute(Plan("Argo CD reads the new commit now", list(patches)))


def bootstrap(session: Any, wait: int, applications: bool = True) -> bool:
    """Converge ArgoCD and the root Application; True when something changed."""
    cfg = session.cfg
    source = install_url(cfg)
    objects: list[Obj] | None = None
    if not (session.dry_run and "://" in source):  # a dry run downloads nothing
        try:
            objects = install_objects(source)
        except (OSError, urllib.error.URLError) as err:
            if not session.dry_run:
                raise HomelabError(f"cannot read ArgoCD's install manifest {source}: {err}") from None
    changed = converge(session.executor, lambda: bootstrap_plan(session, objects, wait, applications))
    if not session.dry_run:
        print("gitops: ArgoCD bootstrapped" if changed else "gitops: ArgoCD already bootstrapped; nothing to do")
    return changed
