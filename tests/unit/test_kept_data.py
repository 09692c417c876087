"""Dropping an app keeps its data: the render's Argo CD options, the Retain patches, the kept claims, --delete-data."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import loopback_data
from homelab.apps import render as apps
from homelab.config.loader import validate
from homelab.core.plan import Delete, Note, Patch, Wait
from homelab.gitops import kept, tree
from homelab.sandbox.cluster import volumes_for

SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
K3S_PATH = "/var/lib/rancher/k3s/storage/pvc-1234_photos_photos-data"


@pytest.fixture
def cfg():
    return validate(loopback_data())


def claim(namespace: str, name: str, volume: str = "", ours: bool = True, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if ours:
        meta["labels"] = apps.labels(name)
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T16:00:00Z"
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": {"volumeName": volume}}


def local_path_volume(name: str, namespace: str, pvc: str, node: str, policy: str = "Delete") -> dict[str, Any]:
    """A volume as K3S's local-path-provisioner makes one: hostPath under its storage directory, pinned to a node."""
    on_node = {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "persistentVolumeReclaimPolicy": policy,
            "hostPath": {"path": f"/var/lib/rancher/k3s/storage/{name}_{namespace}_{pvc}"},
            "claimRef": {"namespace": namespace, "name": pvc},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [on_node]}]}},
        },
    }


def test_claims_and_their_namespaces_carry_argo_cds_no_prune_no_delete_ignore_extraneous_options(cfg) -> None:
    rendered = tree.render(cfg)
    with_storage = [name for name, app in cfg.deployed_apps.items() if app.storage]
    assert with_storage, "the reference config has apps with storage"
    for name, app in cfg.deployed_apps.items():
        objects = rendered.files[f"apps/{name}/app.yaml"]
        [namespace] = [o for o in objects if o["kind"] == "Namespace"]
        claims = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
        if app.storage:
            for obj in (claims[0], namespace):
                assert obj["metadata"]["annotations"] == {
                    SYNC_OPTIONS: "Prune=false,Delete=false",  # not pruned, not deleted with the Application
                    "argocd.argoproj.io/compare-options": "IgnoreExtraneous",  # kept, it leaves the app Synced
                }, name
        else:
            assert not claims and "annotations" not in namespace["metadata"], name


def test_the_sandbox_provisions_retained_volumes(cfg) -> None:
    claims = kept.rendered_claims(tree.objects_in_apply_order(tree.render(cfg)))
    assert claims
    assert {v["spec"]["persistentVolumeReclaimPolicy"] for v in volumes_for(claims)} == {"Retain"}


def test_a_delete_volume_bound_to_an_app_claim_is_patched_to_retain() -> None:
    rendered = [claim("photos", "photos-data")]
    volumes = [
        local_path_volume("pvc-1", "photos", "photos-data", "agent-1"),
        local_path_volume("pvc-2", "photos", "photos-old", "agent-1"),  # a claim that is not the toolkit's
        local_path_volume("pvc-3", "gone", "gone-data", "agent-1", policy="Retain"),
    ]
    [patch] = kept.retain_patches(rendered, [], volumes)
    assert isinstance(patch, Patch)
    assert (patch.kind, patch.name, patch.body) == (
        "PersistentVolume",
        "pvc-1",
        {"spec": {"persistentVolumeReclaimPolicy": "Retain"}},
    )
    assert kept.retain_patches(rendered, [], [local_path_volume("pvc-1", "photos", "photos-data", "a", "Retain")]) == []


def test_a_kept_claim_deleted_by_hand_would_not_take_its_data_either() -> None:
    """The claim of a dropped app (live, not rendered) has its volume retained too."""
    [patch] = kept.retain_patches(
        [], [claim("gone", "gone-data")], [local_path_volume("pvc-9", "gone", "gone-data", "a")]
    )
    assert patch.name == "pvc-9"


def test_a_claim_the_config_dropped_is_kept_and_named_with_its_node_and_path(cfg) -> None:
    live = [claim("photos", "photos-data", "pvc-1234"), claim("homepage", "homepage-data", "pvc-5")]
    rendered = [claim("homepage", "homepage-data")]
    volume = local_path_volume("pvc-1234", "photos", "photos-data", "gl-agent-1", "Retain")
    [found] = kept.kept_claims(cfg, rendered, live, [volume])
    assert (found.ref, found.node, found.path, found.namespace_rendered) == (
        "photos/photos-data",
        "gl-agent-1",
        K3S_PATH,
        False,
    )
    assert found.line("inv up") == (
        "kept: claim photos/photos-data (app photos is no longer in the config; its data stays on node gl-agent-1 at "
        f"{K3S_PATH}; inv up --delete-data to remove it)"
    )


def test_only_the_toolkits_own_claims_that_are_not_going_already_count_as_kept(cfg) -> None:
    live = [claim("other", "other-data", ours=False), claim("x", "x-data", deleting=True)]
    assert kept.kept_claims(cfg, [], live, []) == []


def test_why_a_claim_is_no_longer_rendered_names_the_config_key(cfg) -> None:
    name = next(n for n, a in cfg.deployed_apps.items() if a.storage)
    off = cfg.model_copy(update={"apps": {**cfg.apps, name: cfg.apps[name].model_copy(update={"enabled": False})}})
    assert kept.why_dropped(off, name) == f"app {name} is off in the config (apps.{name}.enabled)"
    assert kept.why_dropped(cfg, name) == f"app {name} no longer has storage (apps.{name}.storage)"
    assert kept.why_dropped(cfg, "photos") == "app photos is no longer in the config"


def test_without_delete_data_the_plan_changes_nothing_and_names_what_it_keeps(cfg) -> None:
    kube = FakeReads(
        [claim("photos", "photos-data", "pvc-1234")], [local_path_volume("pvc-1234", "photos", "photos-data", "n")]
    )
    plan, found = kept.data_plan(cfg, [], kube, delete_data=False, provisioner=True, command="inv up")
    assert [f.ref for f in found] == ["photos/photos-data"]
    patches = plan.changes()
    assert [type(a) for a in patches] == [Patch]  # only the Retain of the local-path volume
    [note] = [a for a in plan.actions if isinstance(a, Note)]
    assert note.text.startswith("kept: claim photos/photos-data (app photos is no longer in the config;")


def test_delete_data_with_a_provisioner_sets_delete_then_deletes_the_claim_and_namespace_and_waits(cfg) -> None:
    found = [kept.Kept("photos", "photos-data", "app photos is no longer in the config", "pvc-1234", "n", K3S_PATH)]
    actions = kept.delete_actions(found, provisioner=True, gone=lambda *_: True)
    changes = [a for a in actions if not isinstance(a, Wait)]
    assert isinstance(changes[0], Patch) and changes[0].body == {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}
    assert [(a.kind, a.name, a.namespace) for a in changes[1:] if isinstance(a, Delete)] == [
        ("PersistentVolumeClaim", "photos-data", "photos"),
        ("Namespace", "photos", None),
    ]
    waits = [a for a in actions if isinstance(a, Wait)]
    assert [w.what for w in waits] == [
        "PersistentVolumeClaim photos/photos-data to be gone",
        "PersistentVolume pvc-1234 to be gone",  # the provisioner removed the directory
    ]
    assert all(w.check() is None for w in waits)


def test_delete_data_on_the_sandbox_deletes_the_volume_itself_and_keeps_a_rendered_namespace() -> None:
    found = [
        kept.Kept(
            "photos", "photos-data", "app photos no longer has storage", "sandbox-photos", namespace_rendered=True
        )
    ]
    actions = kept.delete_actions(found, provisioner=False, gone=lambda *_: False)
    deletes = [(a.kind, a.name) for a in actions if isinstance(a, Delete)]
    assert deletes == [("PersistentVolumeClaim", "photos-data"), ("PersistentVolume", "sandbox-photos")]
    assert not any(isinstance(a, Patch) for a in actions)
    assert all(w.check() == "still there" for w in actions if isinstance(w, Wait))


def test_a_cluster_that_cannot_be_read_plans_nothing(cfg) -> None:
    plan, found = kept.data_plan(cfg, [], None, delete_data=True, provisioner=True, command="inv up")
    assert plan.actions == [] and found == []


class FakeReads:
    """The two LISTs ``data_plan`` makes, from fixed lists (planning reads nothing else)."""

    def __init__(self, claims: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> None:
        self.objects = {"PersistentVolumeClaim": claims, "PersistentVolume": volumes}

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None, **_: str) -> list[Any]:
        return self.objects[kind]
