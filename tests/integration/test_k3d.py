"""The k3d target and testcontainers' K3SContainer: a real K3S where a Docker engine answers.

These are the only tests skipped here, and only because no Docker engine runs on
this kind of machine; on a machine with Docker they run. Unlike the sandbox, pods
here are real: an image is pulled, a volume provisioned, a probe passes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import loopback_data, run_cli
from homelab.core.kube import Kube, deployment_waiting

K3S_IMAGE = "rancher/k3s:v1.33.5-k3s1"
# A small app that listens as an unprivileged user on an unprivileged port; storage: the default 1GiB.
WHOAMI = {
    "image": "traefik/whoami:v1.11",
    "port": 8080,
    "hostname": "whoami",
    "env": {"WHOAMI_PORT_NUMBER": "8080"},
}


def docker_engine_answers() -> bool:
    """Whether the Docker API answers (DOCKER_HOST or the default socket): what testcontainers and k3d use."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=20)
    except (DockerException, OSError):
        return False
    try:
        return bool(client.ping())
    except (DockerException, OSError):
        return False
    finally:
        client.close()


pytestmark = [
    pytest.mark.integration,
    pytest.mark.docker,
    pytest.mark.skipif(not docker_engine_answers(), reason="no Docker engine answers on this machine"),
]


def existing_target_config(directory: Path, kubeconfig: Path, context: str) -> dict[str, Any]:
    """The loopback homelab pointed at a given cluster, with one small app and no Cloudflare tunnel."""
    data = loopback_data()
    data.update(
        {
            "target": "existing",
            "kubeconfig": str(kubeconfig),
            "kube_context": context,
            "state_dir": str(directory / "state"),
            "apps": {"whoami": WHOAMI},
        }
    )
    data["cloudflare"]["tunnel_enabled"] = False  # its pod needs real tunnel credentials
    return data


def test_existing_target_on_a_k3s_container_runs_the_applied_app(tmp_path: Path) -> None:
    from testcontainers.k3s import K3SContainer

    with K3SContainer(image=K3S_IMAGE) as k3s:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(k3s.config_yaml())
        kubeconfig.chmod(0o600)
        context = yaml.safe_load(kubeconfig.read_text())["current-context"]
        (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(existing_target_config(tmp_path, kubeconfig, context)))
        env = {"HOMELAB_CONFIG": str(tmp_path / "homelab.yaml")}

        applied = run_cli(["gitops.apply"], env, timeout=600)
        assert applied.code == 0 and "gitops.apply: converged" in applied.stdout, applied.output

        kube = Kube(kubeconfig, context)
        deployment = kube.get("apps/v1", "Deployment", "whoami", "whoami")
        assert deployment_waiting(deployment) is None, deployment and deployment.get("status")
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == WHOAMI["image"]
        assert container["env"] == [{"name": "WHOAMI_PORT_NUMBER", "value": "8080"}]
        assert container["ports"][0]["containerPort"] == 8080
        [pod] = kube.list_objects("v1", "Pod", "whoami", label_selector="app.kubernetes.io/name=whoami")
        assert pod["status"]["phase"] == "Running" and pod["spec"]["nodeName"] in kube.ready_nodes()
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True", pod["status"]  # its TCP readiness probe reached port 8080
        claim = kube.get("v1", "PersistentVolumeClaim", "whoami-data", "whoami")
        assert claim and claim["status"]["phase"] == "Bound"  # provisioned by K3S's local-path provisioner
        assert kube.get("v1", "Service", "whoami", "whoami")["spec"]["ports"][0]["port"] == 8080
        route = kube.get("gateway.networking.k8s.io/v1", "HTTPRoute", "whoami", "whoami")
        assert route["spec"]["hostnames"] == ["whoami.home.test"]
        assert kube.get("apps/v1", "Deployment", "cloudflared", "cloudflared") is None

        again = run_cli(["gitops.apply"], env, timeout=600)
        assert again.code == 0 and "gitops.apply: nothing to do" in again.stdout, again.output


@pytest.mark.skipif(shutil.which("k3d") is None, reason="k3d is not installed")
def test_k3d_target_up_is_idempotent_and_down_removes_it(tmp_path: Path) -> None:
    data = loopback_data()
    data.update({"name": "k3dtest", "target": "k3d", "state_dir": str(tmp_path / "state")})
    (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
    env = {"HOMELAB_CONFIG": str(tmp_path / "homelab.yaml")}
    kubeconfig = tmp_path / "state" / "kubeconfig"
    try:
        assert run_cli(["k3d.up"], env).code == 0
        assert "nothing to do" in run_cli(["k3d.up"], env).stdout
        assert [c["name"] for c in yaml.safe_load(kubeconfig.read_text())["contexts"]] == ["k3dtest"]
        ready = Kube(kubeconfig, "k3dtest").ready_nodes()
        assert len(ready) == len(data["nodes"]) and all(ready.values()), ready  # one server, the agents
    finally:
        assert run_cli(["k3d.down"], env).code == 0
    left = yaml.safe_load(kubeconfig.read_text()) if kubeconfig.exists() else None
    assert "k3dtest" not in [c["name"] for c in (left or {}).get("contexts") or []]
