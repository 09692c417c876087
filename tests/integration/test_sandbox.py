"""The sandbox target and the Kubernetes client layer, against a real API server."""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import loopback_data, run_cli
from homelab.core.kube import Kube, KubeError
from homelab.core.kube.apply import APPLIED_HASH, body_hash
from homelab.core.session import Session

pytestmark = pytest.mark.integration


def deployment(name: str, namespace: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": "nginx:1.27",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ]
                },
            },
        },
    }


def pdb(name: str, namespace: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}},
    }


def test_nodes_are_named_and_labelled_like_the_config(kube: Kube, sandbox_session: Session) -> None:
    assert kube.ready_nodes() == {n.name: True for n in sandbox_session.cfg.nodes}
    server = kube.get("v1", "Node", "k3s-server")
    assert server is not None
    assert server["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true"
    assert server["status"]["capacity"]["cpu"] == "4"


def test_deployment_becomes_available(kube: Kube, namespace: str) -> None:
    kube.apply([deployment("web", namespace, replicas=2)])
    kube.wait_deployments([(namespace, "web")], timeout=60)
    assert kube.deployment_waiting("web", namespace) is None


def test_pdb_blocks_eviction_of_the_only_pod_and_names_the_pdb(kube: Kube, namespace: str) -> None:
    kube.apply([deployment("vault", namespace), pdb("vault-pdb", namespace, "vault")])
    kube.wait_deployments([(namespace, "vault")], timeout=60)

    def pdb_observed() -> str | None:
        live = kube.get("policy/v1", "PodDisruptionBudget", "vault-pdb", namespace) or {}
        return None if (live.get("status") or {}).get("currentHealthy") == 1 else "status not computed"

    kube.wait_for("PDB status", pdb_observed, timeout=60)
    [pod] = kube.list_objects("v1", "Pod", namespace, label_selector="app=vault")
    with pytest.raises(KubeError) as caught:
        kube.evict(pod["metadata"]["name"], namespace)
    assert f"PodDisruptionBudget {namespace}/vault-pdb" in str(caught.value)
    assert kube.get("v1", "Pod", pod["metadata"]["name"], namespace) is not None


def config_map(name: str, namespace: str, data: dict[str, str], **meta: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "data": data,
    }


def versions(kube: Kube, objects: list[dict[str, Any]]) -> dict[str, tuple[str, int | None]]:
    """resourceVersion and generation of each object, read from the cluster."""
    found = {}
    for obj in objects:
        live = kube.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
        assert live is not None, obj["metadata"]["name"]
        found[obj["metadata"]["name"]] = (live["metadata"]["resourceVersion"], live["metadata"].get("generation"))
    return found


def settled(kube: Kube, objects: list[dict[str, Any]]) -> dict[str, tuple[str, int | None]]:
    """``versions`` once the controllers have stopped writing status (two reads a second apart agree)."""
    previous = versions(kube, objects)
    for _ in range(30):
        time.sleep(1)
        current = versions(kube, objects)
        if current == previous:
            return current
        previous = current
    raise AssertionError(f"objects never stopped changing: {previous}")


def test_resending_the_same_bodies_writes_nothing(kube: Kube, namespace: str, applies_sent: list[str]) -> None:
    """The API server's own idempotence: every object sent again, none written."""
    objects = [
        deployment("api", namespace),
        pdb("api-pdb", namespace, "api"),
        config_map("cfg", namespace, {"a": "1"}, labels={"tier": "web"}, annotations={"note": "n"}),
    ]
    first = kube.apply(objects)
    assert all(a.changed for a in first)
    kube.wait_deployments([(namespace, "api")], timeout=60)
    before = settled(kube, objects)
    applies_sent.clear()
    again = kube.apply(objects, resend=True)
    assert len(applies_sent) == len(objects), "every object sent again"
    assert [a.ref for a in again if a.changed] == []
    assert {a.ref.rsplit("/", 1)[1]: a.resource_version for a in again} == {k: v[0] for k, v in before.items()}
    assert versions(kube, objects) == before


def test_fields_removed_from_the_body_leave_the_live_object(kube: Kube, namespace: str) -> None:
    app = deployment("app", namespace)
    app["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "KEEP", "value": "1"},
        {"name": "FOO", "value": "2"},
    ]
    cfg = config_map(
        "cfg", namespace, {"a": "1", "b": "2"}, labels={"tier": "web", "old": "x"}, annotations={"note": "n"}
    )
    kube.apply([app, cfg])
    del app["spec"]["template"]["spec"]["containers"][0]["env"][1]
    slim = config_map("cfg", namespace, {"a": "1"}, labels={"tier": "web"})
    changed = kube.apply([app, slim])
    assert all(a.changed for a in changed)
    live_app = kube.get("apps/v1", "Deployment", "app", namespace)
    assert live_app["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "KEEP", "value": "1"}]
    live_cfg = kube.get("v1", "ConfigMap", "cfg", namespace)
    assert live_cfg["data"] == {"a": "1"}
    assert live_cfg["metadata"]["labels"] == {"tier": "web"}
    assert "note" not in live_cfg["metadata"].get("annotations", {})


def set_recorded_hash(kube: Kube, name: str, namespace: str, value: str) -> None:
    """Overwrite the applied-hash annotation as another client would (a merge patch)."""
    kube.resource("v1", "ConfigMap").patch(
        name=name,
        namespace=namespace,
        content_type="application/merge-patch+json",
        body={"metadata": {"annotations": {APPLIED_HASH: value}}},
    )


def test_a_matching_recorded_hash_sends_nothing_and_a_differing_one_applies(
    kube: Kube, namespace: str, applies_sent: list[str]
) -> None:
    """Made visible with a key only the apply would prune: it stays while the hash matches."""
    kube.apply([config_map("cfg", namespace, {"a": "1", "b": "2"})])
    slim = config_map("cfg", namespace, {"a": "1"})
    set_recorded_hash(kube, "cfg", namespace, body_hash(slim))
    applies_sent.clear()
    [skipped] = kube.apply([slim])
    assert not skipped.changed and applies_sent == []
    assert kube.get("v1", "ConfigMap", "cfg", namespace)["data"] == {"a": "1", "b": "2"}, "a request was sent"

    set_recorded_hash(kube, "cfg", namespace, "an-older-body")
    [applied] = kube.apply([slim])
    assert applied.changed and len(applies_sent) == 1
    live = kube.get("v1", "ConfigMap", "cfg", namespace)
    assert live["data"] == {"a": "1"}
    assert live["metadata"]["annotations"][APPLIED_HASH] == body_hash(slim)


def test_a_hand_edit_is_reverted_although_the_hash_matches(kube: Kube, namespace: str) -> None:
    cfg = config_map("cfg", namespace, {"a": "1"})
    kube.apply([cfg])
    kube.resource("v1", "ConfigMap").patch(
        name="cfg", namespace=namespace, content_type="application/merge-patch+json", body={"data": {"a": "edited"}}
    )
    [fixed] = kube.apply([cfg])
    assert fixed.changed
    assert kube.get("v1", "ConfigMap", "cfg", namespace)["data"] == {"a": "1"}


def test_server_side_dry_run_changes_nothing(kube: Kube, namespace: str) -> None:
    new = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "planned", "namespace": namespace},
        "data": {"k": "v"},
    }
    [result] = kube.apply([new], dry_run=True)
    assert result.changed
    assert kube.get("v1", "ConfigMap", "planned", namespace) is None
    kube.apply([new])
    before = kube.get("v1", "ConfigMap", "planned", namespace)
    [result] = kube.apply([{**new, "data": {"k": "changed"}}], dry_run=True)
    assert result.changed
    after = kube.get("v1", "ConfigMap", "planned", namespace)
    assert after["data"] == {"k": "v"}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    [same] = kube.apply([new], dry_run=True)
    assert not same.changed


def test_invalid_field_surfaces_the_api_servers_message(kube: Kube, namespace: str) -> None:
    bad = deployment("broken", namespace)
    bad["spec"]["replicas"] = "three"
    bad_port = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc", "namespace": namespace},
        "spec": {"ports": [{"port": 70000}], "selector": {"app": "x"}},
    }
    with pytest.raises(KubeError) as caught:
        kube.apply([bad, bad_port])
    text = str(caught.value)
    assert f"Deployment {namespace}/broken" in text and "replicas" in text
    assert f"Service {namespace}/svc" in text and "70000" in text
    assert kube.get("apps/v1", "Deployment", "broken", namespace) is None


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def cli_sandbox(tmp_path: Path, name: str) -> tuple[dict[str, str], Path]:
    """The CLI's environment for a loopback sandbox named ``name`` with its state in ``tmp_path``; that state dir."""
    data = loopback_data()
    data["name"] = name
    config = tmp_path / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    state = tmp_path / "state"
    return {"HOMELAB_CONFIG": str(config), "HOMELAB__STATE_DIR": str(state)}, state


def test_cli_up_twice_is_one_cluster_and_down_leaves_nothing(tmp_path: Path) -> None:
    env, state = cli_sandbox(tmp_path, "cli")
    first = run_cli(["sandbox.up"], env)
    assert first.code == 0, first.output
    second = run_cli(["sandbox.up"], env)
    assert second.code == 0 and "nothing to do" in second.stdout, second.output
    status = run_cli(["sandbox.status"], env)
    assert status.code == 0 and "3/3 nodes Ready" in status.stdout, status.output
    kubeconfig = yaml.safe_load((state / "kubeconfig").read_text())
    assert [c["name"] for c in kubeconfig["contexts"]] == ["cli-sandbox"]
    assert (state / "kubeconfig").stat().st_mode & 0o777 == 0o600
    port = int(kubeconfig["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])
    assert kubeconfig["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
    pids = [int(p.read_text()) for p in (state / "kwok" / "clusters" / "cli-sandbox" / "pids").glob("*.pid")]
    assert len(pids) >= 5

    down = run_cli(["sandbox.down"], env)
    assert down.code == 0, down.output
    assert [p for p in pids if os.path.exists(f"/proc/{p}")] == []
    assert not listening(port)
    assert not (state / "kwok").exists() and not (state / "kubeconfig").exists()
    again = run_cli(["sandbox.down"], env)
    assert again.code == 0 and "nothing to do" in again.stdout
    stopped = run_cli(["sandbox.status"], env)
    assert stopped.code == 1
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout
    assert leftovers == ""


def test_two_sandboxes_created_at_the_same_moment_both_answer(tmp_path: Path) -> None:
    """Two homelabs on one machine (or two test workers): their control planes must not pick the same ports."""
    envs = []
    for name in ("twina", "twinb"):
        data = loopback_data()
        data["name"] = name
        (tmp_path / name).mkdir()
        config = tmp_path / name / "homelab.yaml"
        config.write_text(yaml.safe_dump(data))
        envs.append({"HOMELAB_CONFIG": str(config), "HOMELAB__STATE_DIR": str(tmp_path / name / "state")})
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            ups = list(pool.map(lambda env: run_cli(["sandbox.up"], env), envs))
        for up in ups:
            assert up.code == 0, up.output
        servers = set()
        for env in envs:
            status = run_cli(["sandbox.status"], env)
            assert status.code == 0 and "3/3 nodes Ready" in status.stdout, status.output
            kubeconfig = yaml.safe_load(Path(env["HOMELAB__STATE_DIR"], "kubeconfig").read_text())
            servers.add(kubeconfig["clusters"][0]["cluster"]["server"])
        assert len(servers) == 2
    finally:
        for env in envs:
            run_cli(["sandbox.down"], env)


APPLICATION_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "applications.argoproj.io"},
    "spec": {
        "group": "argoproj.io",
        "names": {
            "kind": "Application",
            "listKind": "ApplicationList",
            "plural": "applications",
            "singular": "application",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def serves_applications(kube: Kube) -> bool:
    try:
        kube.resource("argoproj.io/v1alpha1", "Application")
    except KubeError:
        return False
    return True


def test_read_tasks_print_their_json_from_the_real_api_server(kube: Kube, sandbox_session: Session) -> None:
    from conftest import sandbox_config_path

    env = {"HOMELAB_CONFIG": str(sandbox_config_path(sandbox_session))}
    status = run_cli(["status", "--json"], env)
    report = json.loads(status.stdout)
    assert report["target"] == "sandbox" and [layer["name"] for layer in report["layers"]] == ["sandbox", "gitops"]
    assert report["layers"][0]["summary"].startswith("API ready, 3/3 nodes Ready"), report  # read from the server
    assert report["ok"] is all(layer["ok"] for layer in report["layers"])
    assert status.code == (0 if report["ok"] else 1)

    apps = run_cli(["apps.status", "--json"], env)
    rows = json.loads(apps.stdout)
    assert rows and {row["name"] for row in rows} == set(sandbox_session.cfg.deployed_apps)
    # nothing rendered the apps into this sandbox: not one is Available, and the exit code says so
    assert all(row == {"name": row["name"], "available": False, "waiting": "not created yet"} for row in rows), rows
    assert apps.code == 1

    if not serves_applications(kube):  # Argo CD's own CRD when another test installed it
        kube.apply([APPLICATION_CRD])
        deadline = time.monotonic() + 60
        while not serves_applications(kube) and time.monotonic() < deadline:
            time.sleep(0.5)
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}])
    name = f"json-{os.getpid()}"
    application = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "destination": {"namespace": "default", "server": "https://kubernetes.default.svc"},
        },
        "status": {"sync": {"status": "Synced", "revision": "0123abc"}, "health": {"status": "Healthy"}},
    }
    kube.apply([application])
    try:
        gitops = run_cli(["gitops.status", "--json"], env)
        assert gitops.code == 0, gitops.output
        by_name = {row["name"]: row for row in json.loads(gitops.stdout)}
        assert by_name[name] == {"name": name, "sync": "Synced", "health": "Healthy", "revision": "0123abc"}
    finally:
        kube.delete("argoproj.io/v1alpha1", "Application", name, "argocd")


def on_a_terminal(args: list[str], env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    """``inv ARGS`` with its stdout and stderr on a pseudo-terminal, as the owner runs it; (exit code, what it drew)."""
    import pty
    import select

    from helpers import A_ROOMY_HOST, REPO, inv_binary

    full = {k: v for k, v in os.environ.items() if not k.startswith("HOMELAB")}
    full.update({**A_ROOMY_HOST, **env, "COLUMNS": "100", "TERM": "xterm-256color"})
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [inv_binary(), *args], cwd=REPO, env=full, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    drawn = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal's other end closed: the task ended
                break
            if not chunk:
                break
            drawn += chunk
        elif process.poll() is not None:
            break
    os.close(main)
    return process.wait(timeout=60), drawn.decode(errors="replace")


def test_up_on_a_terminal_shows_steps_and_the_log_holds_the_plan(tmp_path: Path) -> None:
    env, state = cli_sandbox(tmp_path, "tty")
    try:
        code, drawn = on_a_terminal(["up", "--target", "sandbox", "--only", "sandbox", "--offline"], env)
        assert code == 0, drawn
        assert "[1/1] sandbox: changed (" in drawn and "up: target sandbox converged" in drawn, drawn
        assert "==> sandbox cluster" not in drawn, "the plan is folded into the step's live line"
        [log] = (state / "logs").glob("up-*.log")
        assert f"log: {log}" in drawn
        text = log.read_text()
        assert "==> sandbox cluster tty-sandbox" in text and "run: " in text and "[1/1] sandbox: changed (" in text
        assert log.stat().st_mode & 0o777 == 0o600

        verbose = run_cli(["up", "--target", "sandbox", "--only", "sandbox", "--offline", "--verbose"], env)
        assert verbose.code == 0, verbose.output
        assert "[1/1] sandbox: up to date (" in verbose.stdout and "plan: " in verbose.stdout, verbose.stdout
        assert len(list((state / "logs").glob("up-*.log"))) == 2, "one log per run"
    finally:
        run_cli(["sandbox.down"], env)
