"""The sandbox's controllers as the real processes: Argo CD, Sealed Secrets, MetalLB and Traefik on loopback.

This module brings up a sandbox of its own with ``inv sandbox.up``, as a user would,
rather than using the session's shared one: the controllers reconcile whatever they
see, so the other tests do not run beside them. Its last test removes it with
``inv sandbox.down`` and looks for any process left behind.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Context

from helpers import loopback_data, run_cli
from homelab.apps import render
from homelab.core.kube import Kube
from homelab.core.kube.waits import wait_for
from homelab.core.session import Session
from homelab.core.tools import require
from homelab.gitops import platform
from homelab.gitops.platform import ARGOCD_NAMESPACE
from homelab.sandbox import cluster, controller_objects, controllers, processes

pytestmark = pytest.mark.integration

POOL = ("127.0.0.240", "127.0.0.247")  # loopback: MetalLB only writes it into the Service's status
# Argo CD's application-controller and MetalLB's controller bind their metrics to every interface (upstream)
ALL_INTERFACES_UPSTREAM = {"argocd-application-controller", "metallb-controller"}


@dataclass
class Lab:
    session: Session
    env: dict[str, str]
    kube: Kube
    layout: controllers.Layout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("controllers")
    data = loopback_data()
    data["name"] = "ctl"
    data["state_dir"] = str(base / "state")
    config = base / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {"HOMELAB_CONFIG": str(config)}
    try:
        up = run_cli(["sandbox.up"], env, timeout=900)
        assert up.code == 0, up.output
        session = Session(Context(), config_path=config, out=lambda _: None)
        paths = cluster.paths_for(session.cfg, session.state_dir)
        yield Lab(session, env, Kube(paths.kubeconfig, paths.context), controllers.layout(session))
    finally:
        run_cli(["sandbox.down"], env, timeout=300)  # the last test has done it already when all went well


@pytest.fixture
def namespace(lab: Lab) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    lab.kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    yield name
    lab.kube.delete("v1", "Namespace", name)


def pids(lab: Lab) -> dict[str, int | None]:
    return {s.name: s.pid for s in controllers.statuses(lab.session)}


def in_session(leader: int) -> set[int]:
    """``leader`` and every process of its session (``git daemon`` listens from a child)."""
    found = {leader}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[3] == str(leader):  # after the command: state, ppid, pgrp, session
            found.add(int(proc.name))
    return found


def listening(leader: int) -> list[str]:
    """The local addresses the processes of ``leader``'s session listen on (TCP), from ``ss``."""
    done = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True, check=True)
    pids = in_session(leader)
    return [line.split()[3] for line in done.stdout.splitlines() if any(f"pid={pid}," in line for pid in pids)]


def test_up_starts_every_controller_and_status_shows_each_with_its_pid_and_health(lab: Lab) -> None:
    result = run_cli(["sandbox.status"], lab.env)
    assert result.code == 0, result.output
    count = len(controllers.PROCESSES)
    assert f"{count}/{count} controller processes serving" in result.stdout
    for name, pid in pids(lab).items():
        assert pid is not None, f"{name} is not running"
        [line] = [line for line in result.stdout.splitlines() if line.split()[:1] == [name]]
        assert f"pid {pid}" in line and line.endswith("serving"), line
        addresses = listening(pid)
        assert addresses, f"{name} listens nowhere"
        for address in addresses:
            host = address.rsplit(":", 1)[0]
            edge = name == "traefik" and host == controllers.gateway_address(lab.layout)  # the chart's ports
            assert host == "127.0.0.1" or edge or name in ALL_INTERFACES_UPSTREAM, (name, address)


def test_a_sealed_secret_sealed_with_the_controllers_cert_becomes_its_secret(lab: Lab, namespace: str) -> None:
    cert = controllers.sealed_secrets_cert(lab.session)
    ns = lab.session.cfg.secrets.controller_namespace
    [key] = lab.kube.list_objects("v1", "Secret", ns, label_selector="sealedsecrets.bitnami.com/sealed-secrets-key")
    assert base64.b64decode(key["data"]["tls.crt"]).decode() == cert, "secrets.fetch-cert pins the same certificate"
    cert_file = lab.layout.root.parent / "controller-cert.pem"
    cert_file.write_text(cert)
    plain = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": namespace},
        "stringData": {"password": "s3cret-from-kubeseal"},
    }
    sealed = subprocess.run(
        [require("kubeseal"), "--cert", str(cert_file), "--scope", "strict", "--format", "yaml"],
        input=yaml.safe_dump(plain), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lab.kube.apply([yaml.safe_load(sealed)])

    def unsealed() -> str | None:
        secret = lab.kube.get("v1", "Secret", "db", namespace)
        if secret is None:
            return "no Secret yet"
        return None if base64.b64decode(secret["data"]["password"]) == b"s3cret-from-kubeseal" else "wrong value"

    wait_for("the controller to unseal db", unsealed, timeout=120)


def test_a_load_balancer_service_gets_an_address_from_the_pool(lab: Lab, namespace: str) -> None:
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": f"pool-{namespace}", "namespace": controller_objects.METALLB_NAMESPACE},
        "spec": {"addresses": [f"{POOL[0]}-{POOL[1]}"]},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    lab.kube.apply([pool, service])
    try:

        def address() -> str | None:
            live = lab.kube.get("v1", "Service", "web", namespace) or {}
            ingress = ((live.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            return None if ingress and ingress[0].get("ip") else "no address yet"

        wait_for("MetalLB to assign an address", address, timeout=120)
        live = lab.kube.get("v1", "Service", "web", namespace) or {}
        ip = ipaddress.ip_address(live["status"]["loadBalancer"]["ingress"][0]["ip"])
        assert ipaddress.ip_address(POOL[0]) <= ip <= ipaddress.ip_address(POOL[1])
    finally:
        lab.kube.delete("v1", "Service", "web", namespace)
        lab.kube.delete("metallb.io/v1beta1", "IPAddressPool", pool["metadata"]["name"], pool["metadata"]["namespace"])


GATEWAY_API = "gateway.networking.k8s.io/v1"


def condition(status: dict[str, Any], kind: str) -> str:
    return next((c["status"] for c in status.get("conditions") or [] if c["type"] == kind), "")


# TEST-NET-1 (RFC 5737): an endpoint address that routes nowhere. No test request is ever proxied to it:
# the API server refuses loopback endpoints, and the requests below are answered by Traefik itself.
UNROUTED = "192.0.2.1"


def test_traefik_programs_the_gateway_and_serves_the_certificate_redirect_and_body_limit(
    lab: Lab, namespace: str
) -> None:
    """The real Traefik: Gateway Programmed with MetalLB's address, a route Accepted, answers of its own.

    Over TLS it serves the wildcard certificate for the route's host; on HTTP it redirects to
    HTTPS (the gateway's https-redirect route); a body over the route's Buffering middleware
    limit is refused with 413 before anything is proxied.
    """
    cfg = lab.session.cfg
    host = f"echo-{namespace}.{cfg.domain}"
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": f"pool-{namespace}", "namespace": controller_objects.METALLB_NAMESPACE},
        "spec": {"addresses": [f"{cfg.ingress.load_balancer_ip}/32"]},
    }
    backend = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo", "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "echo-1", "namespace": namespace, "labels": {"kubernetes.io/service-name": "echo"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [UNROUTED], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    limit = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "Middleware",
        "metadata": {"name": render.BODY_LIMIT, "namespace": namespace},
        "spec": {"buffering": {"maxRequestBodyBytes": 1024}},
    }
    route = render.http_route("echo", namespace, host, "echo", 8080)
    ref = {"group": "traefik.io", "kind": "Middleware", "name": render.BODY_LIMIT}
    route["spec"]["rules"][0]["filters"] = [{"type": "ExtensionRef", "extensionRef": ref}]
    edge = [platform.gateway_service(cfg), *platform.gateway(cfg)]
    lab.kube.apply([pool, *edge, backend, endpoints, limit, route])
    try:

        def programmed() -> str | None:
            gateway = lab.kube.get(GATEWAY_API, "Gateway", render.GATEWAY, render.GATEWAY_NAMESPACE) or {}
            status = gateway.get("status") or {}
            addresses = [a.get("value") for a in status.get("addresses") or []]
            if condition(status, "Programmed") != "True" or addresses != [cfg.ingress.load_balancer_ip]:
                return f"Gateway status {status}"
            listeners = {entry["name"]: condition(entry, "Programmed") for entry in status.get("listeners") or []}
            if listeners != {"web": "True", "websecure": "True"}:
                return f"listeners {listeners}"
            live = lab.kube.get(GATEWAY_API, "HTTPRoute", "echo", namespace) or {}
            parents = (live.get("status") or {}).get("parents") or []
            accepted = parents and all(condition(p, "Accepted") == "True" for p in parents)
            return None if accepted and condition(parents[0], "ResolvedRefs") == "True" else f"route {parents}"

        wait_for("Traefik to program the Gateway and accept the route", programmed, timeout=180)
        secret = lab.kube.get("v1", "Secret", platform.WILDCARD_SECRET, render.GATEWAY_NAMESPACE)
        context = ssl.create_default_context(cadata=base64.b64decode(secret["data"]["tls.crt"]).decode())
        edge_address = controllers.gateway_address(lab.layout)

        def over_tls(body: bytes) -> int:
            address = (edge_address, platform.ENTRY_POINTS["websecure"])
            raw = socket.create_connection(address, timeout=30)
            with context.wrap_socket(raw, server_hostname=host) as tls:  # the wildcard certificate, verified
                conn = http.client.HTTPConnection(host)
                conn.sock = tls
                conn.request("POST", "/", body=body, headers={"Host": host})
                return conn.getresponse().status

        def refused() -> str | None:
            try:  # the Gateway's status is written before the router and its certificate are live
                status = over_tls(b"x" * 2048)
            except ssl.SSLCertVerificationError as err:
                return f"not yet the wildcard certificate: {err}"
            return None if status == 413 else f"HTTP {status}"

        wait_for("Traefik to refuse a body over the route's limit", refused, timeout=60)
        plain = http.client.HTTPConnection(edge_address, platform.ENTRY_POINTS["web"], timeout=30)
        plain.request("GET", "/x", headers={"Host": host})
        answer = plain.getresponse()
        assert (answer.status, answer.getheader("Location")) == (301, f"https://{host}/x")
    finally:
        for obj in [route, limit, endpoints, backend, *reversed(edge), pool]:
            meta = obj["metadata"]
            lab.kube.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))


def git(*args: str, cwd: Path) -> None:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([require("git"), *identity, *args], cwd=cwd, check=True, capture_output=True)


def application(name: str, url: str, branch: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": ARGOCD_NAMESPACE},
        "spec": {
            "project": "default",
            "source": {"repoURL": url, "targetRevision": branch, "path": "app"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }


def test_argocd_syncs_an_application_from_the_git_daemon_and_self_heals_a_deleted_object(
    lab: Lab, namespace: str, tmp_path: Path
) -> None:
    branch = f"test-{namespace}"
    work = tmp_path / "work"
    (work / "app").mkdir(parents=True)
    greeting = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeting"}, "data": {"hello": "1"}}
    (work / "app" / "greeting.yaml").write_text(yaml.safe_dump(greeting))
    git("init", "--quiet", "--initial-branch", branch, cwd=work)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "greeting", cwd=work)
    git("push", "--quiet", str(lab.layout.repository), f"HEAD:refs/heads/{branch}", cwd=work)
    name = f"app-{namespace}"
    lab.kube.apply([application(name, controllers.repo_url(lab.session), branch, namespace)])
    try:

        def synced() -> str | None:
            status = (lab.kube.get("argoproj.io/v1alpha1", "Application", name, ARGOCD_NAMESPACE) or {}).get("status")
            sync = ((status or {}).get("sync") or {}).get("status")
            health = ((status or {}).get("health") or {}).get("status")
            conditions = [c.get("message") for c in (status or {}).get("conditions") or []]
            return None if (sync, health) == ("Synced", "Healthy") else f"{sync}/{health} {conditions}"

        wait_for(f"Application {name} to be Synced and Healthy", synced, timeout=300)
        first = lab.kube.get("v1", "ConfigMap", "greeting", namespace)
        assert first is not None and first["data"] == {"hello": "1"}
        lab.kube.delete("v1", "ConfigMap", "greeting", namespace)

        def restored() -> str | None:
            live = lab.kube.get("v1", "ConfigMap", "greeting", namespace)
            if live is None or live["metadata"]["uid"] == first["metadata"]["uid"]:
                return "deleted, not restored yet"
            return None

        wait_for("self-heal to restore the deleted ConfigMap", restored, timeout=180)
    finally:
        lab.kube.delete("argoproj.io/v1alpha1", "Application", name, ARGOCD_NAMESPACE)


def test_an_application_naming_a_repository_beyond_loopback_is_refused_without_a_fetch(
    lab: Lab, namespace: str
) -> None:
    name = f"remote-{namespace}"
    lab.kube.apply([application(name, "https://github.com/example/homelab.git", "main", namespace)])
    try:

        def refused() -> str | None:
            status = (lab.kube.get("argoproj.io/v1alpha1", "Application", name, ARGOCD_NAMESPACE) or {}).get("status")
            messages = " ".join(c.get("message", "") for c in (status or {}).get("conditions") or [])
            return None if "not permitted in project" in messages else f"conditions: {messages or 'none yet'}"

        wait_for(f"Application {name} to be refused by the default project", refused, timeout=180)
    finally:
        lab.kube.delete("argoproj.io/v1alpha1", "Application", name, ARGOCD_NAMESPACE)


def test_a_second_up_leaves_running_processes_alone_and_restarts_a_dead_one(lab: Lab) -> None:
    before = pids(lab)
    victim = before["metallb-controller"]
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    wait_for("metallb-controller to die", lambda: "alive" if processes.running(victim, "metallb") else None, 30)
    # Its pid file now names an unrelated live process, as after a pid was reused: not ours, so restarted.
    stranger = subprocess.Popen(["sleep", "600"])
    try:
        lab.layout.pid_file("metallb-controller").write_text(f"{stranger.pid}\n")
        dry = run_cli(["sandbox.up", "--dry-run"], lab.env, timeout=600)
        assert dry.code == 0, dry.output
        planned = [line for line in dry.stdout.splitlines() if "homelab.sandbox.launch" in line]
        assert len(planned) == 1 and "metallb-controller" in planned[0], dry.stdout
        assert controllers.live_pid(lab.layout, "metallb-controller") is None, "--dry-run started it"
        again = run_cli(["sandbox.up"], lab.env, timeout=600)
        assert again.code == 0, again.output
        launched = [line for line in again.stdout.splitlines() if "homelab.sandbox.launch" in line]
        assert len(launched) == 1 and "metallb-controller" in launched[0], again.stdout
        after = pids(lab)
        assert after["metallb-controller"] not in (None, victim, stranger.pid)
        assert {k: v for k, v in after.items() if k != "metallb-controller"} == {
            k: v for k, v in before.items() if k != "metallb-controller"
        }
        assert stranger.poll() is None, "the unrelated process was left alone"
        noop = run_cli(["sandbox.up"], lab.env, timeout=600)
        assert noop.code == 0 and "nothing to do" in noop.stdout, noop.output
    finally:
        stranger.kill()
        stranger.wait()


def test_up_with_the_tree_is_a_no_op_the_second_time(lab: Lab) -> None:
    """The controllers' objects and the rendered tree (same field manager) do not undo each other."""
    first = run_cli(["up", "--target", "sandbox"], lab.env, timeout=900)
    assert first.code == 0, first.output
    again = run_cli(["up", "--target", "sandbox"], lab.env, timeout=900)
    assert again.code == 0, again.output
    layers = [line for line in again.stdout.splitlines() if line.startswith("[")]
    assert layers and not [line for line in layers if "changed" in line], again.stdout


def mentions(text: str) -> list[str]:
    """Command lines of live processes that contain ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_down_leaves_no_controller_process(lab: Lab) -> None:
    running = {name: pid for name, pid in pids(lab).items() if pid is not None}
    assert len(running) == len(controllers.PROCESSES)
    down = run_cli(["sandbox.down"], lab.env, timeout=300)
    assert down.code == 0, down.output
    time.sleep(0.5)
    left = [f"{name} ({pid})" for name, pid in running.items() if processes.running(pid, controllers.PROCESSES[name])]
    assert not left, f"still running after sandbox.down: {left}"
    assert not mentions(str(lab.session.state_dir)), "a process still uses the sandbox's state dir"
    assert not lab.layout.root.exists()
