"""Doctor's node rules on given facts (the same facts come from real sshd nodes in integration tests)."""

from __future__ import annotations

from invoke import Context

from helpers import loopback_data
from homelab.k3s import preflight
from homelab.root import doctor


def test_node_checks_fail_on_sudo_password_and_low_disk(tmp_path, monkeypatch) -> None:
    import yaml

    from homelab.core.session import Session

    data = loopback_data()
    data.update({"target": "lima", "state_dir": str(tmp_path / "state")})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    s = Session(Context(), config_path=tmp_path / "c.yaml", out=lambda _: None)
    good = preflight.Facts("h", "ok", True, (), 50 * 1024**2, True, True, True)
    password = "sudo: a password is required"
    facts = {
        "k3s-server": good,
        "k3s-worker-1": preflight.Facts("h1", password, True, (), 50 * 1024**2, True, False, True),
        "k3s-worker-2": preflight.Facts("h2", "ok", True, (), 1024, True, False, False),
    }
    monkeypatch.setattr(preflight, "gather", lambda session, nodes: facts)
    checks = {c.name: c for c in doctor.check_nodes(s)}
    assert checks["node k3s-server sudo"].status == "ok" and checks["node k3s-server disk"].status == "ok"
    assert checks["node k3s-worker-1 sudo"].status == "fail" and "NOPASSWD" in checks["node k3s-worker-1 sudo"].fix
    assert checks["node k3s-worker-2 disk"].status == "fail"
    assert checks["node k3s-server sqlite3"].status == "ok"
    assert checks["node k3s-worker-1 sqlite3"].status == "fail"
    assert checks["node k3s-worker-1 sqlite3"].fix == "inv k3s.install installs it with apt-get"
    assert checks["node k3s-worker-2 sqlite3"].fix == "install sqlite3 on k3s-worker-2"
    assert not [name for name in checks if name.endswith(" installer")]  # K3S is on every node: nothing to download


def test_an_installer_that_does_not_download_fails_the_node_check(tmp_path, monkeypatch) -> None:
    import yaml

    from homelab.core.session import Session

    data = loopback_data()
    data.update({"target": "lima", "state_dir": str(tmp_path / "state")})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    s = Session(Context(), config_path=tmp_path / "c.yaml", out=lambda _: None)
    fresh = preflight.Facts("h", "ok", True, (), 50 * 1024**2, False, True, True, "ok")
    facts = {
        "k3s-server": fresh,
        "k3s-worker-1": fresh,
        "k3s-worker-2": preflight.Facts(
            "h2", "ok", True, (), 50 * 1024**2, False, True, True, "curl: (6) Could not resolve host: get.k3s.io"
        ),
    }
    monkeypatch.setattr(preflight, "gather", lambda session, nodes: facts)
    checks = {c.name: c for c in doctor.check_nodes(s)}
    assert checks["node k3s-server installer"].status == "ok"
    failed = checks["node k3s-worker-2 installer"]
    assert failed.status == "fail" and "Could not resolve host" in failed.detail
    assert "k3s.installer_file" in failed.fix


def pod(node: str, *requests: str, init: str | None = None, phase: str = "Running") -> dict:
    containers = [{"name": f"c{i}", "resources": {"requests": {"memory": r}}} for i, r in enumerate(requests)]
    spec: dict = {"nodeName": node, "containers": containers}
    if init:
        spec["initContainers"] = [{"name": "init", "resources": {"requests": {"memory": init}}}]
    return {"spec": spec, "status": {"phase": phase}}


def node(name: str, allocatable: str) -> dict:
    return {"metadata": {"name": name}, "status": {"allocatable": {"memory": allocatable}}}


def test_node_memory_requests_count_as_the_scheduler_does_and_warn_above_90_percent() -> None:
    nodes = [node("server", "2Gi"), node("worker", "4Gi")]
    pods = [
        pod("worker", "1Gi", "512Mi"),  # containers together
        pod("worker", "64Mi", init="256Mi"),  # its init container is larger: 256Mi
        pod("worker", "2Gi", phase="Succeeded"),  # finished: not counted
        pod("server", "1900Mi"),
        {"spec": {"containers": [{"name": "pending"}]}, "status": {"phase": "Pending"}},  # not placed, no requests
    ]
    checks = {c.name: c for c in doctor.node_requests(nodes, pods)}
    worker, server = checks["node worker memory requests"], checks["node server memory requests"]
    assert (worker.status, worker.detail) == ("ok", "pods request 1792MiB of 4GiB allocatable (44%)")
    assert server.status == "warn"
    assert server.detail.startswith("pods request 1900MiB of 2GiB allocatable (93%): above 90%")
    assert "lower an app's memory_request" in server.fix
