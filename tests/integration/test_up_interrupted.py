"""`inv up` on the sandbox, killed at step boundaries and mid-step, converges when re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Context

from helpers import REPO, interrupt, inv_binary, loopback_data, run_cli, start_inv
from homelab.core import cluster
from homelab.core.session import Session
from homelab.gitops import local, tree
from homelab.sandbox import controllers

pytestmark = pytest.mark.integration

KILL_AFTER = [
    ("create cluster", 1.0),  # mid-step: kwokctl is starting the control plane
    ("[1/2] sandbox: changed", 0.0),  # boundary between the layers
    ("commit --quiet", 0.0),  # mid-step: the tree committed in the working copy, not pushed
    ("Applications to be Synced", 1.0),  # mid-step: the root Application applied, Argo CD syncing
]


def config_in(tmp: Path) -> dict[str, str]:
    data = loopback_data()
    data.update({"name": "upkill", "state_dir": str(tmp / "state")})
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "homelab.yaml").write_text(yaml.safe_dump(data))
    return {"HOMELAB_CONFIG": str(tmp / "homelab.yaml")}


def live_state(env: dict[str, str]) -> dict[str, Any]:
    """Every object of the sandbox's tree as it lives in the cluster (spec or data), plus the nodes' readiness.

    Applications are compared by their spec with the repository URL left out (each sandbox's git
    daemon has a port of its own), and must all be Synced and Healthy at the pushed commit.
    """
    session = Session(Context(), config_path=Path(env["HOMELAB_CONFIG"]), out=lambda _: None)
    kube = cluster.connect(session)
    url = controllers.repo_url(session)
    rendered = tree.render(local.sandbox_config(session.cfg, url), local_controllers=True)
    state: dict[str, Any] = {}
    for obj in tree.objects_in_apply_order(rendered):
        meta = obj["metadata"]
        live = kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        assert live is not None, f"{obj['kind']} {meta['name']} missing"
        # Only the fields the toolkit sets: cluster-assigned ones (clusterIP, uid) differ between clusters.
        body = json.loads(json.dumps(project(live, obj)).replace(url, "<repository>"))
        state[f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}"] = body
    state["nodes"] = kube.ready_nodes()
    names = sorted(tree.applications(rendered))
    lay = controllers.layout(session)
    assert local.applications_pending(kube, names, lambda: local.pushed_commit(lay.repository)) is None
    return state


def project(live: Any, wanted: Any) -> Any:
    """``live`` reduced to the shape of ``wanted``."""
    if isinstance(wanted, dict) and isinstance(live, dict):
        return {k: project(live.get(k), v) for k, v in wanted.items()}
    if isinstance(wanted, list) and isinstance(live, list) and len(wanted) == len(live):
        return [project(a, b) for a, b in zip(live, wanted, strict=True)]
    return live


def kill_when(env: dict[str, str], marker: str, delay: float) -> str:
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("HOMELAB")}, **env}
    process = subprocess.Popen(
        [inv_binary(), "up", "--target", "sandbox"],
        cwd=REPO,
        env=full,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    seen = ""
    assert process.stdout is not None
    for line in process.stdout:
        seen += line
        if marker in line:
            time.sleep(delay)
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"up ended on its own before the kill:\n{seen}"
    return seen


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The state an uninterrupted `inv up` reaches."""
    env = config_in(tmp_path_factory.mktemp("baseline"))
    try:
        assert run_cli(["up", "--target", "sandbox"], env).code == 0
        yield live_state(env)
    finally:
        run_cli(["sandbox.down"], env)


@pytest.mark.parametrize(("marker", "delay"), KILL_AFTER, ids=[m.strip("[] ") for m, _ in KILL_AFTER])
def test_killed_up_converges_to_the_uninterrupted_state(
    tmp_path: Path, baseline: dict[str, Any], marker: str, delay: float
) -> None:
    interrupted_env = config_in(tmp_path / "interrupted")
    try:
        seen = kill_when(interrupted_env, marker, delay)
        assert marker in seen, seen
        rerun = run_cli(["up", "--target", "sandbox"], interrupted_env)
        assert rerun.code == 0, rerun.output
        assert live_state(interrupted_env) == baseline
        again = run_cli(["up", "--target", "sandbox"], interrupted_env)
        assert "nothing to do" in again.stdout, again.output
    finally:
        run_cli(["sandbox.down"], interrupted_env)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_while_up_waits_for_argo_cd_ends_it_with_its_code_and_a_rerun_converges(
    tmp_path: Path, how: str
) -> None:
    """Ctrl-C reaches the process group (a terminal); SIGTERM only inv's own process (a service manager)."""
    env = config_in(tmp_path / "signalled")
    process = start_inv(["up", "--target", "sandbox"], env, merge_stderr=True)
    try:
        seen = ""
        assert process.stdout is not None
        for line in process.stdout:
            seen += line
            if "Applications to be Synced" in line:
                break
        code = interrupt(process, how)
        rest, _ = process.communicate(timeout=90)
        assert process.returncode == code, seen + rest
        assert "re-run the same command" in rest and "Traceback" not in rest, rest
        rerun = run_cli(["up", "--target", "sandbox"], env)
        assert rerun.code == 0, rerun.output
        assert "nothing to do" in run_cli(["up", "--target", "sandbox"], env).stdout
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        run_cli(["sandbox.down"], env)
