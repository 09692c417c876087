"""Backup rules that need no repository: retention safety, manifest checks, secret scanning."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from homelab.backup import objects as objects_rules
from homelab.backup import prune
from homelab.backup.restic import Snapshot
from homelab.backup.verify import check_manifest
from homelab.config.schema import Retention
from homelab.core.errors import HomelabError
from homelab.secrets.sealing import scan


def snap(i: int, day: str, status: str = "complete") -> Snapshot:
    return Snapshot(f"s{i:03d}", f"{day}T03:00:00.{i:09d}Z", ("homelab", f"status:{status}"), ("/x",))


def test_prune_refuses_an_empty_listing_and_a_listing_without_complete_runs() -> None:
    with pytest.raises(HomelabError, match="lists no snapshots"):
        prune.plan([], set(), Retention(), 3)
    with pytest.raises(HomelabError, match="no complete backup"):
        prune.plan([snap(1, "2026-11-01", "partial")], set(), Retention(), 3)


def test_the_last_verified_runs_survive_any_policy() -> None:
    snapshots = [snap(i, f"2026-10-{i + 1:02d}") for i in range(10)]
    verified = {"s002", "s005", "s007", "s009"}
    found = prune.plan(snapshots, verified, Retention(daily=0, weekly=0, monthly=0), 3)
    assert sorted(s.id for s in found.keep) == ["s005", "s007", "s009"]


def test_partial_runs_do_not_count_and_old_ones_go() -> None:
    snapshots = [snap(1, "2026-11-01"), snap(2, "2026-11-02", "partial"), snap(3, "2026-11-03", "partial")]
    found = prune.plan(snapshots, set(), Retention(daily=1, weekly=0, monthly=0), 1)
    assert [s.id for s in found.keep] == ["s001", "s003"]  # the newest partial is newer than any complete run
    assert [s.id for s in found.remove] == ["s002"]


def test_daily_buckets_keep_one_per_day() -> None:
    snapshots = [snap(1, "2026-11-01"), snap(2, "2026-11-01"), snap(3, "2026-11-02")]
    found = prune.plan(snapshots, set(), Retention(daily=2, weekly=0, monthly=0), 1)
    assert sorted(s.id for s in found.keep) == ["s002", "s003"]


def test_manifest_names_a_tampered_and_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    (tmp_path / "b.yaml").write_text("b: 2\n")
    import hashlib

    files = {n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.yaml", "b.yaml")}
    (tmp_path / "manifest.json").write_text(json.dumps({"files": files}))
    assert check_manifest(tmp_path)[1] == []
    (tmp_path / "a.yaml").write_text("a: 3\n")
    (tmp_path / "b.yaml").unlink()
    problems = check_manifest(tmp_path)[1]
    assert problems == [
        "a.yaml: content does not match its SHA-256 in the manifest",
        "b.yaml: listed in the manifest but missing",
    ]


def test_a_snapshot_without_manifest_is_not_a_backup(tmp_path: Path) -> None:
    assert check_manifest(tmp_path)[1] == ["manifest.json missing: this snapshot is not a complete backup"]


def test_secret_scan_catches_each_kind_of_key_material(tmp_path: Path) -> None:
    """Key material is generated here at run time; nothing token-shaped is tracked in this repository."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    pem = subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519"], capture_output=True, text=True).stdout
    age = subprocess.run(["age-keygen"], capture_output=True, text=True).stdout
    planted = {
        "key.pem": pem,
        "age.txt": age,
        "token.txt": "K10" + "ab" * 32 + "::server:" + "cd" * 16 + "\n",
        "bot.env": "BOT=" + "987654321" + ":" + "Xy" * 17 + "z\n",
        "secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {password: hunter2}\n",
        "config.txt": "value: my-configured-restic-password\n",
        "sealed.yaml": "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nspec: {encryptedData: {a: AgB}}\n",
    }
    for name, text in planted.items():
        (tmp_path / name).write_text(text)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    findings = scan(tmp_path, ["my-configured-restic-password"])
    assert any(f.startswith("key.pem: PEM private key") for f in findings), findings
    assert any(f.startswith("age.txt: age secret key") for f in findings), findings
    assert "token.txt: K3S token" in findings
    assert "bot.env: Telegram bot token" in findings
    assert any(f.startswith("secret.yaml: plaintext Kubernetes Secret") for f in findings)
    assert "config.txt: contains the value of a configured secret" in findings
    assert not [f for f in findings if f.startswith("sealed.yaml")]


# --- restoring objects: what the API server assigned is left out, order follows dependencies ---


def backed_up(kind: str, name: str, namespace: str | None = None, **extra: object) -> dict:
    api = {"Deployment": "apps/v1", "Job": "batch/v1", "Ingress": "networking.k8s.io/v1"}.get(kind, "v1")
    meta: dict = {
        "name": name,
        "uid": f"uid-{name}",
        "resourceVersion": "42",
        "creationTimestamp": "2026-11-01T03:00:00Z",
        "managedFields": [{"manager": "homelab"}],
        "generation": 3,
    }
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra.pop("metadata", {}))  # type: ignore[arg-type]
    return {"apiVersion": api, "kind": kind, "metadata": meta, "status": {"phase": "Bound"}, **extra}


def prepared_objects(objects: list[dict], live: objects_rules.Live | None = None, pinned: dict | None = None) -> dict:
    found = objects_rules.prepare(objects, live or objects_rules.Live(), pinned)
    return {objects_rules.key_of(o): o for o in found.objects}


def test_a_restored_service_gets_a_new_cluster_ip_and_no_node_port_the_config_does_not_pin() -> None:
    service = backed_up(
        "Service",
        "web",
        "app",
        spec={
            "type": "NodePort",
            "clusterIP": "10.96.10.20",
            "clusterIPs": ["10.96.10.20"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31234}, {"port": 443, "nodePort": 31443}],
        },
    )
    headless = backed_up("Service", "db", "app", spec={"clusterIP": "None", "clusterIPs": ["None"], "ports": []})
    pinned = objects_rules.pinned_node_ports(
        [
            {
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "app"},
                "spec": {"ports": [{"port": 443, "nodePort": 30443}]},
            }
        ]
    )
    found = prepared_objects([service, headless], pinned=pinned)
    spec = found[("Service", "app", "web")]["spec"]
    assert "clusterIP" not in spec and "clusterIPs" not in spec
    assert spec["ports"] == [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443}]
    assert found[("Service", "app", "db")]["spec"]["clusterIP"] == "None"


def test_what_the_api_server_assigned_is_left_out() -> None:
    found = prepared_objects([backed_up("ConfigMap", "settings", "app", data={"a": "1"})])
    restored = found[("ConfigMap", "app", "settings")]
    assert restored == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "app"},
        "data": {"a": "1"},
    }


def test_owner_references_stay_only_for_running_owners_with_their_current_uid() -> None:
    def owned(name: str, owner_kind: str, owner: str, controller: bool = False) -> dict:
        ref = {"apiVersion": "v1", "kind": owner_kind, "name": owner, "uid": "old-uid", "controller": controller}
        return backed_up("ConfigMap", name, "app", metadata={"ownerReferences": [ref]})

    live = objects_rules.Live({("ConfigMap", "app", "running-owner"): "new-uid"})
    found = objects_rules.prepare(
        [
            owned("of-a-gone-owner", "ConfigMap", "never-backed-up"),
            owned("of-a-running-owner", "ConfigMap", "running-owner"),
            owned("of-a-restored-owner", "ConfigMap", "restored-owner"),
            owned("made-by-a-controller", "ConfigMap", "restored-owner", controller=True),
            backed_up("ConfigMap", "restored-owner", "app"),
        ],
        live,
    )
    refs = {o["metadata"]["name"]: o["metadata"].get("ownerReferences") for o in found.objects}
    assert refs["of-a-gone-owner"] is None
    assert refs["of-a-restored-owner"] is None  # its new uid is not known before it exists
    assert [r["uid"] for r in refs["of-a-running-owner"]] == ["new-uid"]
    assert "made-by-a-controller" not in refs
    assert found.left_to_controllers == ["ConfigMap app/made-by-a-controller (made by ConfigMap restored-owner)"]


def test_volume_bindings_keep_the_pairing_but_not_the_old_uids() -> None:
    claim = backed_up(
        "PersistentVolumeClaim",
        "data",
        "app",
        spec={"volumeName": "pv-data"},
        metadata={"annotations": {"pv.kubernetes.io/bind-completed": "yes", "keep": "me"}},
    )
    orphan = backed_up("PersistentVolumeClaim", "cache", "app", spec={"volumeName": "pv-deleted-long-ago"})
    volume = backed_up(
        "PersistentVolume",
        "pv-data",
        spec={
            "claimRef": {
                "kind": "PersistentVolumeClaim",
                "namespace": "app",
                "name": "data",
                "uid": "old",
                "resourceVersion": "7",
            }
        },
    )
    found = prepared_objects([claim, orphan, volume])
    assert found[("PersistentVolumeClaim", "app", "data")]["spec"]["volumeName"] == "pv-data"
    assert found[("PersistentVolumeClaim", "app", "data")]["metadata"]["annotations"] == {"keep": "me"}
    assert "volumeName" not in found[("PersistentVolumeClaim", "app", "cache")]["spec"]
    assert found[("PersistentVolume", "", "pv-data")]["spec"]["claimRef"] == {
        "kind": "PersistentVolumeClaim",
        "namespace": "app",
        "name": "data",
    }


def test_a_live_volume_still_holding_the_deleted_claims_uid_is_freed_for_the_restored_claim() -> None:
    claim = backed_up("PersistentVolumeClaim", "data", "app", spec={"volumeName": "pv-data"})
    live_volume = {
        "metadata": {"name": "pv-data"},
        "spec": {"claimRef": {"namespace": "app", "name": "data", "uid": "uid-of-the-deleted-claim"}},
    }
    other = {"metadata": {"name": "pv-other"}, "spec": {"claimRef": {"namespace": "x", "name": "y", "uid": "u"}}}
    live = objects_rules.Live({("PersistentVolume", "", "pv-data"): "pv-uid"})
    found = objects_rules.prepare([claim], live)
    assert objects_rules.claims_to_rebind(found, [live_volume, other]) == [("pv-data", "app/data")]


def test_a_restored_job_gets_a_selector_made_from_its_new_uid() -> None:
    job = backed_up(
        "Job",
        "migrate",
        "app",
        spec={
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "old"}},
            "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "old", "app": "x"}}},
        },
    )
    spec = prepared_objects([job])[("Job", "app", "migrate")]["spec"]
    assert "selector" not in spec and spec["template"]["metadata"]["labels"] == {"app": "x"}


def test_objects_come_back_in_dependency_order_and_existing_ones_are_kept() -> None:
    objects = [
        backed_up("ValidatingWebhookConfiguration", "hook"),
        backed_up("Ingress", "web", "app"),
        backed_up("Deployment", "web", "app"),
        backed_up("Service", "web", "app", spec={"clusterIP": "10.0.0.1"}),
        backed_up("PersistentVolumeClaim", "data", "app", spec={}),
        backed_up("ConfigMap", "settings", "app"),
        backed_up("ConfigMap", "kube-root-ca.crt", "app"),
        backed_up("CustomResourceDefinition", "widgets.example.com"),
        backed_up("Namespace", "app"),
        backed_up("Namespace", "kept"),
    ]
    found = objects_rules.prepare(objects, objects_rules.Live({("Namespace", "", "kept"): "u"}))
    assert [(tier, [o["kind"] for o in objs]) for tier, objs in found.tiers] == [
        ("namespaces", ["Namespace"]),
        ("definitions", ["CustomResourceDefinition"]),
        ("configuration and storage", ["PersistentVolumeClaim", "ConfigMap"]),
        ("services", ["Service"]),
        ("workloads", ["Deployment"]),
        ("other objects", ["Ingress"]),
        ("admission webhooks", ["ValidatingWebhookConfiguration"]),
    ]
    assert found.present == ["Namespace kept"]


def test_objects_of_a_namespace_being_deleted_count_as_missing() -> None:
    live = objects_rules.Live(
        {("Namespace", "", "app"): "u1", ("ConfigMap", "app", "settings"): "u2"}, terminating=frozenset({"app"})
    )
    found = objects_rules.prepare([backed_up("Namespace", "app"), backed_up("ConfigMap", "settings", "app")], live)
    assert [o["kind"] for o in found.objects] == ["Namespace", "ConfigMap"] and not found.present
