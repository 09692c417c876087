"""`inv up --target sandbox` through the real Argo CD, Sealed Secrets and MetalLB controllers.

A sandbox of its own (the controllers reconcile whatever they see), in a project
directory of its own (``HOMELAB_ROOT``), so sealed secrets live under its
``k8s/sealed`` as they would in a user's checkout. Each test drives the toolkit
as a user would (config edits, ``inv up``) and then looks at what the
controllers did.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from backup_support import start_receiver
from invoke import Context
from sandbox_project import SandboxProject as Lab

from helpers import loopback_data, run_cli
from homelab.apps import exposure
from homelab.apps.render import GATEWAY_NAMESPACE
from homelab.core.kube import Kube
from homelab.core.kube.waits import wait_for
from homelab.core.paths import cache_dir
from homelab.core.session import Session
from homelab.core.tools import require
from homelab.gitops import bootstrap, local, platform, tree
from homelab.gitops.platform import ARGOCD_NAMESPACE, GATEWAY_SERVICE
from homelab.sandbox import cluster, controllers

pytestmark = pytest.mark.integration

APPLICATION = ("argoproj.io/v1alpha1", "Application")
DEFAULT_RETRIES = 5  # what Argo CD v3 gives an automated sync without a retry policy (controller/appcontroller.go)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("gitops-project")
    (root / "config").mkdir()
    data = loopback_data()
    data.update({"name": "gl", "state_dir": str(root / "state")})
    data["media"]["enabled"] = True  # the shared hostPath and its node pinning go through the real scheduler too
    data["secrets"] = {"sealed_dir": "k8s/sealed", "plaintext_file": "config/secrets.local.yaml"}
    (root / "restic-password").write_text("correct horse battery staple\n")
    (root / "restic-password").chmod(0o600)
    receiver, server = start_receiver()  # stands in for Telegram: nothing leaves loopback
    data["backup"] = {
        "repository": str(root / "restic"),
        "password": {"file": str(root / "restic-password")},
        "components": ["sealed-keys"],
        "notify_api": receiver.url,
    }
    # Every secret the cluster needs, given by reference as a user would: inv up seals them itself.
    (root / "tunnel.json").write_text(json.dumps({"TunnelID": "not-a-real-tunnel", "TunnelSecret": TUNNEL_SECRET}))
    (root / "tunnel.json").chmod(0o600)
    data["cloudflare"] = {**data.get("cloudflare", {}), "tunnel_credentials": {"file": str(root / "tunnel.json")}}
    (root / "telegram-bot-token").write_text(BOT_TOKEN + "\n")
    (root / "telegram-bot-token").chmod(0o600)
    data["monitoring"]["telegram"]["bot_token"] = {"file": str(root / "telegram-bot-token")}
    config = root / "config" / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {"HOMELAB_CONFIG": str(config), "HOMELAB_ROOT": str(root), **REFERENCED}
    try:
        first = run_cli(["up", "--target", "sandbox"], env, timeout=900)
        assert first.code == 0, first.output
        session = Session(Context(), config_path=config, out=lambda _: None)
        paths = cluster.paths_for(session.cfg, session.state_dir)
        yield Lab(root, config, env, session, Kube(paths.kubeconfig, paths.context))
    finally:
        run_cli(["sandbox.down"], env, timeout=300)
        server.shutdown()


TUNNEL_SECRET = "tunnel-secret-" + uuid.uuid4().hex
BOT_TOKEN = "123456789:" + uuid.uuid4().hex
REFERENCED = {  # the env: references of the reference config, with values only this run knows
    "CLOUDFLARE_API_TOKEN": "cf-token-" + uuid.uuid4().hex,
    "VAULTWARDEN_ADMIN_TOKEN": "admin-" + uuid.uuid4().hex,
}


def application_state(kube: Kube, name: str) -> tuple[str, str, str]:
    status = (kube.get(*APPLICATION, name, ARGOCD_NAMESPACE) or {}).get("status") or {}
    sync = status.get("sync") or {}
    return sync.get("status", ""), (status.get("health") or {}).get("status", ""), sync.get("revision", "")


GATEWAY_API = "gateway.networking.k8s.io/v1"


def condition(status: dict, kind: str) -> str:
    """The status (True, False, Unknown) of the condition ``kind`` in a Gateway API status block; "" when absent."""
    return next((c["status"] for c in status.get("conditions") or [] if c["type"] == kind), "")


def test_up_brings_every_application_synced_and_healthy_at_the_pushed_commit(lab: Lab) -> None:
    rendered = tree.render(local.sandbox_config(lab.session.cfg, controllers.repo_url(lab.session)), True)
    names = sorted(tree.applications(rendered))
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
    address = lab.session.cfg.ingress.load_balancer_ip
    service = lab.kube.get("v1", "Service", GATEWAY_SERVICE, GATEWAY_NAMESPACE)
    assert [e["ip"] for e in service["status"]["loadBalancer"]["ingress"]] == [address]
    # The real Traefik programmed the Gateway with MetalLB's address and accepted every route.
    gateway = lab.kube.get(GATEWAY_API, "Gateway", "homelab", GATEWAY_NAMESPACE)
    assert condition(gateway["status"], "Programmed") == "True", gateway["status"]
    assert gateway["status"]["addresses"] == [{"type": "IPAddress", "value": address}]
    assert {listener["name"]: condition(listener, "Programmed") for listener in gateway["status"]["listeners"]} == {
        "web": "True",
        "websecure": "True",
    }
    routed = [(name, name) for name in exposure.routed_apps(lab.session.cfg)]  # Grafana's: not on the sandbox
    for name, namespace in routed:
        route = lab.kube.get(GATEWAY_API, "HTTPRoute", name, namespace)
        [parent] = route["status"]["parents"]
        assert parent["controllerName"] == "traefik.io/gateway-controller", name
        assert condition(parent, "Accepted") == "True", (name, parent)
        assert condition(parent, "ResolvedRefs") == "True", (name, parent)
    again = lab.up()
    assert "up: nothing to do" in again, again


def test_inv_up_seals_every_secret_the_cluster_needs_from_the_config_references(lab: Lab) -> None:
    """No plaintext file: each Secret the tree references is sealed from its reference and unsealed in place."""
    expected = {
        ("cert-manager", "cloudflare-api-token"): {"api-token": REFERENCED["CLOUDFLARE_API_TOKEN"]},
        ("monitoring", "alertmanager-telegram"): {"bot-token": BOT_TOKEN},
        ("vaultwarden", "vaultwarden-secrets"): {"ADMIN_TOKEN": REFERENCED["VAULTWARDEN_ADMIN_TOKEN"]},
        ("cloudflared", "cloudflared-credentials"): {"credentials.json": (lab.root / "tunnel.json").read_text()},
    }
    for (namespace, name), data in expected.items():
        sealed = lab.root / "k8s" / "sealed" / f"{namespace}-{name}.yaml"
        assert sealed.is_file(), sealed
        assert not any(value in sealed.read_text() for value in data.values())
        secret = lab.kube.get("v1", "Secret", name, namespace)
        assert secret is not None, f"{namespace}/{name} was not unsealed"
        assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == data
    doctor = run_cli(["doctor", "--json", "--target", "sandbox"], lab.env, timeout=300)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert checks["references"]["status"] == "ok", checks["references"]
    assert not any(value in doctor.output for value in [*REFERENCED.values(), BOT_TOKEN])


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


def test_doctor_and_status_see_argo_cd_the_load_balancer_and_the_processes(lab: Lab) -> None:
    done = run_cli(["doctor", "--json", "--target", "sandbox"], lab.env, timeout=300)
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert checks["argocd"]["status"] == "ok", checks["argocd"]
    rendered = tree.render(local.sandbox_config(lab.session.cfg, controllers.repo_url(lab.session)), True)
    count = len(tree.applications(rendered))  # the root and every Application of the sandbox's tree
    assert checks["argocd"]["detail"].startswith(f"{count} Applications synced and healthy"), checks["argocd"]
    assert checks["sandbox controllers"]["status"] == "ok", checks["sandbox controllers"]
    edge = checks[f"load balancer {GATEWAY_NAMESPACE}/{GATEWAY_SERVICE}"]
    assert edge == {**edge, "status": "ok", "detail": lab.session.cfg.ingress.load_balancer_ip}
    status = run_cli(["status", "--target", "sandbox"], lab.env, timeout=300)
    assert status.code == 0, status.output
    assert f"Argo CD: {count} Applications synced to" in status.stdout, status.stdout


def seal_one(lab: Lab, name: str, namespace: str, data: dict[str, str]) -> None:
    """Write one secret to the plaintext file, pin the controller's certificate and seal it, as a user would."""
    plaintext = lab.root / "config" / "secrets.local.yaml"
    plaintext.write_text(yaml.safe_dump({"secrets": [{"name": name, "namespace": namespace, "data": data}]}))
    plaintext.chmod(0o600)
    for step in (["secrets.fetch-cert", "--target", "sandbox"], ["secrets.seal", "--name", name]):
        done = run_cli(step, lab.env, timeout=300)
        assert done.code == 0, done.output


def unsealed_value(lab: Lab, name: str, namespace: str, key: str) -> str | None:
    secret = lab.kube.get("v1", "Secret", name, namespace)
    return base64.b64decode(secret["data"][key]).decode() if secret else None


def test_a_lost_key_restored_from_its_backup_decrypts_what_was_sealed_before(lab: Lab) -> None:
    """Keys backed up, lost (the controller starts over with a new key), restored: old SealedSecrets decrypt again."""
    value = f"v-{uuid.uuid4().hex[:8]}"
    seal_one(lab, "restore-probe", "homepage", {"token": value})
    lab.up()
    assert unsealed_value(lab, "restore-probe", "homepage", "token") == value
    backed_up = run_cli(["secrets.backup-key"], lab.env, timeout=300)
    assert backed_up.code == 0, backed_up.output

    ns = lab.session.cfg.secrets.controller_namespace
    label = "sealedsecrets.bitnami.com/sealed-secrets-key"
    layout = controllers.layout(lab.session)
    pid = controllers.live_pid(layout, "sealed-secrets-controller")
    assert pid is not None
    # Stopped first: a running controller still holds the keys in memory and writes a deleted Secret again.
    os.killpg(pid, signal.SIGTERM)
    wait_for(
        "the controller to exit",
        lambda: "running" if controllers.live_pid(layout, "sealed-secrets-controller") else None,
        30,
    )
    for key in lab.kube.list_objects("v1", "Secret", ns, label_selector=label):
        lab.kube.delete("v1", "Secret", key["metadata"]["name"], ns)
    lab.kube.delete("v1", "Secret", "restore-probe", "homepage")
    restarted = run_cli(["sandbox.up"], lab.env, timeout=300)
    assert restarted.code == 0, restarted.output
    new_keys = lab.kube.list_objects("v1", "Secret", ns, label_selector=label)
    assert len(new_keys) == 1, "the controller started over with one new key"

    def refused() -> str | None:
        live = lab.kube.get("bitnami.com/v1alpha1", "SealedSecret", "restore-probe", "homepage") or {}
        conditions = (live.get("status") or {}).get("conditions") or []
        return None if any(c.get("status") == "False" for c in conditions) else f"conditions {conditions}"

    wait_for("the new key to fail on the old SealedSecret", refused, 120)
    assert lab.kube.get("v1", "Secret", "restore-probe", "homepage") is None

    restored = run_cli(["backup.restore", "--component", "sealed-keys", "--yes"], lab.env, timeout=600)
    assert restored.code == 0, restored.output
    wait_for(
        "the restored key to decrypt the old SealedSecret",
        lambda: None if unsealed_value(lab, "restore-probe", "homepage", "token") == value else "no Secret yet",
        120,
    )


def test_dropping_an_app_and_an_env_var_from_the_config_reaches_the_cluster(lab: Lab) -> None:
    """Prune (an app dropped) and field removal (an env var dropped) on the GitOps path, through `inv up`.

    With the lock files an `inv up` killed mid-commit and mid-push leaves in the working copy and
    the sandbox's repository: git refuses to commit or push past them, so the next run removes them.
    """
    webui = lab.kube.get("apps/v1", "Deployment", "open-webui", "open-webui")
    assert webui["spec"]["template"]["spec"]["containers"][0].get("env"), "the reference config sets an env var"
    assert lab.kube.get("apps/v1", "Deployment", "filebrowser", "filebrowser") is not None
    original = lab.data()
    data = lab.data()
    del data["apps"]["filebrowser"]
    del data["apps"]["open-webui"]["env"]
    lab.write(data)
    lay = controllers.layout(lab.session)
    left = [lay.root / "publish" / ".git" / "index.lock", lay.repository / "refs" / "heads" / "main.lock"]
    for path in left:
        path.write_text("")
    try:
        out = lab.up()
        [removal] = [line for line in out.splitlines() if "run: rm -f -- " in line]
        assert all(str(path) in removal for path in left), removal
        assert not any(path.exists() for path in left)
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


def test_a_dropped_apps_claim_and_volume_stay_and_are_named_until_delete_data(lab: Lab) -> None:
    """Argo CD prunes the app (automated sync with prune) but not its claim; --delete-data removes it, volume too."""
    claim = lab.kube.get("v1", "PersistentVolumeClaim", "filebrowser-data", "filebrowser")
    volume = claim["spec"]["volumeName"]
    path = lab.kube.get("v1", "PersistentVolume", volume)["spec"]["hostPath"]["path"]
    original = lab.data()
    data = lab.data()
    del data["apps"]["filebrowser"]
    lab.write(data)
    try:
        out = lab.up()
        wait_for(
            "Argo CD to delete the dropped app's Application and Deployment",
            lambda: (
                None
                if lab.kube.get(*APPLICATION, "app-filebrowser", ARGOCD_NAMESPACE) is None
                and lab.kube.get("apps/v1", "Deployment", "filebrowser", "filebrowser") is None
                else "live"
            ),
            180,
        )
        kept = (
            "kept: claim filebrowser/filebrowser-data (app filebrowser is no longer in the config; its data stays in "
            f"volume {volume} at {path}; inv up --delete-data to remove it)"
        )
        assert kept in out, out
        claim = lab.kube.get("v1", "PersistentVolumeClaim", "filebrowser-data", "filebrowser")
        assert claim["status"]["phase"] == "Bound" and not claim["metadata"].get("deletionTimestamp")
        assert lab.kube.get("v1", "PersistentVolume", volume)["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        planned = run_cli(["up", "--target", "sandbox", "--delete-data", "--dry-run"], lab.env, timeout=600)
        assert planned.code == 0, planned.output
        assert "delete PersistentVolumeClaim filebrowser/filebrowser-data" in planned.stdout, planned.stdout
        assert lab.kube.get("v1", "PersistentVolumeClaim", "filebrowser-data", "filebrowser") is not None
        removed = run_cli(["up", "--target", "sandbox", "--delete-data", "--yes"], lab.env, timeout=900)
        assert removed.code == 0, removed.output
        assert "kept: claim" not in removed.stdout, removed.stdout
        assert lab.kube.get("v1", "PersistentVolumeClaim", "filebrowser-data", "filebrowser") is None
        assert lab.kube.get("v1", "PersistentVolume", volume) is None
        wait_for(
            "the dropped app's namespace to be gone",
            lambda: None if lab.kube.get("v1", "Namespace", "filebrowser") is None else "live",
            120,
        )
    finally:
        lab.write(original)
        lab.up()
    assert lab.kube.get("apps/v1", "Deployment", "filebrowser", "filebrowser") is not None


def test_an_app_that_drops_its_storage_keeps_its_claim_and_stays_synced(lab: Lab) -> None:
    """The claim, no longer rendered but kept (Prune=false), does not hold the Application OutOfSync."""
    original = lab.data()
    data = lab.data()
    data["apps"]["qbittorrent"]["storage"] = None
    lab.write(data)
    try:
        out = lab.up()  # waits until every Application is Synced and Healthy
        assert "kept: claim qbittorrent/qbittorrent-data (app qbittorrent no longer has storage" in out, out
        assert application_state(lab.kube, "app-qbittorrent")[:2] == ("Synced", "Healthy")
        assert lab.kube.get("v1", "PersistentVolumeClaim", "qbittorrent-data", "qbittorrent") is not None
    finally:
        lab.write(original)
        lab.up()
    assert "kept: claim" not in lab.up()


def test_an_up_while_another_run_publishes_stops_naming_it_and_changes_nothing(lab: Lab) -> None:
    lock = controllers.layout(lab.session).root / local.PUBLISH_LOCK
    commit = local.pushed_commit(controllers.layout(lab.session).repository)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        done = run_cli(["up", "--target", "sandbox"], lab.env, timeout=300)
    assert done.code == 11, done.output
    assert f"another inv run publishing to the sandbox's git daemon holds {lock} (pid 4242)" in done.stderr
    assert local.pushed_commit(controllers.layout(lab.session).repository) == commit


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
    """The rendered sync policy lets a child whose CRD appears late recover, past Argo CD's default of 5 retries."""
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

        def retried_past_the_default() -> str | None:
            state = (lab.kube.get(*APPLICATION, branch, ARGOCD_NAMESPACE) or {}).get("status") or {}
            op = state.get("operationState") or {}
            count = op.get("retryCount", 0)
            return (
                None if count > DEFAULT_RETRIES else f"{op.get('phase')}, retry {count}: {op.get('message', '')[:120]}"
            )

        # About two minutes with the rendered backoff (5 s doubling up to 30 s); Argo CD's default stops at 5.
        wait_for("the sync to fail on the missing kind more than 5 times", retried_past_the_default, 300)
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


def publish_branch(lab: Lab, branch: str, files: dict[str, str], tmp: Path) -> None:
    """Commit ``files`` (path: text) as the branch ``branch`` of the sandbox's repository."""
    work = tmp / branch
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git("init", "--quiet", f"--initial-branch={branch}", cwd=work)
    git("add", ".", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "--quiet", "-m", branch, cwd=work)
    git("push", "--quiet", str(controllers.layout(lab.session).repository), f"HEAD:refs/heads/{branch}", cwd=work)


def operation_message(lab: Lab, name: str) -> str:
    """What Argo CD says about the Application: its conditions (a comparison error), its last sync and resources."""
    status = (lab.kube.get(*APPLICATION, name, ARGOCD_NAMESPACE) or {}).get("status") or {}
    operation = status.get("operationState") or {}
    resources = ((operation.get("syncResult") or {}).get("resources")) or []
    conditions = [c.get("message", "") for c in status.get("conditions") or []]
    return " ".join([*conditions, operation.get("message", ""), *(r.get("message", "") for r in resources)])


def test_argo_cd_takes_over_its_bootstrapped_install_without_an_immutable_field_error(lab: Lab, tmp_path: Path) -> None:
    """gitops.bootstrap's objects, then the rendered self-managing Application, synced by the real Argo CD.

    First the failure the Helm chart's source caused, shown on one Deployment: the chart's
    selector adds ``app.kubernetes.io/instance``, and a selector cannot change.
    """
    cfg = lab.session.cfg
    manifest = cache_dir() / "manifests" / f"argocd-install-{cfg.gitops.argocd_version}.yaml"
    assert manifest.is_file(), "scripts/get-binaries.sh crds provides it"
    installed = bootstrap.install_objects(str(manifest))
    lab.kube.apply(installed)  # what gitops.bootstrap applies on the real homelab
    rendered = tree.applications(tree.render(cfg))["argocd"]
    source = rendered["spec"]["source"]
    in_repo = f"{source['path']}/{source['directory']['include']}"
    local_url = controllers.repo_url(lab.session)

    [server] = [o for o in installed if o["kind"] == "Deployment" and o["metadata"]["name"] == "argocd-server"]
    chart_like = {k: v for k, v in server.items() if k != "status"}
    chart_like["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] = "argocd"
    chart_like["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = "argocd"
    publish_branch(lab, "chart-like", {in_repo: yaml.safe_dump(chart_like)}, tmp_path)
    publish_branch(lab, "self-managed", {in_repo: manifest.read_text()}, tmp_path)
    apps = {}
    for name, branch in (("argocd-chart-like", "chart-like"), ("argocd", "self-managed")):
        app = yaml.safe_load(yaml.safe_dump(rendered))
        app["metadata"]["name"] = name
        app["spec"]["source"].update({"repoURL": local_url, "targetRevision": branch})
        apps[name] = app
    try:
        lab.kube.apply([apps["argocd-chart-like"]])

        def refused() -> str | None:
            message = operation_message(lab, "argocd-chart-like")
            return None if "spec.selector" in message and "field is immutable" in message else message[:300]

        wait_for("the chart-like selector to be refused", refused, 180)
        lab.kube.delete(*APPLICATION, "argocd-chart-like", ARGOCD_NAMESPACE)
        lab.kube.apply([apps["argocd"]])

        def synced() -> str | None:
            sync, health, _ = application_state(lab.kube, "argocd")
            message = operation_message(lab, "argocd")
            assert "immutable" not in message, message
            return None if (sync, health) == ("Synced", "Healthy") else f"{sync}/{health} {message[:200]}"

        wait_for("Argo CD to take over its own install", synced, 300)
    finally:
        for name in apps:
            lab.kube.delete(*APPLICATION, name, ARGOCD_NAMESPACE)  # no finalizer: Argo CD's objects stay


def foreign_certificate(directory: Path) -> Path:
    """A certificate no controller of this cluster holds the key of (a rebuilt cluster's old one, say)."""
    from certs import self_signed
    from cryptography.hazmat.primitives import serialization

    _, cert = self_signed("another-controller")
    path = directory / "foreign.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_secret_sealed_for_another_key_stops_the_wait_at_once_naming_it_and_the_fix(lab: Lab, tmp_path: Path) -> None:
    """The controller says "no key could decrypt secret": the wait stops with that, not after its 600 s timeout."""
    secret = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "foreign-probe", "namespace": "homepage"},
            "stringData": {"token": "never-decrypted"},
        }
    )
    argv = [require("kubeseal"), "--cert", str(foreign_certificate(tmp_path)), "--scope", "strict", "--format", "yaml"]
    sealed = subprocess.run(argv, input=secret, capture_output=True, text=True, check=True).stdout
    probe = lab.root / "k8s" / "sealed" / "homepage-foreign-probe.yaml"
    probe.write_text(sealed)
    try:
        done = run_cli(["up", "--target", "sandbox"], lab.env, timeout=900)
        assert done.code == 1, done.output
        assert (
            "the Sealed Secrets controller cannot decrypt homepage/foreign-probe: no key could decrypt" in done.output
        )
        assert "inv secrets.seal NAME" in done.output and "timed out" not in done.output
        assert "Traceback" not in done.output
    finally:
        probe.unlink()
    lab.up()
    assert lab.kube.get("bitnami.com/v1alpha1", "SealedSecret", "foreign-probe", "homepage") is None  # pruned


FROM_REFERENCES = {
    "cert-manager-cloudflare-api-token",
    "monitoring-alertmanager-telegram",
    "vaultwarden-vaultwarden-secrets",
    "cloudflared-cloudflared-credentials",
}


def test_up_down_then_up_again_reseals_for_the_new_controller_and_ends_synced_and_healthy(lab: Lab) -> None:
    """The sandbox's key dies with it: the next ``inv up`` re-pins and reseals what it can, names what it cannot
    (a SealedSecret whose value is nowhere any more) and stops at it; without that file it ends Synced and
    Healthy with every Secret unsealed. Runs last: it replaces the module's sandbox."""
    plaintext = lab.root / "config" / "secrets.local.yaml"
    for sealed in (lab.root / "k8s" / "sealed").glob("*.yaml"):  # what earlier tests left: sealed, source gone
        if sealed.stem not in FROM_REFERENCES and not sealed.name.startswith("_"):
            sealed.unlink()
    seal_one(lab, "orphan-probe", "homepage", {"token": "its value is only in this test"})
    plaintext.write_text(yaml.safe_dump({"secrets": []}))  # the value is gone: this file cannot be sealed again
    pinned = lab.root / "state" / "sealed-secrets-cert.pem"
    before = pinned.read_text()
    down = run_cli(["down", "--target", "sandbox", "--yes"], lab.env, timeout=600)
    assert down.code == 0, down.output
    stopped = run_cli(["up", "--target", "sandbox"], lab.env, timeout=900)
    assert stopped.code == 1, stopped.output
    assert "is none of the sandbox controller's keys: re-pin, reseal" in stopped.output, stopped.output
    assert "not resealed, neither a reference nor the plaintext file holds their values: homepage-orphan-probe" in (
        stopped.output
    )
    assert "cannot decrypt homepage/orphan-probe: no key could decrypt" in stopped.output
    assert pinned.read_text() != before
    (lab.root / "k8s" / "sealed" / "homepage-orphan-probe.yaml").unlink()
    lab.up()
    paths = cluster.paths_for(lab.session.cfg, lab.session.state_dir)
    lab.kube = Kube(paths.kubeconfig, paths.context)  # a new sandbox: new ports in a new kubeconfig
    for (namespace, name), key in {
        ("cert-manager", "cloudflare-api-token"): "api-token",
        ("vaultwarden", "vaultwarden-secrets"): "ADMIN_TOKEN",
        ("cloudflared", "cloudflared-credentials"): "credentials.json",
    }.items():
        assert unsealed_value(lab, name, namespace, key), f"{namespace}/{name} was not unsealed"
    doctor = run_cli(["doctor", "--json", "--target", "sandbox"], lab.env, timeout=300)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert checks["sealing key"]["status"] == "ok", checks["sealing key"]
    assert "sealed secrets" not in checks
