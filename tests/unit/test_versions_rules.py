"""The upstream source check's pure parts: what is collected, how answers are read, what is said.

The network is replaced by a table of answers (``Upstream``); the real servers (a
chart repository, the CNCF registry with token auth) are in
``tests/integration/test_versions_check.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Context

from helpers import FAKES, LOOPBACK_CONFIG, REPO, loopback_data
from homelab.config import loader
from homelab.core import pins
from homelab.core.errors import EXIT_OFFLINE, EXIT_SOURCES_BROKEN, SourcesBroken, SourcesUnreachable
from homelab.gitops.tree import render
from homelab.versions import check, helm, oci
from homelab.versions.fetch import Answer, Unreachable
from homelab.versions.sources import (
    CHART,
    IMAGE,
    INSTALL_MANIFEST,
    K3S_INSTALLER,
    K3S_RELEASE,
    Source,
    collect,
    for_layers,
    workload_images,
)

MANIFEST = "versions.toml"


def origin_of(set_keys: Mapping[str, str] | None = None) -> Callable[[str], str]:
    return lambda key: (set_keys or {}).get(key, "default")


@pytest.fixture(scope="module", autouse=True)
def reference_on_loopback(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The reference homelab (its apps) with the loopback overrides, as one config file."""
    global CONFIG
    CONFIG = tmp_path_factory.mktemp("config") / "homelab.yaml"
    CONFIG.write_text(yaml.safe_dump(loopback_data()))


CONFIG = LOOPBACK_CONFIG


def loaded(overrides: Mapping[str, Any] | None = None) -> loader.LoadedConfig:
    return loader.load(CONFIG, overrides, environ={})


def collected(overrides: Mapping[str, Any] | None = None) -> list[Source]:
    found = loaded(overrides)
    return collect(found.config, pins.load(), render(found.config).files, found.origin, MANIFEST)


# What is collected.


def test_every_chart_application_of_the_render_is_a_source_with_its_manifest_keys() -> None:
    charts = {s.component: s for s in collected() if s.kind == CHART}
    manifest = pins.load()
    assert set(charts) == {"sealed-secrets", "metallb", "cert-manager", "traefik", "kube-prometheus-stack"}
    for name, source in charts.items():
        assert (source.address, source.chart, source.version) == (
            manifest.charts[name].repository,
            manifest.charts[name].chart,
            manifest.charts[name].version,
        )
        assert source.version_key == f"charts.{name}.version in versions.toml"
        assert source.address_key == f"charts.{name}.repository in versions.toml"


def test_a_chart_version_set_in_the_config_names_the_config_key() -> None:
    source = next(s for s in collected({"tls": {"chart_version": "v1.17.0"}}) if s.component == "cert-manager")
    assert source.version == "v1.17.0"
    assert source.version_key == "tls.chart_version in the config (set by cli)"


def test_opt_in_charts_are_sources_only_when_enabled() -> None:
    assert "longhorn" not in {s.component for s in collected()}
    assert "longhorn" in {s.component for s in collected({"options": {"longhorn": True}})}


def test_every_image_of_the_render_and_every_image_pin_is_a_source_once() -> None:
    found = [s for s in collected() if s.kind == IMAGE]
    addresses = [s.address for s in found]
    assert len(addresses) == len(set(addresses))
    assert set(pins.load().images.values()) <= set(addresses)
    controller = next(s for s in found if s.component == "sealed-secrets-controller")
    assert controller.version_key == "images.sealed-secrets-controller in versions.toml"
    assert controller.version == "0.40.0"


def test_an_image_the_config_sets_names_the_apps_key() -> None:
    overrides = {"apps": {"homepage": {"image": "ghcr.io/gethomepage/homepage:v1.5.0"}}}
    source = next(s for s in collected(overrides) if s.address == "ghcr.io/gethomepage/homepage:v1.5.0")
    assert source.version_key == "apps.homepage.image in the config (set by cli)"
    # The pin stays a source of its own: the manifest is checked whole.
    assert any(s.address == pins.load().images["homepage"] for s in collected(overrides))


def test_init_containers_and_every_workload_kind_are_read() -> None:
    pod = {"initContainers": [{"image": "a/init:1"}], "containers": [{"image": "a/main:1"}]}
    files = {
        "x.yaml": [
            {"kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}, "spec": {"template": {"spec": pod}}},
            {"kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"template": {"spec": {"containers": []}}}},
            {
                "kind": "CronJob",
                "metadata": {"name": "c", "namespace": "n"},
                "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"image": "a/cron:2"}]}}}}},
            },
            {"kind": "DaemonSet", "metadata": {"name": "ds", "namespace": "n"}, "spec": {"template": {"spec": pod}}},
            {"kind": "ConfigMap", "metadata": {"name": "image"}, "data": {"image": "not/an-image:1"}},
        ]
    }
    assert list(workload_images(files)) == [
        ("n/d", "a/init:1"),
        ("n/d", "a/main:1"),
        ("n/c", "a/cron:2"),
        ("n/ds", "a/init:1"),
        ("n/ds", "a/main:1"),
    ]


def test_k3s_release_installer_and_install_manifest_follow_the_config() -> None:
    by_kind = {s.kind: s for s in collected()}
    cfg, manifest = loaded().config, pins.load()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[cfg.lima.arch]
    release = f"{manifest.k3s_releases}/{cfg.k3s.version}/sha256sum-{arch}.txt"
    assert by_kind[K3S_RELEASE].address == release
    assert by_kind[K3S_INSTALLER].address == cfg.k3s.installer_url
    assert by_kind[INSTALL_MANIFEST].address == manifest.argocd_install_manifest.format(
        version=cfg.gitops.argocd_version
    )
    assert by_kind[INSTALL_MANIFEST].version_key == "argocd.version in versions.toml"


def test_an_installer_file_an_airgap_install_and_a_local_manifest_are_not_pulled() -> None:
    kinds = {s.kind for s in collected({"k3s": {"installer_file": str(FAKES / "k3s-install.sh")}})}
    assert K3S_INSTALLER not in kinds and K3S_RELEASE in kinds
    assert K3S_RELEASE not in {
        s.kind
        for s in collected(
            {
                "k3s": {
                    "install_method": "airgap",
                    "airgap_binary": str(FAKES / "k3d"),
                    "airgap_images": str(FAKES / "k3d"),
                }
            }
        )
    }
    local = collected({"gitops": {"install_manifest": "/opt/argocd/{version}/install.yaml"}})
    assert INSTALL_MANIFEST not in {s.kind for s in local}


def test_a_sources_identity_is_what_is_asked_not_where_the_fix_is_named() -> None:
    """The cache key holds identities: the manifest's file name (in every fix) must not be one of them."""
    found = loaded()
    files = render(found.config).files
    here = collect(found.config, pins.load(), files, found.origin, "versions.toml")
    there = collect(found.config, pins.load(), files, found.origin, "/elsewhere/other.toml")
    assert [s.identity for s in here] == [s.identity for s in there]
    assert all(s.chart == "" for s in here if s.kind != CHART)


def test_up_checks_only_what_its_chosen_layers_pull() -> None:
    every = collected()
    assert {s.kind for s in for_layers(every, ["vm", "k3s"])} == {K3S_RELEASE, K3S_INSTALLER}
    assert {s.kind for s in for_layers(every, ["gitops", "backup"])} == {CHART, IMAGE, INSTALL_MANIFEST}
    assert for_layers(every, ["vm", "backup"]) == []


# Helm index.

INDEX = b"""apiVersion: v1
entries:
  cert-manager:
  - name: cert-manager
    version: v1.18.2
    urls: [https://charts.jetstack.io/charts/cert-manager-v1.18.2.tgz]
  - name: cert-manager
    version: v1.19.0-alpha.1
  - name: cert-manager
    version: v1.19.1
  - name: cert-manager
    version: v1.9.0
  metallb:
  - {name: metallb, version: 0.15.2}
generated: "2026-01-01T00:00:00Z"
"""


def test_an_index_lists_each_charts_versions() -> None:
    index = helm.parse_index(INDEX)
    assert index["metallb"] == ["0.15.2"]
    assert helm.lookup(index, "cert-manager", "v1.18.2").found
    assert helm.lookup(index, "metallb", "v0.15.2").found, "Helm reads v0.15.2 and 0.15.2 as one version"


def test_a_missing_version_names_the_newest_that_exist_newest_first() -> None:
    found = helm.lookup(helm.parse_index(INDEX), "cert-manager", "v9.9.9")
    assert not found.found and found.chart_known
    assert found.newest == ("v1.19.1", "v1.19.0-alpha.1", "v1.18.2", "v1.9.0")


def test_a_missing_chart_names_the_charts_there() -> None:
    found = helm.lookup(helm.parse_index(INDEX), "ingress-nginx", "4.13.3")
    assert not found.chart_known and found.charts == ("cert-manager", "metallb")


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"apiVersion: v1\nentries: {cert-manager: [\n", "not YAML at line 3"),
        (b"<html><body>Moved</body></html>", "not a Helm repository index"),
        (b"\x00\x01\xff", "not YAML"),
        (b"just a string\n", "not a Helm repository index"),
        (b"apiVersion: v1\nkind: ConfigMap\n", "not a Helm repository index"),
    ],
)
def test_an_answer_that_is_not_an_index_says_why(body: bytes, said: str) -> None:
    with pytest.raises(helm.IndexProblem, match=said):
        helm.parse_index(body)


# Registry references and challenges.


@pytest.mark.parametrize(
    ("reference", "registry", "repository", "tag", "base"),
    [
        ("redis:7", "docker.io", "library/redis", "7", "https://registry-1.docker.io"),
        (
            "cloudflare/cloudflared:2025.9.0",
            "docker.io",
            "cloudflare/cloudflared",
            "2025.9.0",
            "https://registry-1.docker.io",
        ),
        ("docker.io/bitnami/x:1", "docker.io", "bitnami/x", "1", "https://registry-1.docker.io"),
        ("docker.io/nginx:1", "docker.io", "library/nginx", "1", "https://registry-1.docker.io"),
        ("ghcr.io/org/app:v1", "ghcr.io", "org/app", "v1", "https://ghcr.io"),
        ("127.0.0.1:5000/a/b:2", "127.0.0.1:5000", "a/b", "2", "http://127.0.0.1:5000"),
        ("localhost:5000/b:2", "localhost:5000", "b", "2", "http://localhost:5000"),
        ("ghcr.io/org/app:v1@sha256:" + "a" * 64, "ghcr.io", "org/app", "sha256:" + "a" * 64, "https://ghcr.io"),
    ],
)
def test_references_resolve_as_docker_pull_names_them(
    reference: str, registry: str, repository: str, tag: str, base: str
) -> None:
    image = oci.parse_reference(reference)
    assert (image.registry, image.repository, image.reference, image.base_url) == (registry, repository, tag, base)


def test_a_bearer_challenge_is_read_with_quoted_commas_and_escapes() -> None:
    header = 'Bearer realm="https://auth.example/token?a=1,b=2",service="registry.example",scope="repository:x:pull"'
    assert oci.parse_challenge(header) == (
        "bearer",
        {"realm": "https://auth.example/token?a=1,b=2", "service": "registry.example", "scope": "repository:x:pull"},
    )
    assert oci.parse_challenge('BEARER Realm="a\\"b", service=bare') == ("bearer", {"realm": 'a"b', "service": "bare"})
    assert oci.parse_challenge('Basic realm="Registry"') == ("basic", {"realm": "Registry"})
    assert oci.parse_challenge("") == ("", {})


def test_the_token_request_asks_for_pull_of_that_repository_only() -> None:
    url = oci.token_url({"realm": "https://auth.docker.io/token", "service": "registry.docker.io"}, "library/redis")
    assert url == "https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Fredis%3Apull"
    assert oci.token_url({"realm": "https://x/t?x=1"}, "a/b").startswith("https://x/t?x=1&scope=")


class Upstream:
    """Answers by (method, url); every request recorded; a missing entry is a refused connection."""

    def __init__(self, answers: Mapping[tuple[str, str], Answer]) -> None:
        self.answers, self.asked = dict(answers), []  # type: ignore[var-annotated]

    def __call__(self, url: str, method: str = "GET", headers: Mapping[str, str] | None = None, *_: Any) -> Answer:
        self.asked.append((method, url, dict(headers or {})))
        if (method, url) not in self.answers:
            raise Unreachable(url, "connection refused")
        return self.answers[(method, url)]


REGISTRY = "https://ghcr.io"
CHALLENGE = {"www-authenticate": 'Bearer realm="https://ghcr.io/token",service="ghcr.io"'}
TOKEN_URL = "https://ghcr.io/token?service=ghcr.io&scope=repository%3Aorg%2Fapp%3Apull"
MANIFEST_URL = f"{REGISTRY}/v2/org/app/manifests/v1"


def registry(manifest: Answer, get: Answer | None = None) -> Upstream:
    answers = {
        ("GET", f"{REGISTRY}/v2/"): Answer(f"{REGISTRY}/v2/", 401, CHALLENGE),
        ("GET", TOKEN_URL): Answer(TOKEN_URL, 200, {}, json.dumps({"token": "t0k"}).encode()),
        ("HEAD", MANIFEST_URL): manifest,
    }
    if get is not None:
        answers[("GET", MANIFEST_URL)] = get
    return Upstream(answers)


def test_a_tag_is_found_through_the_anonymous_token_flow() -> None:
    digest = "sha256:" + "b" * 64
    found = registry(Answer(MANIFEST_URL, 200, {"docker-content-digest": digest}))
    verdict = oci.resolve(oci.parse_reference("ghcr.io/org/app:v1"), found)
    assert verdict.ok and digest in verdict.detail
    head = found.asked[-1]
    assert head[0] == "HEAD" and head[2]["Authorization"] == "Bearer t0k"
    assert set(oci.MANIFEST_TYPES) == {t.strip() for t in head[2]["Accept"].split(",")}


def test_a_registry_without_auth_is_asked_without_a_token() -> None:
    url = "http://127.0.0.1:5000/v2/a/manifests/1"
    upstream = Upstream({("GET", "http://127.0.0.1:5000/v2/"): Answer("", 200), ("HEAD", url): Answer(url, 200)})
    assert oci.resolve(oci.parse_reference("127.0.0.1:5000/a:1"), upstream).ok
    assert "Authorization" not in upstream.asked[-1][2]


def errors(code: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": "x"}]}).encode()


@pytest.mark.parametrize(
    ("status", "code", "blame", "said"),
    [
        (404, "MANIFEST_UNKNOWN", "version", "answered HTTP 404, MANIFEST_UNKNOWN: no tag v1 in org/app"),
        (404, "NAME_UNKNOWN", "address", "answered HTTP 404, NAME_UNKNOWN: no repository org/app on ghcr.io"),
        (401, "UNAUTHORIZED", "address", "answered HTTP 401, UNAUTHORIZED: org/app does not exist or is private"),
        (404, "", "version", "answered HTTP 404: no tag v1 in org/app"),
    ],
)
def test_a_manifest_that_is_not_there_is_judged_by_the_registrys_error_code(
    status: int, code: str, blame: str, said: str
) -> None:
    body = errors(code) if code else b""
    verdict = oci.resolve(
        oci.parse_reference("ghcr.io/org/app:v1"),
        registry(Answer(MANIFEST_URL, status), Answer(MANIFEST_URL, status, {}, body)),
    )
    assert not verdict.ok and verdict.detail == said and verdict.blame == blame and verdict.url == MANIFEST_URL


TAGS_URL = f"{REGISTRY}/v2/org/app/tags/list?n={oci.TAGS_ASKED}"


def test_an_unknown_manifest_is_told_apart_by_the_tag_list() -> None:
    image, unknown = (
        oci.parse_reference("ghcr.io/org/app:v1"),
        Answer(MANIFEST_URL, 404, {}, errors("MANIFEST_UNKNOWN")),
    )
    tagged = registry(Answer(MANIFEST_URL, 404), unknown)
    tagged.answers[("GET", TAGS_URL)] = Answer(
        TAGS_URL, 200, {}, json.dumps({"tags": ["v0.9", "latest", "v2.0"]}).encode()
    )
    verdict = oci.resolve(image, tagged)
    assert verdict.detail == "answered HTTP 404, MANIFEST_UNKNOWN: no tag v1 in org/app (it has v2.0, v0.9, latest)"
    assert tagged.asked[-1][2]["Authorization"] == "Bearer t0k", "the tag list is asked with the same token"
    gone = registry(Answer(MANIFEST_URL, 404), unknown)
    gone.answers[("GET", TAGS_URL)] = Answer(TAGS_URL, 404, {}, errors("NAME_UNKNOWN"))
    verdict = oci.resolve(image, gone)
    assert verdict.blame == "address" and verdict.detail.endswith("no repository org/app on ghcr.io")
    silent = registry(Answer(MANIFEST_URL, 404), unknown)  # the tag list does not answer: the manifest's word stands
    assert oci.resolve(image, silent).detail == "answered HTTP 404, MANIFEST_UNKNOWN: no tag v1 in org/app"


def test_a_registry_that_wants_credentials_or_refuses_a_token_is_broken() -> None:
    basic = Upstream({("GET", f"{REGISTRY}/v2/"): Answer("", 401, {"www-authenticate": 'Basic realm="r"'})})
    verdict = oci.resolve(oci.parse_reference("ghcr.io/org/app:v1"), basic)
    assert not verdict.ok and "asking for Basic credentials" in verdict.detail
    refused = registry(Answer(MANIFEST_URL, 200))
    refused.answers[("GET", TOKEN_URL)] = Answer(TOKEN_URL, 403)
    verdict = oci.resolve(oci.parse_reference("ghcr.io/org/app:v1"), refused)
    assert not verdict.ok and verdict.url == TOKEN_URL and "HTTP 403: no anonymous pull token" in verdict.detail


# Judging sources and saying what to change.

CHART_SOURCE = Source(
    CHART,
    "cert-manager",
    "https://charts.example",
    "v9.9.9",
    chart="cert-manager",
    version_key="charts.cert-manager.version in versions.toml",
    address_key="charts.cert-manager.repository in versions.toml",
)
INDEX_URL = "https://charts.example/index.yaml"


def run_one(source: Source, answers: Mapping[tuple[str, str], Answer]) -> check.Result:
    return check.run([source], Upstream(answers), total=5)[0]


def test_a_missing_chart_version_is_one_message_naming_address_answer_and_key() -> None:
    result = run_one(CHART_SOURCE, {("GET", INDEX_URL): Answer(INDEX_URL, 200, {}, INDEX)})
    assert result.status == check.BROKEN
    assert result.message() == (
        "chart cert-manager: https://charts.example/index.yaml has no version v9.9.9 of cert-manager "
        "(newest: v1.19.1, v1.19.0-alpha.1, v1.18.2, v1.9.0); "
        "set charts.cert-manager.version in versions.toml to a version the index lists"
    )


def test_a_moved_repository_names_the_status_and_the_repository_key() -> None:
    result = run_one(CHART_SOURCE, {("GET", INDEX_URL): Answer(INDEX_URL, 404)})
    assert result.message() == (
        "chart cert-manager: https://charts.example/index.yaml answered HTTP 404: the repository moved or is gone; "
        "set charts.cert-manager.repository in versions.toml to the repository's current address"
    )


def test_an_index_that_is_not_yaml_is_broken_at_the_repository_key() -> None:
    result = run_one(CHART_SOURCE, {("GET", INDEX_URL): Answer(INDEX_URL, 200, {}, b"entries: {a: [\n")})
    assert result.status == check.BROKEN and "answered 200 with not YAML at line 2" in result.message()
    assert result.message().endswith(
        "set charts.cert-manager.repository in versions.toml to the repository's current address"
    )


def test_a_network_failure_means_cannot_check_not_broken() -> None:
    result = run_one(CHART_SOURCE, {})
    assert result.status == check.UNREACHABLE and result.detail == "connection refused" and result.url == INDEX_URL


RELEASE = Source(
    K3S_RELEASE,
    "k3s",
    "https://releases.example/v1.35.5+k3s1/sha256sum-arm64.txt",
    "v1.35.5+k3s1",
    version_key="k3s.version in versions.toml",
    address_key="k3s.releases in versions.toml",
)


def test_a_k3s_release_must_list_the_binary_install_sh_greps_for() -> None:
    line = ("c" * 64 + "  k3s-arm64\n").encode()
    ok = run_one(RELEASE, {("GET", RELEASE.address): Answer(RELEASE.address, 200, {}, line)})
    assert ok.ok
    other = ("c" * 64 + "  k3s\n").encode()
    wrong = run_one(RELEASE, {("GET", RELEASE.address): Answer(RELEASE.address, 200, {}, other)})
    assert wrong.status == check.BROKEN and "lists no checksum of k3s-arm64" in wrong.detail
    gone = run_one(RELEASE, {("GET", RELEASE.address): Answer(RELEASE.address, 404)})
    assert gone.message() == (
        "k3s-release k3s: https://releases.example/v1.35.5+k3s1/sha256sum-arm64.txt answered HTTP 404: no such K3S "
        "release; set k3s.version in versions.toml to a K3S release that exists "
        "(https://github.com/k3s-io/k3s/releases) (or k3s.releases in versions.toml, if the files moved)"
    )


def test_the_installer_must_be_a_shell_script_and_the_manifest_kubernetes_yaml() -> None:
    installer = Source(K3S_INSTALLER, "k3s installer", "https://get.example", "", version_key="k3s.installer")
    page = {("GET", installer.address): Answer(installer.address, 200, {}, b"<!DOCTYPE html><p>Login</p>")}
    assert "not with a shell script" in run_one(installer, page).detail
    script = {("GET", installer.address): Answer(installer.address, 200, {}, b"#!/bin/sh\nset -e\n")}
    assert run_one(installer, script).ok
    manifest = Source(
        INSTALL_MANIFEST, "argocd", "https://m.example/install.yaml", "v3.6.1", version_key="argocd.version"
    )
    objects = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: argocd}\n---\n"
    assert run_one(manifest, {("GET", manifest.address): Answer(manifest.address, 200, {}, objects)}).detail == (
        "1 Kubernetes objects"
    )
    empty = run_one(manifest, {("GET", manifest.address): Answer(manifest.address, 200, {}, b"a: b\n")})
    assert empty.status == check.BROKEN and "no Kubernetes objects" in empty.detail


def test_an_oci_chart_repository_is_broken_not_offline() -> None:
    odd = Source(CHART, "x", "oci://registry.example/charts", "1.0.0", chart="x", address_key="charts.x.repository")
    result = check.run([odd], total=5)[0]
    assert result.status == check.BROKEN and result.blame == "address" and "not an http(s) address" in result.detail


def test_broken_wins_over_offline_and_each_has_its_own_exit_code() -> None:
    broken = check.Result(CHART_SOURCE, check.BROKEN, "answered HTTP 404", "address", INDEX_URL)
    silent = check.Result(RELEASE, check.UNREACHABLE, "DNS lookup failed (x)", url=RELEASE.address)
    with pytest.raises(SourcesBroken) as both:
        check.raise_for(check.Report([broken, silent]))
    assert both.value.exit_code == EXIT_SOURCES_BROKEN == 13
    assert str(both.value).splitlines()[0] == broken.message()
    with pytest.raises(SourcesUnreachable) as offline:
        check.raise_for(check.Report([silent]), "inv up --offline goes on without the check")
    assert offline.value.exit_code == EXIT_OFFLINE == 14
    assert str(offline.value) == (
        "cannot check 1 of 1 upstream sources, no answer (DNS lookup failed (x): releases.example); "
        "check the network (DNS, a proxy in HTTPS_PROXY) and run again; inv up --offline goes on without the check"
    )
    check.raise_for(check.Report([check.Result(RELEASE, check.OK, "fine")]))  # all resolve: no error


def test_the_run_is_bounded_in_total() -> None:
    import threading

    release = threading.Event()

    def stuck(url: str, *_: Any) -> Answer:
        release.wait(5)
        raise Unreachable(url, "late")

    results = check.run([CHART_SOURCE], stuck, total=0.2)
    release.set()
    assert results[0].status == check.UNREACHABLE and "within the run's bound of 0 s" in results[0].detail


# The cache.


def ok_results(sources: list[Source]) -> list[check.Result]:
    return [check.Result(s, check.OK, f"fine {s.component}") for s in sources]


def test_a_passing_run_is_cached_for_a_day_for_the_same_manifest_and_sources(tmp_path: Path) -> None:
    path, sources = tmp_path / "state" / check.CACHE_FILE, [CHART_SOURCE, RELEASE]
    check.remember(path, "digest-1", ok_results(sources), now=1000.0)
    hit = check.cached(path, "digest-1", sources, now=1000.0 + check.MAX_AGE)
    assert (
        hit is not None
        and hit.cached_at == 1000.0
        and [r.detail for r in hit.results] == ["fine cert-manager", "fine k3s"]
    )
    assert check.cached(path, "digest-1", [RELEASE], now=1001.0) is not None, "a subset of a passing run passes"
    assert check.cached(path, "digest-1", sources, now=1001.0 + check.MAX_AGE) is None, "older than a day"
    assert check.cached(path, "digest-1", sources, now=999.0) is None, "checked in the future: the clock moved"
    assert check.cached(path, "digest-2", sources, now=1001.0) is None, "another manifest"
    other = Source(IMAGE, "x", "ghcr.io/x/y:1", "1")
    assert check.cached(path, "digest-1", [*sources, other], now=1001.0) is None, "a source not checked then"


def test_the_cache_key_is_the_manifest_digest_and_the_sorted_sources() -> None:
    assert check.cache_key("d", [CHART_SOURCE, RELEASE]) == check.cache_key("d", [RELEASE, CHART_SOURCE])
    assert check.cache_key("d", [CHART_SOURCE]) != check.cache_key("e", [CHART_SOURCE])


def test_an_unreadable_cache_is_no_cache(tmp_path: Path) -> None:
    path = tmp_path / check.CACHE_FILE
    path.write_text("{not json")
    assert check.cached(path, "d", [CHART_SOURCE], now=1.0) is None
    check.remember(path, "d", ok_results([CHART_SOURCE]), now=1.0)
    assert check.cached(path, "d", [CHART_SOURCE], now=2.0) is not None


# Wiring: the sandbox is skipped, a dry run asks nobody, the library raises the documented errors.


class FakeSession:
    def __init__(self, target: str, state: Path) -> None:
        found = loaded({"target": target})
        self.cfg, self.loaded, self.state_dir = found.config, found, state


def test_the_sandbox_pulls_nothing_so_it_is_not_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "run", lambda *_a, **_k: pytest.fail("the sandbox asked upstream"))
    said: list[str] = []
    check.require_sources(FakeSession("sandbox", tmp_path), out=said.append)
    assert said == ["sources: not checked on the sandbox: it pulls nothing from upstream"]


def test_a_dry_run_asks_nobody_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "run", lambda *_a, **_k: pytest.fail("the dry run asked upstream"))
    said: list[str] = []
    check.require_sources(FakeSession("lima", tmp_path / "state"), layers=["vm", "k3s"], dry_run=True, out=said.append)
    assert said == ["sources: the real run first checks the 2 upstream sources (inv versions.check)"]
    assert not (tmp_path / "state").exists()


def test_offline_stops_up_unless_allowed_and_broken_always_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = FakeSession("existing", tmp_path / "state")

    def answering(status: str) -> Callable[..., list[check.Result]]:
        return lambda sources, *_a, **_k: [
            check.Result(s, status, "connection refused", url=s.address) for s in sources
        ]

    monkeypatch.setattr(check, "run", answering(check.UNREACHABLE))
    with pytest.raises(SourcesUnreachable, match="inv up --offline goes on"):
        check.require_sources(session, out=lambda _: None)
    said: list[str] = []
    check.require_sources(session, allow_offline=True, out=said.append)
    assert len(said) == 1 and said[0].endswith("going on (--offline)")
    monkeypatch.setattr(check, "run", answering(check.BROKEN))
    with pytest.raises(SourcesBroken):
        check.require_sources(session, allow_offline=True, out=lambda _: None)
    assert not (tmp_path / "state").exists(), "only a passing run is cached"
    monkeypatch.setattr(check, "run", answering(check.OK))
    check.require_sources(session, out=said.append)
    assert said[-1] == f"sources: all {len(check.sources_for(session))} upstream sources resolve"
    assert (tmp_path / "state" / check.CACHE_FILE).is_file()
    monkeypatch.setattr(check, "run", lambda *_a, **_k: pytest.fail("a fresh passing run was asked again"))
    check.require_sources(session, out=said.append)
    assert "cached, checked" in said[-1]


def test_the_doctor_warns_when_offline_and_fails_when_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from homelab.root import doctor

    session = FakeSession("lima", tmp_path / "state")
    for status, shown in ((check.UNREACHABLE, "warn"), (check.BROKEN, "fail")):
        monkeypatch.setattr(
            check,
            "run",
            lambda sources, *_a, _s=status, **_k: [check.Result(s, _s, "x", url=s.address) for s in sources],
        )
        row = doctor.check_sources(session)  # type: ignore[arg-type]
        assert row.name == "sources" and row.status == shown, row
    assert doctor.check_sources(FakeSession("sandbox", tmp_path)).status == "ok"  # type: ignore[arg-type]


def test_up_checks_the_sources_of_its_layers_before_the_first_layer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``inv up``'s wiring: the check is the first thing after the config, with --offline passed through."""
    from homelab.root import layers
    from homelab.root import tasks as root

    calls: list[Any] = []
    config = tmp_path / "homelab.yaml"  # its state dir (where up writes its log) in the test's directory
    config.write_text(yaml.safe_dump({**yaml.safe_load(CONFIG.read_text()), "state_dir": str(tmp_path / "state")}))
    config.chmod(0o600)
    monkeypatch.setenv("HOMELAB_CONFIG", str(config))
    monkeypatch.setattr(
        check, "require_sources", lambda s, offline, names, dry_run: calls.append(("sources", offline, names, dry_run))
    )

    def hook(self: layers.Layer, name: str) -> Callable[..., Any]:
        return lambda *_a: calls.append(("layer", self.name)) or False

    monkeypatch.setattr(layers.Layer, "hook", hook)
    root.up.body(Context(), target="existing", offline=True)
    assert calls[0] == ("sources", True, ["gitops", "backup"], False)
    assert [c[1] for c in calls[1:]] == ["gitops", "backup"]


def test_the_readme_documents_both_exit_codes() -> None:
    codes = (REPO / "docs" / "reference" / "exit-codes.md").read_text()
    assert "| 13 |" in codes and "| 14 |" in codes
    assert "inv versions.check" in codes
    assert "inv versions.check" in (REPO / "docs" / "guide" / "versions.md").read_text()
