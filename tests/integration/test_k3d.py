"""The k3d target and testcontainers' K3SContainer: a real K3S where a Docker engine answers.

These are the only tests skipped here, and only because no Docker engine runs on
this kind of machine; on a machine with Docker they run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import loopback_data, run_cli

K3S_IMAGE = "rancher/k3s:v1.33.5-k3s1"


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


pytestmark = [
    pytest.mark.integration,
    pytest.mark.docker,
    pytest.mark.skipif(not docker_engine_answers(), reason="no Docker engine answers on this machine"),
]


def test_existing_target_on_a_k3s_container(tmp_path: Path) -> None:
    from testcontainers.k3s import K3SContainer

    with K3SContainer(image=K3S_IMAGE) as k3s:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(k3s.config_yaml())
        context = yaml.safe_load(kubeconfig.read_text())["current-context"]
        data = loopback_data()
        data.update(
            {
                "target": "existing",
                "kubeconfig": str(kubeconfig),
                "kube_context": context,
                "state_dir": str(tmp_path / "state"),
            }
        )
        (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
        env = {"HOMELAB_CONFIG": str(tmp_path / "homelab.yaml")}
        plan = run_cli(["gitops.apply", "--dry-run"], env)
        assert plan.code == 0 and "apply Deployment vaultwarden/vaultwarden" in plan.stdout


@pytest.mark.skipif(shutil.which("k3d") is None, reason="k3d is not installed")
def test_k3d_target_up_is_idempotent_and_down_removes_it(tmp_path: Path) -> None:
    data = loopback_data()
    data.update({"name": "k3dtest", "target": "k3d", "state_dir": str(tmp_path / "state")})
    (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
    env = {"HOMELAB_CONFIG": str(tmp_path / "homelab.yaml")}
    try:
        assert run_cli(["k3d.up"], env).code == 0
        assert "nothing to do" in run_cli(["k3d.up"], env).stdout
        kubeconfig = yaml.safe_load((tmp_path / "state" / "kubeconfig").read_text())
        assert [c["name"] for c in kubeconfig["contexts"]] == ["k3dtest"]
    finally:
        assert run_cli(["k3d.down"], env).code == 0
