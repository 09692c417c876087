"""The apply engine's skip rule and the names of owned fields an apply would prune (pure parts)."""

from __future__ import annotations

from typing import Any

from homelab.core.kube.apply import APPLIED_HASH, body_hash, stamped, unchanged
from homelab.core.kube.fields import dropped, owned


def config_map(**data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": data}


def test_body_hash_ignores_key_order_and_its_own_annotation() -> None:
    body = config_map(a="1", b="2")
    reordered = {"data": {"b": "2", "a": "1"}, "metadata": {"namespace": "n", "name": "c"}, "kind": "ConfigMap"}
    reordered = {**reordered, "apiVersion": "v1"}  # apiVersion last instead of first
    assert body_hash(body) == body_hash(reordered) == body_hash(stamped(body))
    assert stamped(stamped(body)) == stamped(body)
    assert "annotations" not in body["metadata"], "the caller's object is not changed"


def test_body_hash_changes_when_a_field_is_removed() -> None:
    assert body_hash(config_map(a="1", b="2")) != body_hash(config_map(a="1"))


def test_unchanged_needs_the_recorded_hash_and_every_field() -> None:
    body = config_map(a="1")
    live = {**stamped(body), "metadata": {**stamped(body)["metadata"], "resourceVersion": "7", "uid": "u"}}
    assert unchanged(live, body)
    assert not unchanged(live, config_map(a="1", b="2")), "a new field"
    assert not unchanged(stamped(config_map(a="1", b="2")), body), "a field we no longer set: the hash differs"
    edited = {**live, "data": {"a": "edited"}}
    assert not unchanged(edited, body), "a hand edit"
    unrecorded = {**live, "metadata": {**live["metadata"], "annotations": {}}}
    assert not unchanged(unrecorded, body), "never applied with a hash"


def test_dropped_names_list_items_by_merge_key_and_map_keys_by_path() -> None:
    before = {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:tier": {}}},
        "f:spec": {
            "f:containers": {
                'k:{"name":"app"}': {
                    ".": {},
                    "f:env": {'k:{"name":"FOO"}': {".": {}, "f:name": {}, "f:value": {}}, 'k:{"name":"KEEP"}': {}},
                    "f:resources": {"f:limits": {"f:cpu": {}}},
                    "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}}},
                }
            },
            "f:finalizers": {'v:"keep"': {}, 'v:"gone"': {}},
        },
    }
    after = {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:containers": {'k:{"name":"app"}': {".": {}, "f:env": {'k:{"name":"KEEP"}': {}}}},
            "f:finalizers": {'v:"keep"': {}},
        },
    }
    assert dropped(before, after) == [
        "metadata.labels.tier",
        "spec.containers[name=app].env[name=FOO]",
        "spec.containers[name=app].resources.limits.cpu",
        "spec.containers[name=app].ports[containerPort=80,protocol=TCP]",
        "spec.finalizers[gone]",
    ]
    assert dropped(before, before) == []


def test_owned_reads_only_our_managers_apply_entry_of_the_main_resource() -> None:
    ours = {"f:data": {"f:a": {}}}
    obj = {
        "metadata": {
            "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:data": {"f:x": {}}}},
                {"manager": "homelab", "operation": "Update", "fieldsV1": {"f:data": {"f:y": {}}}},
                {"manager": "homelab", "operation": "Apply", "subresource": "status", "fieldsV1": {"f:status": {}}},
                {"manager": "homelab", "operation": "Apply", "fieldsV1": ours},
            ],
            "annotations": {APPLIED_HASH: "x"},
        }
    }
    assert owned(obj, "homelab") == ours
    assert owned({"metadata": {}}, "homelab") == {}
