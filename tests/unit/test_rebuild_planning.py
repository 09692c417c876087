"""Planning ``inv up --restore``: the order of its steps, what a re-run skips, what it refuses, what it restores."""

from __future__ import annotations

from pathlib import Path

import pytest

from homelab.core import state_files
from homelab.root import rebuild
from homelab.root.rebuild import Contents, Record, plan_steps, refusal, restorable
from homelab.sandbox.cluster import volume_host_dir, volumes_dir

CONTENTS = Contents("abcd1234", "offsite", 1, 12, 3, ("filebrowser", "vaultwarden"))


def names(steps: list[rebuild.Step]) -> list[str]:
    return [s.name for s in steps]


def test_on_the_sandbox_every_volume_is_filled_after_the_keys_and_objects_and_before_gitops() -> None:
    steps = plan_steps(CONTENTS, ["sandbox"], ["gitops"], set(), fill_first=True)
    assert names(steps) == [
        "layer:sandbox",
        "sealed-keys",
        "cluster",
        "volume-claims",
        "volume:filebrowser",
        "volume:vaultwarden",
        "layer:gitops",
        "cluster-after-sync",
    ]


def test_on_k3s_nodes_the_volumes_are_restored_in_place_after_the_sync() -> None:
    steps = plan_steps(CONTENTS, ["vm", "k3s"], ["gitops", "backup"], set(), fill_first=False)
    below = ["layer:vm", "layer:k3s", "sealed-keys", "cluster"]
    assert names(steps) == [*below, "layer:gitops", "layer:backup", "cluster-after-sync", "volumes"]


def test_a_rerun_skips_the_steps_done_and_runs_every_layer_again() -> None:
    done = {"sealed-keys", "cluster", "volume-claims", "volume:filebrowser", "layer:sandbox"}
    steps = plan_steps(CONTENTS, ["sandbox"], ["gitops"], done, fill_first=True)
    assert names(steps) == ["layer:sandbox", "volume:vaultwarden", "layer:gitops", "cluster-after-sync"]


def test_a_snapshot_without_volumes_has_no_volume_step() -> None:
    empty = Contents("abcd1234", "local", 0, 0, 0, ())
    assert "volumes" not in names(plan_steps(empty, ["k3s"], ["gitops"], set(), fill_first=False))
    assert "none in the snapshot" in plan_steps(empty, [], ["gitops"], set(), fill_first=True)[0].says


def test_the_printed_plan_names_the_snapshot_and_what_a_stopped_run_finished() -> None:
    steps = plan_steps(CONTENTS, ["sandbox"], ["gitops"], {"sealed-keys"}, fill_first=True)
    plan = rebuild.shown(steps, CONTENTS, Record("abcd1234", "offsite", ["sealed-keys"]))
    lines = [a.display() for a in plan.actions]
    assert "abcd1234 (offsite)" in plan.title
    assert "finished sealed-keys" in lines[0]
    assert any("1. bring up layer sandbox" in line for line in lines)
    assert any("fill vaultwarden's volume" in line for line in lines)


def test_an_empty_target_is_not_refused_and_a_populated_one_is_with_the_way_out() -> None:
    assert refusal("sandbox", [], []) is None
    why = refusal("lima", ["root", "vaultwarden"], ["vaultwarden"])
    assert why is not None
    assert "2 Argo CD Application(s)" in why and "apps vaultwarden" in why and "inv backup.restore" in why


def tracked(kind: str, name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": name, "annotations": {"argocd.argoproj.io/tracking-id": f"app:/{kind}:ns/{name}"}},
    }


def test_the_cluster_step_leaves_what_git_holds_and_the_volumes_out() -> None:
    kept = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "by-hand", "namespace": "default"}}
    application = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "root"}}
    volume = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"}}
    assert restorable([kept, tracked("Deployment", "app"), application, volume]) == [kept]


def test_objects_in_a_namespace_git_holds_wait_for_the_sync() -> None:
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "extra", "namespace": "app"}}
    objects = [tracked("Namespace", "app"), account]
    assert restorable(objects) == []
    assert restorable(objects, before_sync=False) == [account]


def test_the_record_reads_back_what_was_written(tmp_path: Path) -> None:
    (tmp_path / rebuild.MARKER).write_text(Record("abcd1234", "offsite", ["sealed-keys"]).text())
    assert rebuild.read_record(tmp_path) == Record("abcd1234", "offsite", ["sealed-keys"])
    assert rebuild.read_record(tmp_path / "none") is None


def test_a_record_that_names_no_snapshot_stops_the_rebuild(tmp_path: Path) -> None:
    (tmp_path / rebuild.MARKER).write_text('{"done": []}')
    with pytest.raises(state_files.StateFileError, match="does not name the snapshot"):
        rebuild.read_record(tmp_path)


def test_a_sandbox_volume_path_maps_into_its_workdir_and_nothing_else_does(tmp_path: Path) -> None:
    assert volume_host_dir(tmp_path, "/var/lib/homelab-sandbox/app/app-data") == volumes_dir(tmp_path) / "app/app-data"
    for outside in ("/var/lib/homelab-sandbox/../etc", "/var/lib/homelab-sandbox/a/../../b", "/srv/app", ""):
        assert volume_host_dir(tmp_path, outside) is None
