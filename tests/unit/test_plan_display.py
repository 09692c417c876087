"""What a plan prints: the text a user reviews under --dry-run, line by line, secrets masked.

The printed plan is the only description of what a task will do, so each kind of
action is held to the exact line it prints.
"""

from __future__ import annotations

from homelab.core.plan import (
    Apply,
    Cordon,
    Delete,
    Download,
    Drain,
    LiftPdbs,
    Note,
    Patch,
    Plan,
    RestorePdbs,
    Run,
    Upload,
    Wait,
    WriteFile,
    object_ref,
)
from homelab.core.secret_refs import REDACTOR, Secret


def obj(kind: str, name: str, namespace: str | None = None) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def test_each_action_prints_one_exact_line() -> None:
    assert Run(("limactl", "start", "vm a"), host="mac").display() == "[mac] run: limactl start 'vm a'"
    assert Run(("ls",), cwd="/my dir", sudo=True).display() == "[local] run: cd '/my dir' && sudo -n -- ls"
    assert (
        Run(("restic", "snapshots"), env=(("RESTIC_REPOSITORY", "/r"), ("RESTIC_CACHE_DIR", "/c"))).display()
        == "[local] run: restic snapshots  (env RESTIC_REPOSITORY=/r RESTIC_CACHE_DIR=/c)"
    )
    assert Run(("k3s", "agent"), stdin=Secret("x" * 8, "file ~/.t")).display() == (
        "[local] run: k3s agent  < file ~/.t (secret)"
    )
    assert WriteFile("/etc/a", "abc", 0o640, host="n").display() == "[n] write /etc/a (mode 0640, 3 bytes)"
    assert WriteFile("/etc/t", Secret("abcd", "env T"), 0o600).display() == (
        "[local] write /etc/t (secret, mode 0600, 4 bytes)"
    )
    assert Note("all good", host="n").display() == "[n] all good"
    assert Upload("/l/img", "/r/img", "n", 0o644).display() == "[n] upload /l/img -> /r/img (mode 0644)"
    assert Download("/r/k", "/l/k", "n").display() == "[n] download /r/k -> /l/k (mode 0600)"
    assert Delete("v1", "Secret", "s", "ns").display() == "[cluster] delete Secret ns/s"
    assert Delete("v1", "Namespace", "ns").display() == "[cluster] delete Namespace ns"
    assert Cordon("a").display() == "[cluster] cordon node a"
    assert Cordon("a", uncordon=True).display() == "[cluster] uncordon node a"
    assert Drain("a", 299.6).display() == "[cluster] drain node a (evictions honour PDBs; timeout 300s)"
    assert LiftPdbs("a").display() == (
        "[cluster] lift single-replica PodDisruptionBudgets of pods on a (allowed downtime)"
    )
    assert RestorePdbs().display() == "[cluster] restore lifted PodDisruptionBudgets"
    assert Wait("pods", lambda: None, timeout=59.6).display() == "[cluster] wait for pods (up to 60s)"


def test_a_patch_prints_why_it_is_made_else_its_body() -> None:
    assert Patch("apps/v1", "Deployment", "d", "ns", {"spec": {"replicas": 0}}, why="stop d").display() == (
        "[cluster] patch Deployment ns/d: stop d"
    )
    assert Patch("v1", "Node", "a", None, {"spec": {"unschedulable": True}}).display() == (
        "[cluster] patch Node a: {'spec': {'unschedulable': True}}"
    )


def test_an_apply_names_up_to_six_objects_then_counts_them() -> None:
    few = Apply((obj("ConfigMap", "c0", "ns"), obj("ConfigMap", "c1", "ns"), obj("Namespace", "ns")))
    assert few.display() == "[cluster] apply ConfigMap ns/c0, ConfigMap ns/c1, Namespace ns"
    six = Apply(tuple(obj("ConfigMap", f"c{i}") for i in range(6)))
    assert six.display() == "[cluster] apply " + ", ".join(f"ConfigMap c{i}" for i in range(6))
    many = Apply(tuple(obj("ConfigMap", f"c{i}") for i in range(7)))
    assert many.display() == "[cluster] apply " + ", ".join(f"ConfigMap c{i}" for i in range(6)) + ", ... (7 objects)"


def test_an_object_without_kind_or_name_is_still_named() -> None:
    assert object_ref(obj("Service", "s", "ns")) == "Service ns/s"
    assert object_ref({"metadata": {"namespace": "ns"}}) == "? ns/?"
    assert object_ref({}) == "? ?"


def test_a_plan_prints_its_title_then_each_action_and_says_when_nothing_changes() -> None:
    plan = Plan("vms", [Note("a: running"), Run(("limactl", "start", "b"))])
    assert list(plan.lines()) == ["plan: vms", "  [local] a: running", "  [local] run: limactl start b"]
    idle = Plan("vms", [Note("a: running"), Wait("x", lambda: None)])
    assert idle.empty and list(idle.lines()) == [
        "plan: vms",
        "  nothing to do",
        "  [local] a: running",
        "  [cluster] wait for x (up to 120s)",
    ]


def test_only_changes_count_and_hosts_are_listed_once_in_order() -> None:
    plan = Plan("p").add(Note("n", host="z"), Run(("a",), host="b"), WriteFile("/f", "x", host="a"))
    plan.extend([Run(("c",), host="b"), Wait("w", lambda: None), Cordon("node")])
    assert [type(a).__name__ for a in plan.changes()] == ["Run", "WriteFile", "Run", "Cordon"]
    assert plan.hosts() == ["a", "b", "cluster"]
    on_b = plan.for_host("b")
    assert on_b.title == "p [b]" and [a.argv for a in on_b.actions if isinstance(a, Run)] == [("a",), ("c",)]


def test_a_registered_secret_never_appears_in_a_printed_line() -> None:
    REDACTOR.register("pa55-in-a-title")
    plan = Plan("deploy pa55-in-a-title", [Run(("echo", "pa55-in-a-title")), Note("pa55-in-a-title")])
    plan.add(Patch("v1", "Secret", "s", "n", {"data": "pa55-in-a-title"}))
    assert not [line for line in plan.lines() if "pa55-in-a-title" in line]
