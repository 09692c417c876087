"""inv doctor: every check passes on a healthy part and fails on a broken one (real parts; only
the macOS host network is simulated, since it cannot exist here)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Context
from k3s_nodes import Lab

from helpers import loopback_data, run_cli
from homelab.config.checks import secret_refs
from homelab.core.kube import Kube
from homelab.core.session import Session
from homelab.gitops import deploy
from homelab.root import doctor
from homelab.sandbox import cluster as sandbox

pytestmark = pytest.mark.integration


def session_for(tmp: Path, data: dict) -> Session:
    config = tmp / "doctor.yaml"
    config.write_text(yaml.safe_dump(data))
    return Session(Context(), config_path=config, out=lambda _: None)


@pytest.fixture
def on_sandbox(tmp_path: Path, sandbox_session: Session) -> Session:
    data = loopback_data()
    data.update(
        {
            "name": "itest",
            "state_dir": str(tmp_path / "state"),
            "kubeconfig": str(sandbox.paths_for(sandbox_session.cfg, sandbox_session.state_dir).kubeconfig),
        }
    )
    return session_for(tmp_path, data)


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_tools_present_and_missing(on_sandbox: Session, tmp_path: Path) -> None:
    assert {c.status for c in doctor.check_tools(on_sandbox)} == {"ok"}
    result = run_cli(
        ["doctor", "--json"],
        {
            "HOMELAB_CONFIG": str(on_sandbox.loaded.files[0]),
            "PATH": "/usr/bin:/bin",
            "HOMELAB_CACHE_DIR": str(tmp_path / "empty"),
        },
    )
    assert result.code == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["tool kwokctl"]["status"] == "fail" and "get-binaries.sh" in checks["tool kwokctl"]["fix"]


def with_every_secret_in_files(data: dict, cfg: Any, directory: Path, mode: int = 0o600) -> dict:
    """``data`` with each secret reference of ``cfg`` pointing at a file of its own in ``directory``."""
    directory.mkdir(exist_ok=True)
    for i, (key_path, _) in enumerate(secret_refs(cfg)):
        secret = directory / f"secret-{i}"
        secret.write_text("value-of-the-secret\n")
        secret.chmod(mode)
        *parents, leaf = key_path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = {"file": str(secret)}
    return data


def test_config_check_passes_with_secrets_and_warns_without(on_sandbox: Session, tmp_path: Path) -> None:
    data = yaml.safe_load(on_sandbox.loaded.files[0].read_text())
    assert secret_refs(on_sandbox.cfg), "the loopback config references secrets"
    present = session_for(tmp_path, with_every_secret_in_files(data, on_sandbox.cfg, tmp_path / "secrets"))
    assert by_name(doctor.run_checks(present))["config"] == doctor.Check("config", "ok", "valid")

    (tmp_path / "secrets" / "secret-0").unlink()
    missing = by_name(doctor.run_checks(session_for(tmp_path, data)))["config"]
    assert missing.status == "warn" and "secret reference not found" in missing.detail, missing
    assert missing.fix == "inv config.validate --secrets"

    readable = session_for(tmp_path, with_every_secret_in_files(data, on_sandbox.cfg, tmp_path / "open", 0o644))
    check = by_name(doctor.run_checks(readable))["config"]
    assert check.status == "warn" and "readable by others; chmod 600" in check.detail, check

    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [{name: a, role: server, ip: 300.1.1.1}]\n")
    result = run_cli(["doctor"], {"HOMELAB_CONFIG": str(bad)})
    assert result.code == 2 and "nodes[0].ip" in result.stderr


def test_host_network_checks_on_simulated_macos_facts(tmp_path: Path) -> None:
    data = loopback_data()
    data.update({"target": "lima", "state_dir": str(tmp_path / "state")})
    data["network"]["dhcp_end"] = "127.0.0.9"
    s = session_for(tmp_path, data)
    running = "/opt/socket_vmnet/bin/socket_vmnet --vmnet-gateway=127.0.0.1 --vmnet-dhcp-end=127.0.0.9 /var/run/x"
    addresses = {n.name: [n.ip] for n in s.cfg.nodes}
    good = doctor.HostFacts(True, False, addresses, socket_vmnet_args=running)
    assert {c.status for c in doctor.check_host_network(s, good)} == {"ok"}
    default_range = doctor.HostFacts(
        True,
        False,
        addresses,
        socket_present=False,
        socket_vmnet_args=running.replace(" --vmnet-dhcp-end=127.0.0.9", ""),
    )
    checks = by_name(doctor.check_host_network(s, default_range))
    assert checks["socket_vmnet socket"].status == "fail" and s.cfg.lima.socket in checks["socket_vmnet socket"].detail
    dhcp = checks["socket_vmnet DHCP"]
    assert dhcp.status == "fail" and "leases up to 127.0.0.254" in dhcp.detail, dhcp
    assert "nodes[0].ip 127.0.0.11" in dhcp.detail and "metallb.pool 127.0.0.50-127.0.0.99" in dhcp.detail
    assert "--vmnet-dhcp-end=127.0.0.9" in dhcp.fix
    unknown = by_name(doctor.check_host_network(s, doctor.HostFacts(False, False, addresses)))
    assert unknown["socket_vmnet DHCP"].status == "warn"
    broken = doctor.HostFacts(False, True, {"k3s-server": ["127.0.0.99"]}, socket_vmnet_installed=False)
    checks = by_name(doctor.check_host_network(s, broken))
    assert (
        checks["tool socket_vmnet"].status == "fail" and "brew install socket_vmnet" in checks["tool socket_vmnet"].fix
    )
    assert checks["socket_vmnet"].status == "fail"
    assert checks["bootpd firewall"].status == "fail" and "unblockapp" in checks["bootpd firewall"].fix
    assert checks["vm k3s-server address"].status == "fail" and "127.0.0.99" in checks["vm k3s-server address"].detail
    assert checks["vm k3s-worker-1 address"].status == "fail"


def test_node_and_k3s_checks_against_real_nodes(lab: Lab) -> None:
    assert lab.cli("k3s.install").code == 0
    s = Session(Context(), config_path=lab.config, out=lambda _: None)
    with s:
        nodes = by_name(doctor.check_nodes(s))
        assert {c.status for c in nodes.values()} == {"ok"}
        kube = Kube(s.state_dir / "kubeconfig", s.cfg.context_name())
        assert {c.status for c in doctor.check_k3s(s, kube)} == {"ok"}
    lab.data["k3s"]["version"] = "v1.34.1+k3s1"
    lab.nodes["k3s-worker-2"].stop()
    lab.save()
    s = Session(Context(), config_path=lab.config, out=lambda _: None)
    with s:
        nodes = by_name(doctor.check_nodes(s))
        assert nodes["node k3s-worker-2 ssh"].status == "fail"
        assert nodes["node k3s-server sudo"].status == "ok"
        versions = by_name(doctor.check_k3s(s, None))
        assert versions["k3s versions"].status == "fail"


def test_cluster_check_fails_on_an_unreachable_api(on_sandbox: Session, tmp_path: Path) -> None:
    assert by_name(doctor.run_checks(on_sandbox))["cluster"].status == "ok"
    dead = yaml.safe_load(Path(on_sandbox.cfg.kubeconfig).read_text())
    dead["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    (tmp_path / "dead").write_text(yaml.safe_dump(dead))
    data = yaml.safe_load(on_sandbox.loaded.files[0].read_text())
    data["kubeconfig"] = str(tmp_path / "dead")
    checks = by_name(doctor.run_checks(session_for(tmp_path, data)))
    assert checks["cluster"].status == "fail"


def test_argocd_certificates_and_tunnel(kube: Kube, on_sandbox: Session, namespace: str) -> None:
    deploy.install_crds(
        kube,
        [
            c
            for c in deploy.component_crds()
            if c["metadata"]["name"] in ("applications.argoproj.io", "certificates.cert-manager.io")
        ],
    )
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}])
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "doc", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "destination": {"server": "https://kubernetes.default.svc"},
            "source": {"repoURL": "https://example.invalid/r.git", "path": "k8s"},
        },
    }
    kube.apply([app])
    status = kube.resource("argoproj.io/v1alpha1", "Application")
    status.patch(
        name="doc",
        namespace="argocd",
        content_type="application/merge-patch+json",
        body={"status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}},
    )
    assert doctor.check_argocd(kube)[0].status == "ok"
    status.patch(
        name="doc",
        namespace="argocd",
        content_type="application/merge-patch+json",
        body={"status": {"health": {"status": "Degraded"}}},
    )
    assert doctor.check_argocd(kube)[0].status == "fail"
    kube.delete("argoproj.io/v1alpha1", "Application", "doc", "argocd")

    cert = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "w", "namespace": namespace},
        "spec": {"secretName": "w", "dnsNames": ["a.test"], "issuerRef": {"name": "x", "kind": "ClusterIssuer"}},
    }
    kube.apply([cert])
    certificates = kube.resource("cert-manager.io/v1", "Certificate")
    for days, expected in ((60, "ok"), (5, "fail")):
        not_after = (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        certificates.status.patch(
            name="w",
            namespace=namespace,
            content_type="application/merge-patch+json",
            body={"status": {"notAfter": not_after}},
        )
        [check] = [c for c in doctor.check_certificates(kube) if c.name.endswith(f"{namespace}/w")]
        assert check.status == expected, (days, check)

    assert doctor.check_tunnel(on_sandbox, kube)[0].status == "fail"
    tunnel = {"app": "cloudflared"}
    kube.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cloudflared"}},
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "cloudflared", "namespace": "cloudflared"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": tunnel},
                    "template": {
                        "metadata": {"labels": tunnel},
                        "spec": {"containers": [{"name": "c", "image": "cloudflare/cloudflared"}]},
                    },
                },
            },
        ]
    )
    try:
        kube.wait_deployments([("cloudflared", "cloudflared")], timeout=60)
        assert doctor.check_tunnel(on_sandbox, kube)[0].status == "ok"
    finally:
        kube.delete("v1", "Namespace", "cloudflared")


def test_backup_checks(on_sandbox: Session, kube: Kube) -> None:
    from backup_support import sealing_key_secret

    state = on_sandbox.state_dir
    state.mkdir(parents=True, exist_ok=True)
    checks = by_name(doctor.check_backups(on_sandbox, kube))
    assert checks["backup age"].status == "fail" and checks["backup verify"].status == "fail"
    now = time.time()
    (state / "backup.prom").write_text(f"homelab_backup_last_success_timestamp_seconds {now - 27 * 3600:.0f}\n")
    (state / "backup-verified.json").write_text(json.dumps({"abc": now - 3600}))
    checks = by_name(doctor.check_backups(on_sandbox, kube, now=now))
    assert checks["backup age"].status == "fail" and checks["backup verify"].status == "ok"
    secret, _ = sealing_key_secret("sealed-secrets-key-doctor")
    kube.apply([secret])
    try:
        checks = by_name(doctor.check_backups(on_sandbox, kube, now=now))
        assert checks["sealed secrets key"].status == "fail"
        (state / "backup.prom").write_text(f"homelab_backup_last_success_timestamp_seconds {now + 60:.0f}\n")
        checks = by_name(doctor.check_backups(on_sandbox, kube, now=now + 120))
        assert checks["backup age"].status == "ok" and checks["sealed secrets key"].status == "ok"
    finally:
        kube.delete("v1", "Secret", "sealed-secrets-key-doctor", "kube-system")


def test_node_memory_requests_against_allocatable_on_the_sandbox(kube: Kube, namespace: str) -> None:
    """The sandbox's nodes carry their config memory as allocatable; pods placed on one add up until it warns."""
    before = by_name(doctor.check_node_requests(kube))
    assert {"node k3s-server memory requests", "node k3s-worker-1 memory requests"} <= set(before)
    assert "of 8GiB allocatable" in before["node k3s-worker-1 memory requests"].detail  # the loopback node's 8GiB

    def placed(name: str, node: str, memory: str) -> dict:
        container = {"name": "c", "image": "registry.home.arpa/idle:1.0", "resources": {"requests": {"memory": memory}}}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "containers": [container]},
        }

    from homelab.apps.sizing import quantity_mib

    server = next(n for n in kube.list_objects("v1", "Node") if n["metadata"]["name"] == "k3s-server")
    allocatable = quantity_mib(server["status"]["allocatable"]["memory"])
    already = sum(
        doctor.pod_memory_request(p)
        for p in kube.list_objects("v1", "Pod")
        if p["spec"].get("nodeName") == "k3s-server" and p["status"].get("phase") not in doctor.DONE_PHASES
    )
    kube.apply([placed("small", "k3s-server", "256Mi")])
    after = by_name(doctor.check_node_requests(kube))["node k3s-server memory requests"]
    assert after.status == "ok" and after.detail.startswith(f"pods request {already + 256}MiB of ")
    kube.apply([placed("large", "k3s-server", f"{int(allocatable * 0.95) - already - 256}Mi")])
    full = by_name(doctor.check_node_requests(kube))["node k3s-server memory requests"]
    assert full.status == "warn" and "above 90%" in full.detail, full
