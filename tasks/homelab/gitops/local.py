"""The GitOps path on the sandbox: the rendered tree is pushed to the sandbox's git daemon and its Argo CD syncs it.

The same root Application, child Applications, sync waves and sync options as
the real homelab's bootstrap; what differs is the render's one switch
(``tree.switch_differences``: no Helm charts, the ingress Service on its own)
and the repository, the sandbox's git daemon (``controllers.repo_url``) on the
branch ``main``. Around it the sandbox does what K3S and the charts would:
the components' CRDs are installed and each claim gets the volume
local-path-provisioner would make.

One plan: CRDs, the commit (only when the published tree differs), volumes,
the root Application, a refresh request for every Application when a new commit
was pushed (Argo CD polls a repository only every few minutes), then waits:
every rendered Application Synced to the pushed commit and Healthy, every
SealedSecret unsealed into its Secret, the ingress Service holding its pool
address.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from homelab.apps.render import GATEWAY_NAMESPACE
from homelab.config.schema import HomelabConfig
from homelab.core import locks
from homelab.core.converge import converge
from homelab.core.errors import HomelabError
from homelab.core.kube import Kube, load_manifests
from homelab.core.kube.apply import live_key
from homelab.core.paths import resolve_in_project
from homelab.core.plan import Action, Note, Patch, Plan, Run, Wait, WriteFile
from homelab.core.tools import require
from homelab.gitops import deploy, tree
from homelab.gitops.platform import ARGOCD_NAMESPACE, GATEWAY_SERVICE, root_application
from homelab.sandbox import controllers
from homelab.sandbox.cluster import volumes_for
from homelab.secrets import keys

BRANCH = "main"
APPLICATION = ("argoproj.io/v1alpha1", "Application")
SYNC_TIMEOUT = 600.0
COMMITTER = ("-c", "user.name=homelab", "-c", "user.email=homelab@localhost")


def sandbox_config(cfg: HomelabConfig, repo_url: str) -> HomelabConfig:
    """The config as the sandbox renders it: the repository is the sandbox's git daemon, on ``main``."""
    gitops = cfg.gitops.model_copy(update={"repo_url": repo_url, "revision": BRANCH})
    return cfg.model_copy(update={"gitops": gitops})


def published_files(cfg: HomelabConfig, rendered: tree.Rendered) -> dict[str, str]:
    """Path in the repository -> text: the rendered tree under ``gitops.path`` and the sealed secrets."""
    files = {f"{cfg.gitops.path}/{path}": rendered.text(path) for path in rendered.files}
    sealed = tree.sealed_repo_path(cfg)
    directory = resolve_in_project(cfg.secrets.sealed_dir)
    if sealed is not None and directory.is_dir():
        for path in sorted(directory.glob("*.yaml")):
            files[f"{sealed}/{path.name}"] = path.read_text()
    return files


# --- the commit ------------------------------------------------------------------------------


def git(*args: str, cwd: Path | None = None) -> str:
    """A read-only git command's output ('' when it fails: nothing there yet)."""
    done = subprocess.run(
        [require("git"), *args], cwd=cwd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def work_files(work: Path) -> dict[str, str]:
    if not work.is_dir():
        return {}
    found = {}
    for path in work.rglob("*"):
        relative = path.relative_to(work)
        if path.is_file() and relative.parts[0] != ".git":
            found[relative.as_posix()] = path.read_text(errors="replace")
    return found


def pushed_commit(repository: Path) -> str:
    return git("--git-dir", str(repository), "rev-parse", "--verify", "--quiet", f"refs/heads/{BRANCH}")


PUBLISH_LOCK = "publish.lock"  # beside the working copy, in the controllers' directory


def publish_actions(lay: controllers.Layout, files: dict[str, str]) -> list[Action]:
    """Write, commit and push what differs; nothing when the repository's ``main`` already holds ``files``.

    The working copy is the sandbox's own (``<state_dir>/controllers/publish``); the
    push is forced, as nothing but this writes to the sandbox's repository.
    """
    work = lay.root / "publish"
    gitc = (require("git"), "-C", str(work))
    actions: list[Action] = []
    left = locks.stale_git_locks(work, lay.repository)
    if left:  # a run killed mid-commit or mid-push; sync() holds PUBLISH_LOCK, so no git of ours runs there
        actions.append(Run(("rm", "-f", "--", *map(str, left)), why="git lock files a killed run left"))
    if not (work / ".git").is_dir():
        actions.append(Run((require("git"), "init", "--quiet", f"--initial-branch={BRANCH}", str(work)), why="new"))
    current = work_files(work)
    changed = sorted(path for path, text in files.items() if current.get(path) != text)
    stale = sorted(set(current) - set(files))
    dirty = bool(git("status", "--porcelain", cwd=work)) if work.is_dir() else False
    head = git("rev-parse", "--verify", "--quiet", "HEAD", cwd=work) if work.is_dir() else ""
    pushed = bool(head) and head == pushed_commit(lay.repository)
    if not (changed or stale or dirty or not pushed):
        return actions
    actions += [WriteFile(str(work / path), files[path], 0o644, why="rendered") for path in changed]
    actions += [Run(("rm", "--", str(work / path)), why="no longer rendered") for path in stale]
    if changed or stale or dirty or not head:
        actions.append(Run((*gitc, "add", "--all"), why="stage the tree"))
        message = f"homelab: rendered tree ({len(changed)} changed, {len(stale)} removed)"
        actions.append(Run((*gitc, *COMMITTER, "commit", "--quiet", "--allow-empty", "-m", message), why="commit"))
    push = (*gitc, "push", "--quiet", "--force", str(lay.repository), f"HEAD:refs/heads/{BRANCH}")
    actions.append(Run(push, why=f"publish to the sandbox's git daemon ({BRANCH})"))
    return actions


# --- what the cluster must show -------------------------------------------------------------


# Applications whose objects only a controller the sandbox does not run can make healthy: they must be
# Synced (every object accepted by the API server, against the real CRDs), their health is not awaited.
SYNCED_ONLY = {
    "cert-manager-config": "no cert-manager runs on the sandbox, so its Certificate and ClusterIssuers stay unissued",
}


def applications_pending(kube: Kube, names: list[str], commit: Callable[[], str]) -> str | None:
    """None once every named Application exists, is Synced to ``commit()`` and Healthy; else the first few not.

    The Applications in ``SYNCED_ONLY`` need only be Synced.
    """
    want = commit()
    live = {a["metadata"]["name"]: a for a in kube.list_objects(*APPLICATION, ARGOCD_NAMESPACE)}
    pending = []
    for name in names:
        status = (live.get(name) or {}).get("status") or {}
        sync = status.get("sync") or {}
        health = (status.get("health") or {}).get("status", "Unknown")
        if name in SYNCED_ONLY and health in ("Progressing", "Missing"):
            health = "Healthy"
        state = f"{sync.get('status', 'Unknown')}/{health}"
        if name not in live:
            pending.append(f"{name} not created yet")
        elif state != "Synced/Healthy" or sync.get("revision") != want:
            operation = status.get("operationState") or {}
            failed = operation.get("message", "") if operation.get("phase") in ("Failed", "Error") else ""
            pending.append(f"{name} {state}" + (f" (last sync: {failed[:160]})" if failed else ""))
    if not pending:
        return None
    more = f" (+{len(pending) - 3} more)" if len(pending) > 3 else ""
    return "; ".join(pending[:3]) + more


def sealed_pending(kube: Kube, sealed: list[tuple[str, str]]) -> str | None:
    """None once every SealedSecret (namespace, name) has its Secret."""
    missing = [f"{ns}/{name}" for ns, name in sealed if kube.get("v1", "Secret", name, ns) is None]
    return f"no Secret yet for SealedSecret {', '.join(missing)}" if missing else None


def ingress_address_pending(kube: Kube, address: str) -> str | None:
    """None once the ingress controller's Service holds ``address`` in its LoadBalancer status."""
    live = kube.get("v1", "Service", GATEWAY_SERVICE, GATEWAY_NAMESPACE) or {}
    found = [e.get("ip") for e in ((live.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
    return None if address in found else f"Service {GATEWAY_NAMESPACE}/{GATEWAY_SERVICE} has {found or 'no address'}"


def sealed_secrets_in(files: dict[str, str]) -> list[tuple[str, str]]:
    found = []
    for text in files.values():
        for obj in load_manifests([text]):
            if obj.get("kind") == "SealedSecret":
                found.append((obj["metadata"].get("namespace", "default"), obj["metadata"]["name"]))
    return found


# --- the plan --------------------------------------------------------------------------------


def freed_volumes(kube: Kube, volumes: list[dict[str, Any]]) -> list[Patch]:
    """Free each volume whose claim was deleted (an app dropped, then added back) for a new claim of that name.

    local-path-provisioner would make a new volume; here the old one is reused:
    without its bound claim's uid it is Available again to the claim it names.
    """
    patches = []
    index = kube.live_index(volumes)  # one LIST, not a GET per volume: this runs on every no-op `inv up`
    for volume in volumes:
        live = index.get(live_key(volume)) or {}
        phase = (live.get("status") or {}).get("phase")
        if phase in ("Released", "Failed") and ((live.get("spec") or {}).get("claimRef") or {}).get("uid"):
            body = {"spec": {"claimRef": {"uid": None, "resourceVersion": None}}}
            why = f"{phase}: its claim was deleted; free it for the claim of that name"
            patches.append(Patch("v1", "PersistentVolume", volume["metadata"]["name"], None, body, why=why))
    return patches


def sync_plan(session: Any, executor: Any, repo_url: str, wait: float = SYNC_TIMEOUT) -> Plan:
    cfg = sandbox_config(session.cfg, repo_url)
    rendered = tree.render(cfg, local_controllers=True)
    files = published_files(cfg, rendered)
    lay = controllers.layout(session)
    client = executor.kube
    kube = client()
    plan = Plan(f"GitOps on the sandbox: Argo CD syncs {repo_url} ({BRANCH})")
    plan.extend(Note(f"sandbox switch: {line}") for line in tree.switch_differences(cfg))
    plan.extend(Note(f"sandbox: {name} is awaited Synced only: {why}") for name, why in SYNCED_ONLY.items())
    plan.extend(deploy.crd_actions(kube, client, deploy.component_crds(), "the components' CRDs"))
    publish = publish_actions(lay, files)
    plan.extend(publish)
    claims = [o for path in rendered.files for o in rendered.files[path] if o["kind"] == "PersistentVolumeClaim"]
    volumes = volumes_for(claims)
    plan.extend(deploy.applies(kube, volumes, "the volumes local-path-provisioner would make"))
    plan.extend(freed_volumes(kube, volumes))
    root = root_application(cfg)
    plan.extend(deploy.applies(kube, [root], f"app of apps: {repo_url}"))
    if publish:
        refresh = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}
        for app in kube.list_objects(*APPLICATION, ARGOCD_NAMESPACE):
            name = app["metadata"]["name"]
            plan.add(Patch(*APPLICATION, name, ARGOCD_NAMESPACE, refresh, why="read the new commit now"))
    return plan.extend(waits(cfg, rendered, files, lay, client, wait))


UNDECRYPTABLE_FIX = (
    "inv up seals what the config's references and the plaintext file name with the running controller's "
    "certificate; a file sealed some other way must be sealed again (inv secrets.seal NAME) or removed from "
    "secrets.sealed_dir"
)


def waits(
    cfg: HomelabConfig,
    rendered: tree.Rendered,
    files: dict[str, str],
    lay: controllers.Layout,
    client: Callable[[], Kube],
    timeout: float,
) -> list[Wait]:
    """Every Application Synced to the pushed commit and Healthy, SealedSecrets unsealed, the ingress address held."""
    names = sorted(tree.applications(rendered))

    def commit() -> str:  # read when the wait runs, after the push
        return pushed_commit(lay.repository)

    ours = keys.sealed_data(files.values())

    def hopeless() -> str | None:  # a SealedSecret no key decrypts never heals: stop now, not after the timeout
        keys.require_decryptable(client(), UNDECRYPTABLE_FIX, ours)
        return None

    found = [
        Wait(
            f"{len(names)} Applications to be Synced and Healthy",
            lambda: hopeless() or applications_pending(client(), names, commit),
            timeout,
            2.0,
        )
    ]
    sealed = sealed_secrets_in(files)
    if sealed:
        found.append(
            Wait(
                f"{len(sealed)} SealedSecrets to be unsealed",
                lambda: hopeless() or sealed_pending(client(), sealed),
                120,
            )
        )
    if cfg.ingress.enabled and cfg.metallb.enabled:
        address = cfg.ingress.load_balancer_ip
        held = Wait(f"the ingress Service to hold {address}", lambda: ingress_address_pending(client(), address), 120)
        found.append(held)
    return found


def sync(session: Any) -> bool:
    """Publish and let Argo CD sync; True when something changed. A dry run before the sandbox runs: notes."""
    executor = session.executor
    try:
        url = controllers.repo_url(session)
        kube_ok = executor.kube().ready(timeout=5)
    except Exception:  # any reason the sandbox cannot be read yet: not running
        url, kube_ok = "", False
    if not (url and kube_ok):
        if executor.dry_run:
            lines = tree.switch_differences(session.cfg)
            notes: list[Action] = [Note(f"sandbox switch: {line}") for line in lines]
            notes.append(Note("then: publish the rendered tree to the sandbox's git daemon; Argo CD syncs it"))
            executor.execute(Plan("GitOps on the sandbox", notes))
            return False
        raise HomelabError("the sandbox's API server or git daemon is not running; run inv sandbox.up first")
    if executor.dry_run:  # only reads the working copy
        return converge(executor, lambda: sync_plan(session, executor, url))
    lock = controllers.layout(session).root / PUBLISH_LOCK
    with locks.exclusive(lock, "inv run publishing to the sandbox's git daemon"):  # makes git's lock files stale
        return converge(executor, lambda: sync_plan(session, executor, url))


def status(session: Any) -> tuple[bool, str]:
    """For ``inv status``: is every Application of the sandbox's tree Synced to the pushed commit and Healthy."""
    try:
        url = controllers.repo_url(session)
        cfg = sandbox_config(session.cfg, url)
        names = sorted(tree.applications(tree.render(cfg, local_controllers=True)))
        commit = pushed_commit(controllers.layout(session).repository)
        pending = applications_pending(session.executor.kube(), names, lambda: commit)
    except HomelabError as err:
        return False, str(err).splitlines()[0]
    if pending:
        return False, f"Argo CD: {pending}"
    return True, f"Argo CD: {len(names)} Applications synced to {commit[:12]} and healthy"
