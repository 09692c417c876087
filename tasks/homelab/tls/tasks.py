"""Certificates from cert-manager: readiness and days to expiry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task


def days_left(not_after: str | None, now: datetime | None = None) -> int | None:
    if not not_after:
        return None
    expiry = datetime.fromisoformat(not_after.replace("Z", "+00:00"))
    return (expiry - (now or datetime.now(UTC))).days


@task(help={"target": "Cluster target (default from config).", "warn_days": "Fail when a certificate expires sooner."})
def status(c: Any, target: str | None = None, warn_days: int = 14) -> None:
    """Every Certificate: ready or not, days to expiry; exit 1 if one is not ready or expires soon."""
    from invoke.exceptions import Exit

    from homelab.core import cluster

    s = session(c, target=target)
    certs = cluster.connect(s).list_objects("cert-manager.io/v1", "Certificate")
    healthy = bool(certs)
    for cert in certs:
        st = cert.get("status") or {}
        ready = any(x["type"] == "Ready" and x["status"] == "True" for x in st.get("conditions") or [])
        days = days_left(st.get("notAfter"))
        healthy = healthy and ready and days is not None and days >= warn_days
        print(
            f"{cert['metadata']['namespace']}/{cert['metadata']['name']:<24} {'Ready' if ready else 'NotReady':<9} "
            f"{'expires in ' + str(days) + ' days' if days is not None else 'not issued yet'}"
        )
    if not certs:
        print("no certificates found (is cert-manager installed?)")
    if not healthy:
        raise Exit(code=1)


ns = Collection("tls", status)
