"""Resolve every upstream source before anything changes: judge each answer, cache a passing run.

Each kind of source is asked the way its client asks it: a chart in its
repository's ``index.yaml`` (Helm, Argo CD), an image tag through the registry's
API (containerd), the K3S release's checksum file (install.sh's
``download_hash``), the installer, Argo CD's install manifest. Checks run on a
small thread pool, each request bounded, the whole run bounded too.

A run in which every source resolves is cached under the state directory for
24 hours, keyed by the manifest's sha256 and the sorted sources; a run with a
broken or unanswered source is never cached, so it is asked again next time.
``require_sources`` is what ``inv up`` calls before it touches anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from homelab.core import state_files
from homelab.core.errors import SourcesBroken, SourcesUnreachable
from homelab.versions import helm, oci
from homelab.versions.fetch import Answer, NotHttp, Unreachable, Verdict
from homelab.versions.sources import (
    CHART,
    IMAGE,
    INSTALL_MANIFEST,
    K3S_INSTALLER,
    K3S_RELEASE,
    Source,
    for_layers,
)

TOTAL_TIMEOUT = 120.0  # seconds for the whole run
WORKERS = 6
MAX_AGE = 24 * 3600  # seconds a passing run is trusted
CACHE_FILE = "versions-check.json"
OK, BROKEN, UNREACHABLE = "ok", "broken", "unreachable"
Fetch = Callable[..., Answer]  # fetch.request: (url, method, headers, deadline) -> Answer
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FIXES = {
    (CHART, "version"): "set {key} to a version the index lists",
    (CHART, "address"): "set {key} to the repository's current address",
    (IMAGE, "version"): "set {key} to a tag that exists",
    (IMAGE, "address"): "set {key} to an image that exists and can be pulled anonymously",
    (K3S_RELEASE, "version"): "set {key} to a K3S release that exists (https://github.com/k3s-io/k3s/releases)",
    (K3S_RELEASE, "address"): "set {key} to where K3S releases are downloaded from",
    (K3S_INSTALLER, "version"): "set {key} to the installer's address, or k3s.installer_file to a copy of it",
    (K3S_INSTALLER, "address"): "set {key} to the installer's address, or k3s.installer_file to a copy of it",
    (INSTALL_MANIFEST, "version"): "set {key} to an Argo CD release that exists",
    (INSTALL_MANIFEST, "address"): "set {key} to the install manifest's address (with {{version}} in it)",
}


@dataclass(frozen=True)
class Result:
    """One source and what its upstream answered."""

    source: Source
    status: str  # ok, broken, unreachable
    detail: str  # what answered (or why nothing did)
    blame: str = "version"
    url: str = ""  # what was asked last

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def fix(self) -> str:
        """What to change (broken), or what to do (unreachable)."""
        if self.status == UNREACHABLE:
            return "check the network (DNS, a proxy in HTTPS_PROXY) and run again"
        if self.status != BROKEN:
            return ""
        source = self.source
        key = source.address_key if self.blame == "address" else source.version_key
        text = FIXES[(source.kind, self.blame)].format(key=key)
        moved = source.kind in (K3S_RELEASE, INSTALL_MANIFEST) and self.blame == "version"
        if moved and source.address_key and source.address_key != key:
            text += f" (or {source.address_key}, if the files moved)"
        return text

    def message(self) -> str:
        """The one message of a broken source: component, address, what answered, what to change."""
        return (
            f"{self.source.kind} {self.source.component}: {self.url or self.source.address} {self.detail}; {self.fix}"
        )

    def line(self) -> str:
        shown = {OK: "ok", BROKEN: "BROKEN", UNREACHABLE: "NO ANSWER"}[self.status]
        return f"{shown:<9} {self.source.kind:<16} {self.source.component:<26} {self.source.shown()}: {self.detail}"

    def as_json(self) -> dict[str, Any]:
        source = self.source
        return {
            "component": source.component,
            "kind": source.kind,
            "address": source.address,
            "chart": source.chart,
            "version": source.version,
            "ok": self.ok,
            "status": self.status,
            "url": self.url,
            "detail": self.detail,
            "fix": self.fix,
        }


@dataclass
class Report:
    """The results of one run, and when they were checked when they came from the cache."""

    results: list[Result]
    cached_at: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def broken(self) -> list[Result]:
        return [r for r in self.results if r.status == BROKEN]

    @property
    def unreachable(self) -> list[Result]:
        return [r for r in self.results if r.status == UNREACHABLE]


# Judging each kind of source (the request function is passed in, so tests can drive these).


def judge_chart(source: Source, get: Callable[[str], Answer]) -> Verdict:
    url = helm.index_url(source.address)
    answer = get(url)
    if answer.status != 200:
        return Verdict(False, url, f"answered HTTP {answer.status}: the repository moved or is gone", "address")
    if answer.truncated:
        return Verdict(False, url, "answered with more than a chart index can hold", "address")
    try:
        index = helm.parse_index(answer.body)
    except helm.IndexProblem as problem:
        return Verdict(False, url, f"answered 200 with {problem}", "address")
    found = helm.lookup(index, source.chart, source.version)
    moved = f" (redirected to {answer.url})" if answer.url != url else ""
    if found.found:
        return Verdict(True, url, f"listed in the index{moved}")
    if not found.chart_known:
        listed = ", ".join(found.charts) or "no chart at all"
        return Verdict(False, url, f"has no chart {source.chart} (it lists {listed})", "address")
    newest = ", ".join(found.newest) or "none"
    return Verdict(False, url, f"has no version {source.version} of {source.chart} (newest: {newest})", "version")


def judge_image(source: Source, request: oci.Request) -> Verdict:
    return oci.resolve(oci.parse_reference(source.address), request)


def judge_k3s_release(source: Source, get: Callable[[str], Answer]) -> Verdict:
    """install.sh's download_hash: ``GITHUB_URL/download/VERSION/sha256sum-ARCH.txt``, then the k3s line of it."""
    url = source.address
    answer = get(url)
    if answer.status != 200:
        return Verdict(False, url, f"answered HTTP {answer.status}: no such K3S release", "version")
    arch = url.rsplit("sha256sum-", 1)[-1].removesuffix(".txt")
    binary = "k3s" if arch == "amd64" else f"k3s-{'armhf' if arch == 'arm' else arch}"
    if not re.search(rf"(?m)^[0-9a-f]{{64}}\s+{re.escape(binary)}\s*$", answer.body.decode("utf-8", "replace")):
        return Verdict(False, url, f"answered 200 but lists no checksum of {binary}", "version")
    return Verdict(True, url, f"the release lists {binary}")


def judge_installer(source: Source, get: Callable[[str], Answer]) -> Verdict:
    url = source.address
    answer = get(url)
    if answer.status != 200:
        return Verdict(False, url, f"answered HTTP {answer.status}", "address")
    if not answer.body.startswith(b"#!"):
        start = answer.body[:20].decode("utf-8", "replace").strip()
        return Verdict(False, url, f"answered 200 but not with a shell script (it starts {start!r})", "address")
    first = answer.body.splitlines()[0].decode("utf-8", "replace")
    return Verdict(True, url, f"a shell script ({first}, {len(answer.body)} bytes)")


def judge_install_manifest(source: Source, get: Callable[[str], Answer]) -> Verdict:
    url = source.address
    answer = get(url)
    if answer.status != 200:
        return Verdict(False, url, f"answered HTTP {answer.status}", "version" if answer.status == 404 else "address")
    try:
        documents = list(yaml.load_all(answer.body, Loader=_Loader))
    except yaml.YAMLError as error:
        return Verdict(
            False,
            url,
            f"answered 200 with text that is not YAML ({getattr(error, 'problem', None) or error})",
            "address",
        )
    objects = [d for d in documents if isinstance(d, dict) and d.get("apiVersion") and d.get("kind")]
    if not objects:
        return Verdict(False, url, "answered 200 with YAML that holds no Kubernetes objects", "address")
    return Verdict(True, url, f"{len(objects)} Kubernetes objects")


def check_one(source: Source, request: Fetch, deadline: float) -> Result:
    """Ask upstream about one source; never raises for a network failure."""

    def get(url: str) -> Answer:
        return request(url, "GET", {}, deadline)

    def call(url: str, method: str, headers: Mapping[str, str]) -> Answer:
        return request(url, method, headers, deadline)

    judges: dict[str, Callable[[], Verdict]] = {
        CHART: lambda: judge_chart(source, get),
        IMAGE: lambda: judge_image(source, call),
        K3S_RELEASE: lambda: judge_k3s_release(source, get),
        K3S_INSTALLER: lambda: judge_installer(source, get),
        INSTALL_MANIFEST: lambda: judge_install_manifest(source, get),
    }
    try:
        verdict = judges[source.kind]()
    except Unreachable as failure:
        return Result(source, UNREACHABLE, failure.reason, url=failure.url)
    except NotHttp as odd:
        return Result(
            source, BROKEN, "is not an http(s) address; this check asks HTTP sources only", "address", odd.url
        )
    return Result(source, OK if verdict.ok else BROKEN, verdict.detail, verdict.blame, verdict.url)


def run(sources: list[Source], request: Fetch | None = None, total: float = TOTAL_TIMEOUT) -> list[Result]:
    """Every source checked on a small pool; what has not answered within ``total`` seconds is unreachable."""
    from homelab.versions import fetch

    ask = request or fetch.request
    deadline = time.monotonic() + total
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="versions-check")
    futures = [pool.submit(check_one, source, ask, deadline) for source in sources]
    wait(futures, timeout=total)
    pool.shutdown(wait=False, cancel_futures=True)
    results = []
    for source, future in zip(sources, futures, strict=True):
        if future.done() and not future.cancelled():
            results.append(future.result())
        else:
            results.append(Result(source, UNREACHABLE, f"no answer within the run's bound of {total:.0f} s"))
    return results


# The cache: a passing run, trusted for MAX_AGE.


def cache_key(manifest_digest: str, sources: Iterable[Source]) -> str:
    identities = sorted({s.identity for s in sources})
    return hashlib.sha256(json.dumps([manifest_digest, identities]).encode()).hexdigest()


def cached(path: Path, manifest_digest: str, sources: list[Source], now: float) -> Report | None:
    """The fresh passing run that covers every one of ``sources``, from the cache file."""
    entries = (state_files.read_json(path, state_files.VERSIONS_CACHE) or {}).get("entries")
    wanted = {s.identity for s in sources}
    for entry in entries.values() if isinstance(entries, dict) else []:
        try:
            age = now - float(entry["checked_at"])
            if entry["manifest"] != manifest_digest or not 0 <= age <= MAX_AGE:
                continue
            details = {tuple(item["identity"]): str(item["detail"]) for item in entry["results"]}
        except (KeyError, TypeError, ValueError):
            continue
        if wanted <= details.keys():
            results = [Result(s, OK, details[s.identity]) for s in sources]
            return Report(results, cached_at=float(entry["checked_at"]))
    return None


def remember(path: Path, manifest_digest: str, results: list[Result], now: float) -> None:
    """Keep a passing run (and the other fresh ones) in the cache file, written atomically."""
    entries = (state_files.read_json(path, state_files.VERSIONS_CACHE) or {}).get("entries") or {}
    kept = {
        key: entry
        for key, entry in (entries.items() if isinstance(entries, dict) else [])
        if isinstance(entry, dict)
        and isinstance(entry.get("checked_at"), int | float)
        and 0 <= now - entry["checked_at"] <= MAX_AGE
    }
    kept[cache_key(manifest_digest, [r.source for r in results])] = {
        "checked_at": now,
        "manifest": manifest_digest,
        "results": [{"identity": list(r.source.identity), "detail": r.detail} for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps({"entries": kept}, indent=1, sort_keys=True) + "\n")
    os.replace(scratch, path)


def cache_path(session: Any) -> Path:
    return Path(session.state_dir) / CACHE_FILE


# What tasks call.


def sources_for(session: Any) -> list[Source]:
    """Every source of the config in use and its render (the real homelab's tree, never the sandbox's)."""
    from homelab.core import pins
    from homelab.core.paths import project_root
    from homelab.gitops.tree import render
    from homelab.versions.sources import collect

    manifest = pins.load()
    try:
        name = str(manifest.path.resolve().relative_to(project_root()))
    except ValueError:
        name = str(manifest.path)
    return collect(session.cfg, manifest, render(session.cfg).files, session.loaded.origin, name)


def check(
    session: Any,
    sources: list[Source] | None = None,
    refresh: bool = False,
    request: Fetch | None = None,
    total: float = TOTAL_TIMEOUT,
    now: Callable[[], float] = time.time,
) -> Report:
    """Check ``sources`` (default: all of the config's), from the cache when a fresh passing run covers them."""
    from homelab.core import pins

    wanted = sources_for(session) if sources is None else sources
    digest = pins.load().digest
    path = cache_path(session)
    if not refresh and (hit := cached(path, digest, wanted, now())) is not None:
        return hit
    results = run(wanted, request, total)
    if results and all(r.ok for r in results):
        with contextlib.suppress(OSError):  # a read-only state dir costs only the cache
            remember(path, digest, results, now())
    return Report(results)


def age_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def offline_message(results: list[Result], total: int, hint: str = "") -> str:
    """One message for the sources that could not be asked: how many, and which hosts for which reason."""
    hosts: dict[str, list[str]] = {}
    for result in results:
        named = hosts.setdefault(result.detail, [])
        if (host := host_of(result.url)) and host not in named:
            named.append(host)
    parts = []
    for reason, named in hosts.items():
        listed = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
        parts.append(f"{reason}: {listed}" if listed else reason)
    text = f"cannot check {len(results)} of {total} upstream sources, no answer ({'; '.join(parts)}); {results[0].fix}"
    return text + (f"; {hint}" if hint else "")


def raise_for(report: Report, offline_hint: str = "") -> None:
    """``SourcesBroken`` when any source is broken, else ``SourcesUnreachable`` when any could not be asked."""
    if report.broken:
        lines = [r.message() for r in report.broken]
        if report.unreachable:
            lines.append(offline_message(report.unreachable, len(report.results)))
        raise SourcesBroken("\n".join(lines))
    if report.unreachable:
        raise SourcesUnreachable(offline_message(report.unreachable, len(report.results), offline_hint))


def require_sources(
    session: Any,
    allow_offline: bool = False,
    layers: Iterable[str] | None = None,
    dry_run: bool = False,
    out: Callable[[str], None] = print,
) -> None:
    """Stop before anything changes when a source the chosen layers pull is broken, or cannot be checked.

    The sandbox pulls nothing from these sources: skipped with a note. ``layers``
    (default: all) narrows the sources to those the layers pull. A dry run asks
    nobody and writes nothing: it shows a fresh cached verdict, or says that
    the real run checks. ``allow_offline`` goes on when sources cannot be
    checked (a broken source still stops).
    """
    from homelab.core import pins

    if session.cfg.target == "sandbox":
        out("sources: not checked on the sandbox: it pulls nothing from upstream")
        return
    every = sources_for(session)
    wanted = every if layers is None else for_layers(every, layers)
    if not wanted:
        return
    if dry_run:
        now = time.time()
        hit = cached(cache_path(session), pins.load().digest, wanted, now)
        if hit is None:
            out(f"sources: the real run first checks the {len(wanted)} upstream sources (inv versions.check)")
        else:
            out(f"sources: all {len(wanted)} resolve (cached, checked {age_text(now - (hit.cached_at or now))} ago)")
        return
    report = check(session, wanted)
    if report.unreachable and not report.broken and allow_offline:
        out(f"sources: {offline_message(report.unreachable, len(wanted))}; going on (--offline)")
        return
    raise_for(report, "inv up --offline goes on without the check")
    when = f", cached, checked {age_text(time.time() - report.cached_at)} ago" if report.cached_at else ""
    out(f"sources: all {len(wanted)} upstream sources resolve{when}")


def doctor_row(session: Any) -> tuple[str, str, str]:
    """(status, detail, fix) of the doctor's ``sources`` row: fail when broken, warn when not checkable."""
    from homelab.core.errors import HomelabError

    if session.cfg.target == "sandbox":
        return "ok", "not checked on the sandbox: it pulls nothing from upstream", ""
    try:
        report = check(session)
    except HomelabError as error:
        return "fail", str(error), "inv versions.check"
    if report.broken:
        first = report.broken[0]
        more = f" (and {len(report.broken) - 1} more)" if len(report.broken) > 1 else ""
        return "fail", f"{first.source.kind} {first.source.component}: {first.detail}{more}", first.fix
    if report.unreachable:
        return "warn", offline_message(report.unreachable, len(report.results)), "inv versions.check --refresh"
    when = f" (cached, checked {age_text(time.time() - report.cached_at)} ago)" if report.cached_at else ""
    return "ok", f"all {len(report.results)} upstream sources resolve{when}", ""
