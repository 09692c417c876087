"""The sandbox target and the Kubernetes client layer, against a real API server."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import loopback_data, run_cli
from homelab.core.kube import Kube, KubeError
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


def test_server_side_apply_twice_changes_no_resource_version(kube: Kube, namespace: str) -> None:
    objects = [
        deployment("api", namespace),
        pdb("api-pdb", namespace, "api"),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": namespace},
            "data": {"a": "1"},
        },
    ]
    first = kube.apply(objects)
    assert all(a.changed for a in first)
    config_map = kube.get("v1", "ConfigMap", "cfg", namespace)
    second = kube.apply(objects)
    assert [a.changed for a in second if a.ref.startswith("ConfigMap")] == [False]
    assert (
        kube.get("v1", "ConfigMap", "cfg", namespace)["metadata"]["resourceVersion"]
        == config_map["metadata"]["resourceVersion"]
    )
    dep_versions = {a.ref: a.resource_version for a in second}
    third = kube.apply(objects)
    assert {a.ref: a.resource_version for a in third if "Deployment" not in a.ref} == {
        k: v for k, v in dep_versions.items() if "Deployment" not in k
    }


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


def test_cli_up_twice_is_one_cluster_and_down_leaves_nothing(tmp_path: Path) -> None:
    data = loopback_data()
    data["name"] = "cli"
    config = tmp_path / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    state = tmp_path / "state"
    env = {"HOMELAB_CONFIG": str(config), "HOMELAB__STATE_DIR": str(state)}
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
