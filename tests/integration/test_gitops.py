"""The rendered platform and apps, applied to a sandbox with the components' real CRDs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Context

from helpers import REPO, loopback_data, run_cli
from homelab.core import cluster
from homelab.core.kube import Kube, KubeError, object_ref
from homelab.core.kube.apply import live_key
from homelab.core.session import Session
from homelab.core.tools import find
from homelab.gitops import deploy, tree
from homelab.gitops.tasks import apply_direct
from homelab.sandbox import cluster as sandbox

pytestmark = pytest.mark.integration


def write_config(directory: Path, data: dict[str, Any]) -> Path:
    path = directory / "homelab.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Session, Path]]:
    """A sandbox of its own with everything rendered from the reference catalog applied."""
    base = tmp_path_factory.mktemp("platform")
    data = loopback_data()
    data["name"] = "platform"
    data["state_dir"] = str(base / "state")
    config = write_config(base, data)
    session = Session(Context(), config_path=config, out=lambda _: None)
    sandbox.ensure_up(session)
    apply_direct(session)
    yield session, config
    sandbox.tear_down(session)


@pytest.fixture(scope="module")
def kube(platform: tuple[Session, Path]) -> Kube:
    return cluster.connect(platform[0])


def test_render_is_deterministic_and_check_finds_stale_and_changed_files(tmp_path: Path) -> None:
    cfg = Session(Context(), config_path=write_config(tmp_path, loopback_data()), out=lambda _: None).cfg
    first, second = tree.render(cfg), tree.render(cfg)
    assert {p: first.text(p) for p in first.files} == {p: second.text(p) for p in second.files}
    root = tmp_path / "k8s"
    assert not tree.write(first, root).clean
    assert tree.drift(first, root).clean
    (root / "apps" / "plex" / "app.yaml").write_text(tree.HEADER + "edited: true\n")
    (root / "apps" / "gone").mkdir()
    (root / "apps" / "gone" / "app.yaml").write_text(tree.HEADER)
    (root / "apps" / "plex" / "sealed-secret.yaml").write_text("kind: SealedSecret\n")
    found = tree.drift(first, root)
    assert found.changed == ["apps/plex/app.yaml"] and found.stale == ["apps/gone/app.yaml"]
    tree.write(first, root)
    assert (root / "apps" / "plex" / "sealed-secret.yaml").exists(), "files the renderer does not own are kept"
    assert tree.drift(first, root).clean


def test_committed_k8s_tree_matches_the_reference_config() -> None:
    result = run_cli(["gitops.render", "--check"], {"HOMELAB_CONFIG": str(REPO / "config" / "homelab.yaml")})
    assert result.code == 0, result.output


def test_every_object_applies_with_the_real_crds_and_resending_them_all_writes_nothing(
    platform: tuple[Session, Path], kube: Kube, applies_sent: list[str]
) -> None:
    """Past the client-side skip: the API server itself finds nothing to change in any object."""
    objects = deploy.component_crds() + tree.objects_in_apply_order(tree.render(platform[0].cfg))
    kinds = {o["kind"] for o in objects}
    assert {"Application", "IPAddressPool", "L2Advertisement", "ClusterIssuer", "Certificate"} <= kinds
    before = live_versions(kube, objects)
    again = kube.apply(objects, resend=True)
    assert len(applies_sent) == len(objects), "every object sent again"
    # The sandbox's real Traefik writes the Gateway API objects' status while they live: for those the
    # resend must leave the spec's generation alone; every other object keeps its resourceVersion.
    quiet = [i for i, o in enumerate(objects) if o["kind"] not in STATUS_WRITTEN]
    assert [again[i].ref for i in quiet if again[i].changed] == []
    after = live_versions(kube, objects)
    assert {ref: gen for ref, (_, gen) in after.items()} == {ref: gen for ref, (_, gen) in before.items()}
    assert [after[object_ref(objects[i])] for i in quiet] == [before[object_ref(objects[i])] for i in quiet]
    assert [again[i].resource_version for i in quiet] == [before[object_ref(objects[i])][0] for i in quiet]


# Kinds a controller on the sandbox keeps writing the status of (Traefik: Gateway API conditions).
STATUS_WRITTEN = {"GatewayClass", "Gateway", "HTTPRoute"}


def live_versions(kube: Kube, objects: list[dict[str, Any]]) -> dict[str, tuple[str, int | None]]:
    """resourceVersion and generation of every object, one LIST per kind."""
    index = kube.live_index(objects)
    found = {}
    for obj in objects:
        live = index[live_key(obj)]["metadata"]
        found[object_ref(obj)] = (live["resourceVersion"], live.get("generation"))
    return found


def test_every_app_is_available_with_requests_and_limits(platform: tuple[Session, Path], kube: Kube) -> None:
    session, config = platform
    result = run_cli(["apps.status"], {"HOMELAB_CONFIG": str(config)})
    assert result.code == 0, result.output
    for name in session.cfg.deployed_apps:
        deployment = kube.get("apps/v1", "Deployment", name, name)
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            resources = container["resources"]
            assert set(resources["requests"]) == {"cpu", "memory"}, name
            # A memory limit always (its contract's or the config's); a CPU limit only where the config sets one.
            assert "memory" in resources["limits"], name
            assert ("cpu" in resources["limits"]) == bool(session.cfg.apps[name].cpu_limit), name
            assert container["readinessProbe"] and container["livenessProbe"], name


def test_critical_apps_pdbs_are_enforced_by_the_eviction_api(platform: tuple[Session, Path], kube: Kube) -> None:
    """A PDB guards a critical app with a pod to spare; a one-replica critical app has none and drains go on."""
    critical = {n: a for n, a in platform[0].cfg.deployed_apps.items() if a.critical}
    assert {n: a.replicas for n, a in critical.items()} == {"homepage": 2, "vaultwarden": 1}
    assert kube.get("policy/v1", "PodDisruptionBudget", "vaultwarden", "vaultwarden") is None
    for name in critical:
        pod = kube.get("apps/v1", "Deployment", name, name)["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == "homelab-critical", name
    assert kube.get("scheduling.k8s.io/v1", "PriorityClass", "homelab-critical")["value"] > 0
    for name, app in critical.items():
        if app.replicas < 2:
            continue
        kube.wait_for(
            f"{name} PDB",
            lambda n=name, r=app.replicas: (
                None
                if (kube.get("policy/v1", "PodDisruptionBudget", n, n) or {}).get("status", {}).get("currentHealthy")
                == r
                else "computing"
            ),
            timeout=60,
        )
        pods = kube.list_objects("v1", "Pod", name, label_selector=f"app.kubernetes.io/name={name}")
        nodes = list(kube.ready_nodes())
        for node in nodes:  # no replacement pod may become healthy between the evictions
            kube.cordon(node)
        blocked = []
        try:
            for pod in pods:
                try:
                    kube.evict(pod["metadata"]["name"], name)
                except KubeError as err:
                    blocked.append(str(err))
        finally:
            for node in nodes:
                kube.cordon(node, unschedulable=False)
        assert len(blocked) == len(pods) - (app.replicas - 1), (name, blocked)
        assert f"PodDisruptionBudget {name}/{name}" in blocked[0]
        kube.wait_deployments([(name, name)], timeout=60)
    [solo] = kube.list_objects("v1", "Pod", "vaultwarden", label_selector="app.kubernetes.io/name=vaultwarden")
    kube.evict(solo["metadata"]["name"], "vaultwarden")  # nothing blocks a drain of its node
    kube.wait_deployments([("vaultwarden", "vaultwarden")], timeout=60)


def test_each_app_namespace_denies_by_default_and_allows_only_what_is_declared(
    platform: tuple[Session, Path], kube: Kube
) -> None:
    cfg = platform[0].cfg
    for name, app in cfg.deployed_apps.items():
        policies = {
            p["metadata"]["name"]: p["spec"] for p in kube.list_objects("networking.k8s.io/v1", "NetworkPolicy", name)
        }
        expected = {"default-deny", "allow-gateway", "allow-prometheus", "allow-dns"}
        expected |= {f"allow-{e}" for e in app.egress}
        assert set(policies) == expected, name
        assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        ingress_from = policies["allow-gateway"]["ingress"][0]
        assert ingress_from["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "traefik"}
        assert ingress_from["ports"] == [{"port": app.port, "protocol": "TCP"}]
    lm = {
        p["metadata"]["name"]: p["spec"]
        for p in kube.list_objects("networking.k8s.io/v1", "NetworkPolicy", "open-webui")
    }
    assert lm["allow-lm-studio"]["egress"][0] == {
        "to": [{"ipBlock": {"cidr": f"{cfg.lm_studio.host}/32"}}],
        "ports": [{"port": cfg.lm_studio.port, "protocol": "TCP"}],
    }


def test_alertmanager_config_is_valid_and_routes_to_telegram(
    platform: tuple[Session, Path], kube: Kube, tmp_path: Path
) -> None:
    amtool = find("amtool")
    assert amtool, "amtool missing: scripts/get-binaries.sh amtool"
    app = kube.get("argoproj.io/v1alpha1", "Application", "kube-prometheus-stack", "argocd")
    values = app["spec"]["source"]["helm"]["valuesObject"]
    config = values["alertmanager"]["config"]
    assert values["alertmanager"]["alertmanagerSpec"]["secrets"] == ["alertmanager-telegram"]
    telegram = config["receivers"][1]["telegram_configs"][0]
    assert isinstance(telegram["chat_id"], int) and telegram["chat_id"] == platform[0].cfg.monitoring.telegram.chat_id
    assert telegram["bot_token_file"].startswith("/etc/alertmanager/secrets/alertmanager-telegram/")
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    routes = {}
    cases = (
        "severity=critical",
        "severity=warning",
        "alertname=Watchdog",
        "alertname=InfoInhibitor severity=none",
        "alertname=HomelabBackupTooOld severity=critical",
    )
    for labels in cases:
        out = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={path}", *labels.split()],
            capture_output=True,
            text=True,
        )
        routes[labels] = out.stdout.strip()
    assert routes == {
        "severity=critical": "telegram-critical",
        "severity=warning": "telegram",
        "alertname=Watchdog": "null",
        "alertname=InfoInhibitor severity=none": "null",  # it only mutes info alerts; Telegram never sees it
        "alertname=HomelabBackupTooOld severity=critical": "telegram-critical",
    }
    inhibited = {tuple(rule.get("target_matchers", [])) for rule in config["inhibit_rules"]}
    assert ('severity = "info"',) in inhibited and ('alertname = "InfoInhibitor"',) in inhibited
    rule = kube.get("monitoring.coreos.com/v1", "PrometheusRule", "homelab-backup", "monitoring")
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    hours = platform[0].cfg.backup.max_age_hours
    assert alerts["HomelabBackupTooOld"]["expr"].endswith(f"> {hours * 3600}")
    assert (
        'kube_lease_renew_time{namespace="monitoring", lease="homelab-backup"}' in alerts["HomelabBackupTooOld"]["expr"]
    )
    assert values["prometheus"]["prometheusSpec"]["ruleSelectorNilUsesHelmValues"] is False
    assert values["kubeScheduler"] == {"enabled": False} and values["kubeControllerManager"] == {"enabled": False}


def test_metallb_pool_equals_the_config(platform: tuple[Session, Path], kube: Kube) -> None:
    session, config = platform
    pool = kube.get("metallb.io/v1beta1", "IPAddressPool", "homelab-pool", "metallb-system")
    assert pool["spec"]["addresses"] == [f"{session.cfg.metallb.pool.start}-{session.cfg.metallb.pool.end}"]
    result = run_cli(["net.status"], {"HOMELAB_CONFIG": str(config)})
    assert result.code == 0 and "matches config" in result.stdout, result.output


def test_diff_is_empty_after_apply_and_names_a_changed_field(platform: tuple[Session, Path], tmp_path: Path) -> None:
    _, config = platform
    clean = run_cli(["gitops.diff"], {"HOMELAB_CONFIG": str(config)})
    assert clean.code == 0 and "no differences" in clean.stdout, clean.output
    data = yaml.safe_load(config.read_text())
    data["apps"]["plex"]["memory_limit"] = "6GiB"
    changed = run_cli(["gitops.diff"], {"HOMELAB_CONFIG": str(write_config(tmp_path, data))})
    assert changed.code == 1
    assert "Deployment plex/plex: spec.template.spec.containers[name=plex].resources.limits.memory" in changed.stdout


def test_fields_the_config_no_longer_sets_are_named_by_diff_and_removed_by_the_direct_apply(
    platform: tuple[Session, Path], kube: Kube, tmp_path: Path
) -> None:
    """An env var, a label, a ConfigMap key and an annotation we set before, dropped from the config."""
    session, config = platform
    [tunnel] = [
        o
        for o in tree.objects_in_apply_order(tree.render(session.cfg))
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "cloudflared"
    ]
    earlier = {  # what an earlier config rendered, applied under our field manager
        **tunnel,
        "metadata": {**tunnel["metadata"], "annotations": {"homelab.dev/note": "old"}},
        "data": {**tunnel["data"], "legacy.yaml": "x: 1\n"},
    }
    kube.apply([earlier])
    data = yaml.safe_load(config.read_text())
    del data["apps"]["open-webui"]["env"]
    env = {"HOMELAB_CONFIG": str(write_config(tmp_path, data))}

    diff = run_cli(["gitops.diff"], env)
    assert diff.code == 1, diff.output
    env_var = "spec.template.spec.containers[name=open-webui].env[name=OPENAI_API_BASE_URL]"
    assert {
        f"Deployment open-webui/open-webui: {env_var} removed",
        "ConfigMap cloudflared/cloudflared: data.legacy.yaml removed",
        "ConfigMap cloudflared/cloudflared: metadata.annotations.homelab.dev/note removed",
    } <= set(diff.stdout.splitlines()), diff.stdout

    up = run_cli(["gitops.apply"], env)  # direct mode; through Argo CD: test_sandbox_gitops.py
    assert up.code == 0, up.output
    webui = kube.get("apps/v1", "Deployment", "open-webui", "open-webui")
    assert "env" not in webui["spec"]["template"]["spec"]["containers"][0]
    live_tunnel = kube.get("v1", "ConfigMap", "cloudflared", "cloudflared")
    assert set(live_tunnel["data"]) == {"config.yaml"}
    assert "homelab.dev/note" not in live_tunnel["metadata"]["annotations"]
    clean = run_cli(["gitops.diff"], env)
    assert clean.code == 0 and "no differences" in clean.stdout, clean.output

    back = run_cli(["gitops.apply"], {"HOMELAB_CONFIG": str(config)})  # the reference config for later tests
    assert back.code == 0, back.output


def test_a_ninth_app_is_one_config_entry(platform: tuple[Session, Path], kube: Kube, tmp_path: Path) -> None:
    session, config = platform
    data = yaml.safe_load(config.read_text())
    data["apps"]["whoami"] = {"image": "traefik/whoami:v1.11", "port": 80, "hostname": "whoami", "storage": "1GiB"}
    result = run_cli(["gitops.apply"], {"HOMELAB_CONFIG": str(write_config(tmp_path, data))})
    assert result.code == 0, result.output
    assert kube.deployment_waiting("whoami", "whoami") is None
    assert (
        kube.get("gateway.networking.k8s.io/v1", "HTTPRoute", "whoami", "whoami")["spec"]["hostnames"][0]
        == f"whoami.{session.cfg.domain}"
    )
    assert kube.get("argoproj.io/v1alpha1", "Application", "app-whoami", "argocd") is not None
    rendered = tree.render(Session(Context(), config_path=tmp_path / "homelab.yaml", out=lambda _: None).cfg)
    assert "apps/whoami/app.yaml" in rendered.files


def test_a_dropped_apps_claim_and_volume_stay_named_and_go_only_with_delete_data(
    platform: tuple[Session, Path], kube: Kube, tmp_path: Path
) -> None:
    """The direct apply prunes nothing: the claim stays, is named with its volume; --delete-data asks, then removes."""
    _, config = platform
    data = yaml.safe_load(config.read_text())
    data["apps"]["keepme"] = {"image": "traefik/whoami:v1.11", "port": 80, "hostname": "keepme", "storage": "1GiB"}
    added = run_cli(["gitops.apply"], {"HOMELAB_CONFIG": str(write_config(tmp_path, data))})
    assert added.code == 0, added.output
    volume = kube.get("v1", "PersistentVolumeClaim", "keepme-data", "keepme")["spec"]["volumeName"]
    del data["apps"]["keepme"]
    env = {"HOMELAB_CONFIG": str(write_config(tmp_path, data))}
    dropped = run_cli(["gitops.apply"], env)
    assert dropped.code == 0, dropped.output
    assert (
        "kept: claim keepme/keepme-data (app keepme is no longer in the config; its data stays in volume "
        f"{volume} at /var/lib/homelab-sandbox/keepme/keepme-data; inv gitops.apply --delete-data to remove it)"
    ) in dropped.stdout, dropped.stdout
    assert kube.get("v1", "PersistentVolume", volume)["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    # As K3S's local-path-provisioner makes them: Delete, which would take the data with the claim.
    kube.merge_patch("v1", "PersistentVolume", volume, None, {"spec": {"persistentVolumeReclaimPolicy": "Delete"}})
    retained = run_cli(["gitops.apply"], env)
    assert retained.code == 0 and f"patch PersistentVolume {volume}" in retained.stdout, retained.output
    assert kube.get("v1", "PersistentVolume", volume)["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    refused = run_cli(["gitops.apply", "--delete-data"], env)  # no terminal to ask on: nothing is deleted
    assert refused.code == 2 and "pass --yes" in refused.stderr, refused.output
    assert kube.get("v1", "PersistentVolumeClaim", "keepme-data", "keepme") is not None
    removed = run_cli(["gitops.apply", "--delete-data", "--yes"], env)
    assert removed.code == 0, removed.output
    assert "kept: claim keepme/" not in removed.stdout
    assert kube.get("v1", "PersistentVolumeClaim", "keepme-data", "keepme") is None
    assert kube.get("v1", "PersistentVolume", volume) is None
    kube.wait_for("namespace keepme to go", lambda: "live" if kube.get("v1", "Namespace", "keepme") else None, 120)


def cluster_snapshot(kube: Kube, objects: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Each object as the cluster holds it (None: absent), without what controllers rewrite at any time.

    Status and managedFields are left out (kwok and the deployment controller update them
    on their own); spec, data, labels, annotations, generation and uid are kept, so any
    apply that creates or changes an object shows.
    """
    found: dict[str, dict[str, Any] | None] = {}
    for obj in objects:
        meta = obj["metadata"]
        live = kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        if live is not None:
            live = {k: v for k, v in live.items() if k != "status"}
            live["metadata"] = {
                k: v for k, v in live["metadata"].items() if k not in ("managedFields", "resourceVersion")
            }
        found[f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}"] = live
    return found


def test_dry_run_apply_changes_nothing(platform: tuple[Session, Path], kube: Kube, tmp_path: Path) -> None:
    """A new app (its objects would be created) and a changed one (an existing object would change)."""
    _, config = platform
    data = yaml.safe_load(config.read_text())
    data["apps"]["dryrun"] = {"image": "traefik/whoami:v1.11", "port": 80, "hostname": "dry"}
    data["apps"]["plex"]["memory_limit"] = "7GiB"
    path = write_config(tmp_path, data)
    objects = tree.objects_in_apply_order(tree.render(Session(Context(), config_path=path, out=lambda _: None).cfg))
    before = cluster_snapshot(kube, objects)
    assert before["Namespace /dryrun"] is None and before["Deployment dryrun/dryrun"] is None
    plex = before["Deployment plex/plex"]
    assert plex and plex["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] != "7Gi"

    result = run_cli(["gitops.apply", "--dry-run"], {"HOMELAB_CONFIG": str(path)})
    assert result.code == 0 and "Deployment dryrun/dryrun" in result.stdout, result.output
    after = cluster_snapshot(kube, objects)
    assert [ref for ref in before if after[ref] != before[ref]] == []


def test_bootstrap_installs_argocd_and_the_root_application(
    platform: tuple[Session, Path], kube: Kube, tmp_path: Path
) -> None:
    """ArgoCD's real install manifest on the sandbox; only its controller's health report is simulated."""
    import threading

    from homelab.core.paths import cache_dir

    _, config = platform
    data = yaml.safe_load(config.read_text())
    manifest = cache_dir() / "manifests" / "argocd-install-v3.6.1.yaml"
    assert manifest.is_file(), "scripts/get-binaries.sh crds provides it"
    data["gitops"]["install_manifest"] = str(manifest)
    env = {"HOMELAB_CONFIG": str(write_config(tmp_path, data))}

    def report_root_healthy() -> None:  # what ArgoCD's application-controller would do
        def root() -> str | None:
            return None if kube.get("argoproj.io/v1alpha1", "Application", "root", "argocd") else "absent"

        kube.wait_for("root", root, timeout=120)
        for app in kube.list_objects("argoproj.io/v1alpha1", "Application", "argocd"):
            kube.resource("argoproj.io/v1alpha1", "Application").patch(
                name=app["metadata"]["name"],
                namespace="argocd",
                content_type="application/merge-patch+json",
                body={"status": {"health": {"status": "Healthy"}, "sync": {"status": "Synced", "revision": "abc123"}}},
            )

    reporter = threading.Thread(target=report_root_healthy)
    reporter.start()
    result = run_cli(["gitops.bootstrap", "--wait", "120"], env)
    reporter.join()
    assert result.code == 0, result.output
    assert "ArgoCD bootstrapped" in result.stdout
    for name in ("argocd-server", "argocd-repo-server", "argocd-redis"):
        assert kube.deployment_waiting(name, "argocd") is None
    root = kube.get("argoproj.io/v1alpha1", "Application", "root", "argocd")
    assert root["spec"]["source"]["path"] == "k8s/argocd"
    assert root["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    status = run_cli(["gitops.status"], env)
    assert "root" in status.stdout and "Synced" in status.stdout and "Healthy" in status.stdout
    again = run_cli(["gitops.bootstrap", "--wait", "60"], env)
    assert again.code == 0 and "nothing to do" in again.stdout, again.output
    synced = run_cli(["gitops.sync", "root"], env)
    assert synced.code == 0
    assert kube.get("argoproj.io/v1alpha1", "Application", "root", "argocd")["operation"]["sync"]["prune"] is True
    missing = run_cli(["gitops.sync", "nope"], env)
    assert missing.code == 2 and "no ArgoCD Application named 'nope'" in missing.stderr


def test_opt_in_longhorn_and_velero_render_and_apply(
    platform: tuple[Session, Path], kube: Kube, tmp_path: Path
) -> None:
    _, config = platform
    data = yaml.safe_load(config.read_text())
    data["options"] = {"longhorn": True, "velero": True}
    keys = {}  # Velero (and Longhorn's backup target) keep their backups in the offsite S3 store
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        (tmp_path / name).write_text(f"test-{name.lower()}\n")
        (tmp_path / name).chmod(0o600)
        keys[name] = {"file": str(tmp_path / name)}
    data["backup"]["offsite"] = {"repository": "s3:https://s3.example.com/homelab/restic", "credentials": keys}
    result = run_cli(["gitops.apply"], {"HOMELAB_CONFIG": str(write_config(tmp_path, data))})
    assert result.code == 0, result.output
    assert kube.get("velero.io/v1", "Schedule", "homelab-daily", "velero")["spec"]["template"]["includedNamespaces"]
    assert kube.get("velero.io/v1", "BackupStorageLocation", "default", "velero") is not None
    assert kube.get("storage.k8s.io/v1", "StorageClass", "longhorn-homelab")["provisioner"] == "driver.longhorn.io"
    assert kube.get("argoproj.io/v1alpha1", "Application", "longhorn", "argocd") is not None
