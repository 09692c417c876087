"""``inv versions.check`` (and ``inv up``'s use of it) against real servers on 127.0.0.1.

Every upstream the homelab pulls from is stood in for by a real server of its kind:
Helm chart repositories and the K3S and Argo CD files from Python's ``http.server``,
and container images from the CNCF distribution registry (``scripts/get-binaries.sh
registry``) with token auth: its ``realm`` is a small token server here that hands
out RS256 JWTs whose ``x5c`` certificate is the registry's ``rootcertbundle``, so the
anonymous Bearer flow runs for real; the images are pushed with crane. A version
manifest (``HOMELAB_VERSIONS``) points every pin at these servers; each broken case
edits one pin and expects exit 13, exactly one message naming it, and no file written.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import os
import re
import socket
import subprocess
import tarfile
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import FAKES, REPO, CliResult, loopback_data, run_cli
from homelab.core.errors import EXIT_OFFLINE, EXIT_SOURCES_BROKEN
from homelab.core.paths import cache_dir
from homelab.versions import oci

pytestmark = pytest.mark.integration

SERVICE, ISSUER = "homelab-test-registry", "homelab-test-token-issuer"
ARCH = "amd64"  # the loopback config's lima.arch is x86_64


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(handler: type[http.server.BaseHTTPRequestHandler] | Any) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# The files a chart repository, the K3S releases, the installer and Argo CD serve.


@dataclass
class Files:
    root: Path
    url: str
    asked: list[str] = field(default_factory=list)


def helm_index(charts: dict[str, list[str]]) -> str:
    """An ``index.yaml`` as ``helm repo index`` writes it."""
    entries = {
        name: [
            {
                "apiVersion": "v2",
                "name": name,
                "version": version,
                "appVersion": version,
                "created": "2026-01-01T00:00:00Z",
                "digest": "0" * 64,
                "urls": [f"charts/{name}-{version}.tgz"],
            }
            for version in versions
        ]
        for name, versions in charts.items()
    }
    return yaml.safe_dump({"apiVersion": "v1", "entries": entries, "generated": "2026-01-01T00:00:00Z"})


def write_files(root: Path, manifest: dict[str, Any]) -> None:
    for name, chart in manifest["charts"].items():
        index = helm_index({chart["chart"]: ["0.0.1", chart["version"], "99.0.0-rc.1"]})
        (root / "charts" / name).mkdir(parents=True)
        (root / "charts" / name / "index.yaml").write_text(index)
    (root / "charts" / "not-yaml").mkdir()
    (root / "charts" / "not-yaml" / "index.yaml").write_text("apiVersion: v1\nentries: {metallb: [\n  {version: 1\n")
    release = root / "k3s" / "download" / manifest["k3s"]["version"]
    release.mkdir(parents=True)
    (release / f"sha256sum-{ARCH}.txt").write_text(f"{'a' * 64}  k3s\n{'b' * 64}  k3s-airgap-images-{ARCH}.tar\n")
    (root / "get-k3s").mkdir()
    (root / "get-k3s" / "install.sh").write_text("#!/bin/sh\nset -e\necho a stand-in for get.k3s.io\n")
    argocd = root / "argo-cd" / manifest["argocd"]["version"] / "manifests"
    argocd.mkdir(parents=True)
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "argocd-server", "namespace": "argocd"}},
    ]
    (argocd / "install.yaml").write_text(yaml.safe_dump_all(objects))


def start_files(root: Path) -> tuple[Files, http.server.ThreadingHTTPServer]:
    files = Files(root, "")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            files.asked.append(self.path)
            if self.path.startswith("/failing/"):  # a server that cannot answer now (a proxy's or a CDN's 503)
                self.send_error(503)
                return
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = serve(Handler)
    files.url = f"http://127.0.0.1:{server.server_address[1]}"
    return files, server


# The token server and the registry.


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    url: str
    certificate: Path
    scopes: list[str] = field(default_factory=list)


def start_token_server(tmp: Path) -> tuple[TokenServer, http.server.ThreadingHTTPServer]:
    """Anonymous tokens for any scope asked (pull, and push for the test's own pushes)."""
    from certs import self_signed
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key, cert = self_signed(ISSUER, ca=True)
    pem = tmp / "token-signer.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    server_state = TokenServer("", pem)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            scopes = query.get("scope", [])
            server_state.scopes.extend(scopes)
            access = []
            for scope in scopes:
                kind, _, rest = scope.partition(":")
                repository, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": repository, "actions": actions.split(",")})
            issued = int(time.time())
            claims = {
                "iss": ISSUER,
                "sub": "",
                "aud": query.get("service", [""])[0],
                "exp": issued + 300,
                "nbf": issued - 10,
                "iat": issued,
                "jti": uuid.uuid4().hex,
                "access": access,
            }
            header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
            signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
            signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
            token = f"{signing_input}.{b64url(signature)}"
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = serve(Handler)
    # By name: crane refuses a realm that is a private or loopback IP literal (an SSRF guard); localhost is loopback.
    server_state.url = f"http://localhost:{server.server_address[1]}/token"
    return server_state, server


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def tool(name: str) -> str:
    path = cache_dir() / "bin" / name
    assert path.is_file(), f"{path} is missing: run scripts/get-binaries.sh registry (scripts/setup.sh builds it)"
    return str(path)


def start_registry(tmp: Path, token: TokenServer) -> Registry:
    host = f"127.0.0.1:{free_port()}"
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}, "delete": {"enabled": True}},
        "http": {"addr": host, "secret": uuid.uuid4().hex},
        "auth": {
            "token": {
                "realm": token.url,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(token.certificate),
            }
        },
    }
    (tmp / "registry.yml").write_text(yaml.safe_dump(config))
    log = tmp / "registry.log"
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    process = subprocess.Popen(
        [tool("registry"), "serve", str(tmp / "registry.yml")], stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env
    )
    registry = Registry(host, process, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
        except urllib.error.HTTPError as answer:
            if answer.code == 401 and "Bearer" in answer.headers.get("WWW-Authenticate", ""):
                return registry
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            registry.stop()
            pytest.fail(f"the registry did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


def push(tmp: Path, reference: str) -> None:
    """A one-layer image at ``reference``, pushed with crane (anonymously, through the token server)."""
    layer = tmp / "layer.tar"
    if not layer.exists():
        (tmp / "hello.txt").write_text("hello from the test registry\n")
        with tarfile.open(layer, "w") as archive:
            archive.add(tmp / "hello.txt", arcname="hello.txt")
    env = {**os.environ, "HOME": str(tmp), "DOCKER_CONFIG": str(tmp / "docker"), "NO_PROXY": "127.0.0.1"}
    done = subprocess.run(
        [tool("crane"), "append", "--new_layer", str(layer), "--new_tag", reference, "--insecure"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, f"crane append {reference}: {done.stderr}"


# The manifest and the config the CLI runs with.


def toml_text(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    """A TOML document of ``table`` (strings, dates, nested tables: what versions.toml holds)."""

    def key(name: str) -> str:
        return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)

    def value(item: Any) -> str:
        if isinstance(item, datetime.date):
            return item.isoformat()
        return json.dumps(item)

    scalars = [f"{key(k)} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    text = ""
    if scalars:
        text += (f"[{'.'.join(key(p) for p in prefix)}]\n" if prefix else "") + "\n".join(scalars) + "\n\n"
    for name, sub in table.items():
        if isinstance(sub, dict):
            text += toml_text(sub, (*prefix, name))
    return text


@dataclass
class Upstreams:
    tmp: Path
    files: Files
    token: TokenServer
    registry: Registry
    manifest: dict[str, Any]  # versions.toml with every address on 127.0.0.1
    config: Path

    def env(self, manifest: dict[str, Any] | None = None, state: Path | None = None) -> dict[str, str]:
        path = self.tmp / f"versions-{uuid.uuid4().hex[:8]}.toml"
        path.write_text(toml_text(manifest or self.manifest))
        env = {
            "HOMELAB_CONFIG": str(self.config),
            "HOMELAB_VERSIONS": str(path),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        if state is not None:
            env["HOMELAB__STATE_DIR"] = str(state)
        return env

    def check(self, *args: str, manifest: dict[str, Any] | None = None, state: Path | None = None) -> CliResult:
        return run_cli(["versions.check", *args], self.env(manifest, state), timeout=300)

    def edited(self, dotted: str, new: str) -> dict[str, Any]:
        manifest = json.loads(json.dumps(self.manifest, default=str))
        manifest["kubernetes"] = self.manifest["kubernetes"]  # the dates, as dates
        *parents, leaf = dotted.split(".")
        table = manifest
        for part in parents:
            table = table[part]
        table[leaf] = new
        return manifest


def on_loopback(manifest: dict[str, Any], files: str, registry: str) -> dict[str, Any]:
    """The real manifest with every source moved to the test's servers (names and versions kept)."""
    moved = dict(manifest)
    moved["charts"] = {
        name: {**chart, "repository": f"{files}/charts/{name}"} for name, chart in manifest["charts"].items()
    }
    images = {}
    for name, reference in manifest["images"].items():
        image = oci.parse_reference(reference)
        images[name] = f"{registry}/{image.repository}:{image.reference}"
    moved["images"] = images
    moved["k3s"] = {
        **manifest["k3s"],
        "releases": f"{files}/k3s/download",
        "installer": f"{files}/get-k3s/install.sh",
    }
    moved["argocd"] = {**manifest["argocd"], "install_manifest": f"{files}/argo-cd/{{version}}/manifests/install.yaml"}
    return moved


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    tmp = tmp_path_factory.mktemp("upstreams")
    real = tomllib.loads((REPO / "versions.toml").read_text())
    token, token_server = start_token_server(tmp)
    (tmp / "files").mkdir()
    files, file_server = start_files(tmp / "files")
    (tmp / "registry").mkdir()
    registry = start_registry(tmp / "registry", token)
    try:  # the registry is stopped even when a push fails
        manifest = on_loopback(real, files.url, registry.host)
        write_files(tmp / "files", manifest)
        for reference in sorted(set(manifest["images"].values())):
            push(tmp, reference)
        data = loopback_data()
        data["state_dir"] = str(tmp / "unused-state")
        config = tmp / "homelab.yaml"
        config.write_text(yaml.safe_dump(data))
        yield Upstreams(tmp, files, token, registry, manifest, config)
    finally:
        registry.stop()
        file_server.shutdown()
        token_server.shutdown()


def state_files(state: Path) -> list[str]:
    return sorted(str(p.relative_to(state)) for p in state.rglob("*")) if state.exists() else []


def messages(result: CliResult) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# Every source present.


def test_every_source_resolves_and_a_second_run_says_cached(upstreams: Upstreams, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = upstreams.check(state=state)
    assert first.code == 0, first.output
    lines = [line for line in first.stdout.splitlines() if line.startswith(("ok ", "BROKEN", "NO ANSWER"))]
    images = set(upstreams.manifest["images"].values())
    assert len(lines) == 5 + len(images) + 3, first.stdout  # charts, images, K3S release and installer, Argo CD
    assert all(line.startswith("ok ") for line in lines), first.stdout
    assert first.stdout.rstrip().endswith(f"versions.check: all {len(lines)} upstream sources resolve")
    # The anonymous token flow ran for every image: a pull-only token for each repository.
    pulls = {s for s in upstreams.token.scopes if s.endswith(":pull")}
    assert {f"repository:{oci.parse_reference(i).repository}:pull" for i in images} <= pulls
    assert any("manifest sha256:" in line for line in lines)
    assert state_files(state) == ["versions-check.json"], "only the cache is written"

    asked_files, asked_tokens = len(upstreams.files.asked), len(upstreams.token.scopes)
    again = upstreams.check(state=state)
    assert again.code == 0, again.output
    assert "cached: checked" in again.stderr and again.stdout.count("ok ") == len(lines)
    assert (len(upstreams.files.asked), len(upstreams.token.scopes)) == (asked_files, asked_tokens), "nothing asked"

    fresh = upstreams.check("--refresh", "--json", state=state)
    assert fresh.code == 0, fresh.output
    assert len(upstreams.files.asked) > asked_files, "--refresh asks again"
    rows = json.loads(fresh.stdout)
    assert len(rows) == len(lines) and all(row["ok"] and row["status"] == "ok" for row in rows)
    assert set(rows[0]) == {"component", "kind", "address", "chart", "version", "ok", "status", "url", "detail", "fix"}
    assert {row["kind"] for row in rows} == {"chart", "image", "k3s-release", "k3s-installer", "install-manifest"}


# One broken source at a time: exit 13, its one message, nothing written.


BROKEN = {
    "moved_repository": (
        "charts.metallb.repository",
        "{files}/charts/gone",
        "chart metallb: {files}/charts/gone/index.yaml answered HTTP 404: the repository moved or is gone; "
        "set charts.metallb.repository in {manifest} to the repository's current address",
    ),
    "missing_chart_version": (
        "charts.cert-manager.version",
        "v9.9.9",
        "chart cert-manager: {files}/charts/cert-manager/index.yaml has no version v9.9.9 of cert-manager "
        "(newest: 99.0.0-rc.1, v1.18.2, 0.0.1); set charts.cert-manager.version in {manifest} to a version the "
        "index lists",
    ),
    "index_not_yaml": (
        "charts.traefik.repository",
        "{files}/charts/not-yaml",
        "chart traefik: {files}/charts/not-yaml/index.yaml answered 200 with not YAML at line 4",
    ),
    "unknown_tag": (
        "images.cloudflared",
        "{registry}/cloudflare/cloudflared:2099.1.0",
        "image cloudflared: http://{registry}/v2/cloudflare/cloudflared/manifests/2099.1.0 answered HTTP 404, "
        "MANIFEST_UNKNOWN: no tag 2099.1.0 in cloudflare/cloudflared (it has 2025.9.0); set images.cloudflared in "
        "{manifest} to a tag that exists",
    ),
    "unknown_repository": (
        "images.filebrowser",
        "{registry}/nobody/nothing:1.0.0",
        "image filebrowser: http://{registry}/v2/nobody/nothing/manifests/1.0.0 answered HTTP 404, "
        "MANIFEST_UNKNOWN: no repository nobody/nothing on {registry}; set images.filebrowser in {manifest} to an "
        "image that exists",
    ),
    "missing_k3s_release": (
        "k3s.releases",
        "{files}/k3s/elsewhere",
        "k3s-release k3s: {files}/k3s/elsewhere/v1.35.5+k3s1/sha256sum-amd64.txt answered HTTP 404: no such K3S "
        "release; set k3s.version in {manifest} to a K3S release that exists",
    ),
    "missing_installer": (
        "k3s.installer",
        "{files}/get-k3s/gone.sh",
        "k3s-installer k3s installer: {files}/get-k3s/gone.sh answered HTTP 404; set k3s.installer in {manifest} "
        "to the installer's address",
    ),
    "missing_install_manifest": (
        "argocd.install_manifest",
        "{files}/argo-cd/{{version}}/manifests/gone.yaml",
        "install-manifest argocd: {files}/argo-cd/v3.6.1/manifests/gone.yaml answered HTTP 404; set argocd.version "
        "in {manifest} to an Argo CD release that exists (or argocd.install_manifest in {manifest}, if the files "
        "moved)",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_source_exits_13_with_one_message_and_writes_nothing(
    upstreams: Upstreams, tmp_path: Path, case: str
) -> None:
    key, new, expected = BROKEN[case]
    where = {"files": upstreams.files.url, "registry": upstreams.registry.host}
    manifest = upstreams.edited(key, new.format(**where))
    if case == "missing_install_manifest":  # the version the message names is the manifest's own
        expected = expected.replace("v3.6.1", manifest["argocd"]["version"])
    if case == "missing_k3s_release":
        expected = expected.replace("v1.35.5+k3s1", manifest["k3s"]["version"])
    state = tmp_path / "state"
    env = upstreams.env(manifest, state)
    done = run_cli(["versions.check"], env, timeout=300)
    assert done.code == EXIT_SOURCES_BROKEN == 13, done.output
    said = messages(done)
    assert len(said) == 1, said
    message = said[0].replace(env["HOMELAB_VERSIONS"], "{manifest}")
    assert message.startswith(expected.format(**where, manifest="{manifest}")), message
    assert len([line for line in done.stdout.splitlines() if line.startswith("BROKEN")]) == 1
    assert state_files(state) == [], "a failing run writes nothing, not even the cache"


def test_a_stopped_registry_means_cannot_check_exit_14(upstreams: Upstreams, tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()
    own = start_registry(tmp_path / "registry", upstreams.token)
    try:
        push(tmp_path, f"{own.host}/cloudflare/cloudflared:2025.9.0")
        manifest = upstreams.edited("images.cloudflared", f"{own.host}/cloudflare/cloudflared:2025.9.0")
        state = tmp_path / "state"
        assert upstreams.check(manifest=manifest, state=state).code == 0
    finally:
        own.stop()
    done = upstreams.check("--refresh", manifest=manifest, state=state)
    assert done.code == EXIT_OFFLINE == 14, done.output
    said = messages(done)
    assert len(said) == 1, said
    assert said[0].startswith("cannot check 1 of ") and f"connection refused: {own.host}" in said[0], said[0]
    assert "check the network" in said[0]
    assert "NO ANSWER image            cloudflared" in done.stdout
    assert state_files(state) == ["versions-check.json"], "the earlier passing run's cache, untouched"


def test_a_server_failure_is_not_a_verdict_on_the_source(upstreams: Upstreams, tmp_path: Path) -> None:
    """A 503 says the server cannot answer now, nothing about the chart: cannot check (14), not broken (13)."""
    manifest = upstreams.edited("charts.metallb.repository", f"{upstreams.files.url}/failing/charts")
    done = upstreams.check(manifest=manifest, state=tmp_path / "state")
    assert done.code == EXIT_OFFLINE, done.output
    [said] = messages(done)
    assert re.fullmatch(r"cannot check 1 of \d+ upstream sources, no answer .*", said), said  # however many pins
    assert said.split(" upstream sources, ", 1)[1] == (
        "no answer (server error HTTP 503, try again later: "
        f"{upstreams.files.url.removeprefix('http://')}); check the network (DNS, a proxy in HTTPS_PROXY) and run again"
    )


# inv up stops before it touches anything.


def lima_up(upstreams: Upstreams, tmp_path: Path, manifest: dict[str, Any], *flags: str) -> tuple[CliResult, Path]:
    data = loopback_data()
    data.update({"target": "lima", "state_dir": str(tmp_path / "state")})
    (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
    env = upstreams.env(manifest)
    record = tmp_path / "record.jsonl"
    env.update(
        {
            "HOMELAB_CONFIG": str(tmp_path / "homelab.yaml"),
            "PATH": f"{FAKES}:{os.environ['PATH']}",  # a recording limactl and friends: any call is written down
            "FAKE_RECORD": str(record),
            "FAKE_LIMA_STATE": str(tmp_path / "lima"),
            "FAKE_CRONTAB": str(tmp_path / "crontab"),
        }
    )
    return run_cli(["up", *flags], env, timeout=300), record


def test_up_on_lima_with_a_broken_source_stops_before_touching_anything(upstreams: Upstreams, tmp_path: Path) -> None:
    where = upstreams.registry.host
    manifest = upstreams.edited("images.cloudflared", f"{where}/cloudflare/cloudflared:2099.1.0")
    for flags in ((), ("--offline",)):  # --offline goes on only when nothing answers, never past a broken source
        done, record = lima_up(upstreams, tmp_path, manifest, *flags)
        assert done.code == EXIT_SOURCES_BROKEN, done.output
        assert messages(done)[0].startswith("image cloudflared: "), done.output
        assert "[1/4] vm" not in done.stdout, "no layer started"
        assert not record.exists(), f"a tool was called: {record.read_text()}"
        assert state_files(tmp_path / "state") == [] and not (tmp_path / "lima").exists()


def test_up_when_sources_cannot_be_checked_stops_with_14(upstreams: Upstreams, tmp_path: Path) -> None:
    manifest = upstreams.edited("charts.metallb.repository", f"http://127.0.0.1:{free_port()}/charts")
    done, record = lima_up(upstreams, tmp_path, manifest)
    assert done.code == EXIT_OFFLINE, done.output
    assert "connection refused" in done.stderr and "inv up --offline goes on without the check" in done.stderr
    assert not record.exists() and state_files(tmp_path / "state") == []


def test_a_dry_run_of_up_asks_no_upstream(upstreams: Upstreams, tmp_path: Path) -> None:
    asked = len(upstreams.files.asked)
    done, _ = lima_up(upstreams, tmp_path, upstreams.manifest, "--only", "k3s", "--dry-run")
    assert "sources: the real run first checks the 2 upstream sources" in done.stdout, done.output
    assert len(upstreams.files.asked) == asked
