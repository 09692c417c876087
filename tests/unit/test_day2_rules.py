"""Day-2 planning rules: holding Argo CD back (gitops.hold) and rolling pods on config changes (gitops.checksums)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import loopback_data
from homelab.config.loader import validate
from homelab.core.plan import Note, Patch, Plan, Run, WriteFile
from homelab.core.state_files import StateFileError
from homelab.gitops import checksums, hold, tree

AUTOMATED = {"prune": True, "selfHeal": True}


def application(name: str, parent: str | None, automated: dict[str, Any] | None = AUTOMATED) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "argocd"}
    if parent:
        meta["annotations"] = {hold.TRACKING: f"{parent}:argoproj.io/Application:argocd/{name}"}
    policy = {"syncOptions": ["ServerSideApply=true"], **({"automated": automated} if automated else {})}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": meta,
        "spec": {"syncPolicy": policy},
    }


def deployment(owner: str) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "notes", "annotations": {hold.TRACKING: f"{owner}:apps/Deployment:notes/notes"}},
    }


class Applications:
    """Just enough of a cluster to list Applications (the planning functions read nothing else)."""

    def __init__(self, *apps: dict[str, Any]) -> None:
        self.apps = list(apps)

    def list_objects(self, api_version: str, kind: str) -> list[dict[str, Any]]:
        assert (api_version, kind) == hold.APPLICATION
        return self.apps


def test_the_parent_is_paused_before_the_app_and_resumed_after_it(tmp_path: Path) -> None:
    """The root would put the child's automated back from Git within seconds: it goes first, comes back last."""
    kube = Applications(application("root", None), application("app-notes", "root"), application("other", "root"))
    held = hold.observe(kube, [deployment("app-notes")])
    pause = held.pause(tmp_path, "the restore")
    assert isinstance(pause[0], WriteFile) and pause[0].path == str(tmp_path / hold.MARKER)
    assert [(a.name, a.body) for a in pause[1:] if isinstance(a, Patch)] == [
        ("root", {"spec": {"syncPolicy": {"automated": None}}}),
        ("app-notes", {"spec": {"syncPolicy": {"automated": None}}}),
    ]
    resume = held.resume(tmp_path)
    assert [(a.name, a.body) for a in resume if isinstance(a, Patch)] == [
        ("app-notes", {"spec": {"syncPolicy": {"automated": AUTOMATED}}}),
        ("root", {"spec": {"syncPolicy": {"automated": AUTOMATED}}}),
    ]
    assert resume[-1] == Run(("rm", "-f", "--", str(tmp_path / hold.MARKER)), why="Argo CD is no longer held back")


def test_the_marker_names_every_paused_application_with_its_original_policy(tmp_path: Path) -> None:
    kept = {"prune": False, "selfHeal": True, "allowEmpty": True}
    kube = Applications(application("root", None), application("app-notes", "root", kept))
    [write, *_] = hold.observe(kube, [deployment("app-notes")]).pause(tmp_path, "the restore of notes")
    assert isinstance(write, WriteFile) and write.mode == 0o600
    doc = json.loads(write.data())
    assert doc["task"] == "the restore of notes"
    assert doc["applications"] == [
        {"name": "root", "namespace": "argocd", "automated": AUTOMATED},
        {"name": "app-notes", "namespace": "argocd", "automated": kept},
    ]


def test_a_killed_runs_marker_plans_the_resume_of_exactly_what_it_paused(tmp_path: Path) -> None:
    kube = Applications(application("root", None), application("app-notes", "root"))
    [write, *_] = hold.observe(kube, [deployment("app-notes")]).pause(tmp_path, "the restore of notes")
    assert isinstance(write, WriteFile)
    Path(write.path).write_bytes(write.data())
    plan = hold.recovery_plan(tmp_path)
    assert isinstance(plan.actions[0], Note) and "the restore of notes was stopped" in plan.actions[0].text
    assert [(a.name, a.body["spec"]["syncPolicy"]["automated"]) for a in plan.actions if isinstance(a, Patch)] == [
        ("app-notes", AUTOMATED),
        ("root", AUTOMATED),
    ]
    assert hold.recovery_plan(tmp_path / "elsewhere").empty


def test_a_rerun_adopts_a_killed_runs_pause_with_its_originals_instead_of_resuming_first(tmp_path: Path) -> None:
    """Resuming first would let Argo CD restart the app between the two runs; the originals come from the marker."""
    kept = {"prune": True, "selfHeal": True, "allowEmpty": True}
    left = [hold.Paused("root", "argocd", AUTOMATED), hold.Paused("app-notes", "argocd", kept)]
    left.append(hold.Paused("app-other", "argocd", AUTOMATED))
    kube = Applications(application("root", None, None), application("app-notes", "root", None))
    held = hold.observe(kube, [deployment("app-notes")], left)
    assert held.paused == left[:2] and held.notes == []
    [write, *_] = held.pause(tmp_path, "the restore of notes")
    assert isinstance(write, WriteFile)
    assert [a["name"] for a in json.loads(write.data())["applications"]] == ["root", "app-notes", "app-other"]
    resume = held.resume(tmp_path)
    assert [(a.name, a.body["spec"]["syncPolicy"]["automated"]) for a in resume if isinstance(a, Patch)] == [
        ("app-notes", kept),
        ("root", AUTOMATED),
    ]
    [still] = [a for a in resume if isinstance(a, WriteFile)]  # app-other stays recorded until holding() ends
    assert [a["name"] for a in json.loads(still.data())["applications"]] == ["app-other"]


def test_an_unreadable_marker_stops_the_task_naming_it_and_the_fix_without_guessing(tmp_path: Path) -> None:
    """Resuming nothing would leave apps paused for good, resuming all would undo the owner's own pauses."""
    (tmp_path / hold.MARKER).write_text("{not json")
    with pytest.raises(StateFileError) as caught:
        hold.recovery_plan(tmp_path)
    assert str(tmp_path / hold.MARKER) in str(caught.value) and "inv gitops.apply" in str(caught.value)
    assert (tmp_path / hold.MARKER).read_text() == "{not json"  # kept for the owner to read


def test_nothing_is_held_for_objects_argo_cd_does_not_manage_or_already_paused(tmp_path: Path) -> None:
    kube = Applications(application("root", None), application("app-notes", "root", None))
    assert hold.observe(kube, [{"kind": "Deployment", "metadata": {"name": "x"}}]).pause(tmp_path, "t") == []
    held = hold.observe(kube, [deployment("app-notes")])
    assert [p.name for p in held.paused] == ["root"]
    assert any("app-notes: automated sync is already off" in n for n in held.notes)


def test_an_explicitly_disabled_automated_policy_counts_as_off(tmp_path: Path) -> None:
    kube = Applications(application("app-notes", None, {"enabled": False, "selfHeal": True}))
    assert hold.observe(kube, [deployment("app-notes")]).paused == []


def test_a_tracking_loop_ends(tmp_path: Path) -> None:
    a, b = application("a", "b"), application("b", "a")
    assert [x["metadata"]["name"] for x in hold.chain({"a": a, "b": b}, "a")] == ["b", "a"]


def test_the_hold_is_in_the_printed_plan() -> None:
    pause = hold.pause_actions(Path("/state"), "the restore of notes", [hold.Paused("root", "argocd", AUTOMATED)])
    lines = list(Plan("restore", pause).lines())
    assert "[local] write /state/argocd-paused.json (mode 0600" in lines[1]
    assert "patch Application argocd/root: pause automated sync while the restore of notes works" in lines[2]


# --- checksums ---------------------------------------------------------------------------------


@pytest.fixture
def cfg() -> Any:
    return validate(loopback_data())


def pod_annotations(rendered: tree.Rendered, path: str) -> dict[str, str]:
    [found] = [o for o in rendered.files[path] if o["kind"] == "Deployment"]
    return dict(found["spec"]["template"]["metadata"].get("annotations") or {})


def test_a_new_public_hostname_changes_cloudflareds_pod_template(cfg: Any) -> None:
    """cloudflared reads its ingress rules only at start: its pods must roll when a hostname is added."""
    before = pod_annotations(tree.render(cfg), "platform/cloudflared/manifests.yaml")
    homepage = cfg.apps["homepage"]
    extra = homepage.model_copy(update={"hostname": "extra", "public": True})  # the tunnel carries public ones
    more = cfg.model_copy(update={"apps": {**cfg.apps, "extra": extra}})
    after = pod_annotations(tree.render(more), "platform/cloudflared/manifests.yaml")
    assert set(before) == {checksums.CONFIG} and before[checksums.CONFIG] != after[checksums.CONFIG]
    assert pod_annotations(tree.render(cfg), "platform/cloudflared/manifests.yaml") == before  # deterministic


def sealed(name: str, namespace: str, value: str) -> str:
    return (
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  encryptedData: {{ADMIN_TOKEN: {value}}}\n  template: {{metadata: {{name: {name}, "
        f"namespace: {namespace}}}}}\n"
    )


def test_a_resealed_secret_changes_the_template_of_the_pods_that_read_it(cfg: Any) -> None:
    """The app reads its Secret through envFrom, only at start; the template carries the sealed data's checksum."""
    [name] = [n for n, a in sorted(cfg.deployed_apps.items()) if a.secrets][:1]
    path = f"apps/{name}/app.yaml"
    file = f"{name}-{name}-secrets.yaml"
    assert checksums.SECRET not in pod_annotations(tree.render(cfg, sealed_files={}), path)
    first = pod_annotations(tree.render(cfg, sealed_files={file: sealed(f"{name}-secrets", name, "AgB1")}), path)
    again = pod_annotations(tree.render(cfg, sealed_files={file: sealed(f"{name}-secrets", name, "AgB2")}), path)
    assert first[checksums.SECRET] != again[checksums.SECRET]
    other = pod_annotations(tree.render(cfg, sealed_files={file: sealed("x-secrets", "x", "AgB2")}), path)
    assert checksums.SECRET not in other  # another namespace's secret is not this app's


def test_every_way_a_pod_reads_a_config_map_or_secret_is_found() -> None:
    pod = {
        "volumes": [
            {"name": "a", "configMap": {"name": "cm-vol"}},
            {"name": "b", "secret": {"secretName": "s-vol"}},
            {"name": "c", "projected": {"sources": [{"configMap": {"name": "cm-proj"}}, {"secret": {"name": "s-p"}}]}},
        ],
        "initContainers": [{"envFrom": [{"configMapRef": {"name": "cm-init"}}]}],
        "containers": [
            {
                "envFrom": [{"secretRef": {"name": "s-env"}}],
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s-key", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "cm-key", "key": "k"}}},
                    {"name": "Z", "value": "plain"},
                ],
            }
        ],
    }
    assert checksums.references(pod) == (
        {"cm-vol", "cm-proj", "cm-init", "cm-key"},
        {"s-vol", "s-p", "s-env", "s-key"},
    )


def test_resealing_a_secret_rewrites_exactly_the_files_of_the_pods_that_read_it(cfg: Any) -> None:
    """secrets.rotate commits the re-rendered Deployment with the SealedSecret, or the pods never roll."""
    [name] = [n for n, a in sorted(cfg.deployed_apps.items()) if a.secrets][:1]
    changed = tree.changed_by_sealing(cfg, {f"{name}-{name}-secrets.yaml": sealed(f"{name}-secrets", name, "AgB3")})
    assert list(changed) == [f"apps/{name}/app.yaml"]
    assert checksums.SECRET in changed[f"apps/{name}/app.yaml"]
    assert tree.changed_by_sealing(cfg, {"x-other.yaml": sealed("other", "x", "AgB3")}) == {}


def test_an_upgrade_that_lifts_pdbs_pauses_argo_cd_before_the_lift_and_resumes_after_the_restore(
    cfg: Any, tmp_path: Path
) -> None:
    """Self-heal would put a lifted PDB's minAvailable back from Git under the drain, and the drain would block."""
    from homelab.k3s import plan as k3s

    paused = [hold.Paused("root", "argocd", AUTOMATED), hold.Paused("app-notes", "argocd", AUTOMATED)]
    steps = (hold.pause_actions(tmp_path, "the upgrade", paused), hold.resume_actions(tmp_path, paused))
    actions = k3s.upgrade_plan(cfg, cfg.server, "v1.34.1+k3s1", lambda: None, True, steps).actions
    names = [type(a).__name__ for a in actions]
    assert names[:6] == ["Patch", "Cordon", "WriteFile", "Patch", "Patch", "LiftPdbs"]
    assert names[-4:] == ["RestorePdbs", "Patch", "Patch", "Run"]
    without = k3s.upgrade_plan(cfg, cfg.server, "v1.34.1+k3s1", lambda: None, False, steps).actions
    assert "WriteFile" not in [type(a).__name__ for a in without]  # no lift, nothing Argo CD would undo
