"""The apply engine against a real API server: objects caught in the middle of their deletion."""

from __future__ import annotations

import threading
import time

import pytest

from homelab.core.kube import Kube, KubeError
from homelab.core.kube import apply as apply_engine

pytestmark = pytest.mark.integration

HELD = "homelab.test/held"  # a finalizer nothing serves: the object stays terminating until it is taken off


def config_map(namespace: str, value: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "caught-deleting", "namespace": namespace},
        "data": {"value": value},
    }


def hold_then_delete(kube: Kube, namespace: str) -> str:
    """Apply the ConfigMap with a finalizer, delete it: it is now terminating. Its uid."""
    kube.apply([config_map(namespace, "old")])
    kube.merge_patch("v1", "ConfigMap", "caught-deleting", namespace, {"metadata": {"finalizers": [HELD]}})
    kube.delete("v1", "ConfigMap", "caught-deleting", namespace)
    live = kube.get("v1", "ConfigMap", "caught-deleting", namespace)
    assert live is not None and live["metadata"].get("deletionTimestamp")
    return str(live["metadata"]["uid"])


def release(kube: Kube, namespace: str) -> None:
    kube.merge_patch("v1", "ConfigMap", "caught-deleting", namespace, {"metadata": {"finalizers": None}})


def test_an_unchanged_object_being_deleted_is_created_again_once_it_is_gone(kube: Kube, namespace: str) -> None:
    """Skipping it as unchanged would lose it moments later with the deletion."""
    old_uid = hold_then_delete(kube, namespace)
    releaser = threading.Timer(2.0, release, (kube, namespace))
    releaser.start()
    try:
        [applied] = kube.apply([config_map(namespace, "old")])
    finally:
        releaser.join()
    assert applied.changed
    live = kube.get("v1", "ConfigMap", "caught-deleting", namespace)
    assert live is not None and not live["metadata"].get("deletionTimestamp")
    assert live["metadata"]["uid"] != old_uid and live["data"] == {"value": "old"}


def test_an_object_still_being_deleted_after_the_bound_is_named_with_its_finalizer(
    kube: Kube, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_engine, "TERMINATING_WAIT", 1.0)
    hold_then_delete(kube, namespace)
    started = time.monotonic()
    try:
        with pytest.raises(KubeError) as caught:
            kube.apply([config_map(namespace, "new")])
    finally:
        release(kube, namespace)
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert f"ConfigMap {namespace}/caught-deleting" in message
    assert f"being deleted, held by finalizers {HELD}" in message and "re-run once it is gone" in message
