"""Every task has a docstring and help text for every argument; the k3d plan is exact."""

from __future__ import annotations

from helpers import LOOPBACK_CONFIG
from homelab.cli import namespace


def all_tasks(collection, prefix=""):
    for name, task in collection.tasks.items():
        yield prefix + name, task
    for name, sub in collection.collections.items():
        yield from all_tasks(sub, prefix + name + ".")


def test_every_task_has_a_docstring_and_help_for_every_argument() -> None:
    missing = []
    for name, task in all_tasks(namespace):
        if not (task.__doc__ or task.body.__doc__):
            missing.append(f"{name}: no docstring")
        for argument in task.get_arguments():
            if not argument.help:
                missing.append(f"{name} --{argument.name}: no help")
    assert missing == []


def test_every_namespace_the_design_names_is_listed() -> None:
    names = set(namespace.collections)
    assert {"vm", "k3s", "net", "tls", "gitops", "apps", "backup", "secrets", "config"} <= names
    assert {"up", "down", "status", "doctor"} <= set(namespace.tasks)


def test_k3d_cluster_is_created_like_the_reference_homelab(monkeypatch) -> None:
    from invoke import Context

    from homelab.core.session import Session
    from homelab.k3d import cluster as k3d

    monkeypatch.setenv("HOMELAB__TARGET", "k3d")
    s = Session(Context(), config_path=LOOPBACK_CONFIG, out=lambda _: None)
    [run] = k3d.create_plan(s, "k3d").actions
    assert run.argv == (
        "k3d",
        "cluster",
        "create",
        "itest-k3d",
        "--agents",
        "2",
        "--image",
        "rancher/k3s:v1.33.5-k3s1",
        "--k3s-arg",
        "--disable=traefik@server:0",
        "--k3s-arg",
        "--disable=servicelb@server:0",
        "--kubeconfig-update-default=false",
        "--wait",
    )
