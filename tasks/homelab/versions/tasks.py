"""Upstream sources: check that every chart, image, K3S release and manifest the homelab pins still resolves."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task


@task(
    default=True,
    help={
        "refresh": "Ask upstream again even when a passing check of the same sources is cached (24 h).",
        "json": "Print a JSON list of {component, kind, address, chart, version, ok, status, url, detail, fix}.",
    },
)
def check(c: Any, refresh: bool = False, json: bool = False) -> None:
    """Resolve every chart, image, K3S release and install manifest as its client would; exit 13 if one is broken.

    Exit 14 when sources cannot be checked (no network). Writes only its cache
    (``<state_dir>/versions-check.json``).
    """
    import json as jsonlib
    import sys
    import time

    from homelab.versions import check as sources

    s = session(c)
    report = sources.check(s, refresh=refresh)
    if json:
        print(jsonlib.dumps([r.as_json() for r in report.results], indent=2))
    else:
        for result in report.results:
            print(result.line())
    if report.cached_at is not None:
        age = sources.age_text(time.time() - report.cached_at)
        print(f"cached: checked {age} ago (kept {sources.MAX_AGE // 3600} h; --refresh asks again)", file=sys.stderr)
    sources.raise_for(report)
    if not json:
        print(f"versions.check: all {len(report.results)} upstream sources resolve")


ns = Collection("versions", check)
