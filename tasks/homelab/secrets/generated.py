"""Secrets the toolkit makes itself: Grafana's admin password.

kube-prometheus-stack ships Grafana with ``admin`` / ``prom-operator`` (its
values' ``grafana.adminPassword``), a login anyone can look up. The homelab
instead points the chart at a Secret of its own (``grafana.admin.existingSecret``
with ``userKey`` and ``passwordKey``, the grafana chart's values) whose password
is random, made on the first ``inv up`` and sealed like every other Secret.

Generating is a plan action, so ``--dry-run`` shows the file it would write and
writes nothing; the value exists only in memory then and is dropped. The file is
0600 and is the one place the password lives in plaintext: later runs read it
back (the same password, so nothing changes), and nothing prints it; the
redactor masks it wherever text leaves the process.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from homelab.config.schema import HomelabConfig, SecretRef
from homelab.core.paths import resolve_in_project
from homelab.core.plan import WriteFile
from homelab.core.secret_refs import REDACTOR, Secret

GRAFANA_SECRET = "grafana-admin"  # noqa: S105 - a Secret's name, in namespace monitoring (admin.existingSecret)
GRAFANA_USER_KEY, GRAFANA_PASSWORD_KEY = "admin-user", "admin-password"  # the grafana chart's default key names
GRAFANA_USER = "admin"
GRAFANA_KEY = "monitoring.grafana_admin_password"
GRAFANA_FILE = "grafana-admin-password"  # under state_dir, when the config names no reference
PASSWORD_BYTES = 24  # 192 bits, 32 URL-safe characters


def grafana_password_ref(cfg: HomelabConfig) -> SecretRef:
    """Where Grafana's admin password lives: the config's reference, else the generated file in the state dir."""
    return cfg.monitoring.grafana_admin_password or SecretRef(
        file=str(resolve_in_project(cfg.state_dir) / GRAFANA_FILE)
    )


def grafana_deployed(cfg: HomelabConfig) -> bool:
    """Whether Grafana runs from its chart on this target: the sandbox installs no chart, so it has no Grafana.

    There the login would be sealed for nothing, into the sealed folder the real homelab shares
    with the sandbox (``secrets.sealed_dir``), by every sandbox a test or the README's main
    command starts.
    """
    return cfg.monitoring.enabled and cfg.target != "sandbox"


def generated_by_us(cfg: HomelabConfig) -> bool:
    """Whether the toolkit makes the password (no reference in the config), rather than the owner."""
    return grafana_deployed(cfg) and cfg.monitoring.grafana_admin_password is None


@dataclass(frozen=True)
class Generated:
    """A value made in this run: the secret, the config key it answers, and the write that keeps it."""

    key: str
    value: Secret
    write: WriteFile


def pending(cfg: HomelabConfig) -> list[Generated]:
    """The values to make now: Grafana's password when the toolkit makes it and its file does not exist yet.

    A second run finds the file and makes nothing: the password is reused, never rotated
    behind the owner's back. The value is registered with the redactor before anything
    could print it.
    """
    if not generated_by_us(cfg):
        return []
    path = Path(grafana_password_ref(cfg).file or "")
    if path.exists():
        return []
    value = secrets.token_urlsafe(PASSWORD_BYTES)
    REDACTOR.register(value)
    what = f"generated file {path}"
    write = WriteFile(
        str(path), Secret(value + "\n", what), 0o600, why="Grafana's admin password, generated once (never printed)"
    )
    return [Generated(GRAFANA_KEY, Secret(value, what), write)]


def grafana_login(cfg: HomelabConfig) -> list[str]:
    """Where the owner finds Grafana's login: address and audience, user, and where the password is (not it)."""
    from homelab.apps import exposure

    host = exposure.grafana_host(cfg)
    if host is None:
        return ["Grafana is off (monitoring.enabled: false)"]
    if not grafana_deployed(cfg):
        return [f"Grafana does not run on the {cfg.target} (no chart is installed there), so it has no login"]
    audience = "public, through the tunnel" if host in exposure.public_hostnames(cfg) else "LAN only"
    location = grafana_password_ref(cfg).location()
    if generated_by_us(cfg) and not location.exists():
        password = f"not made yet: the next inv up generates it into {location.describe()}"
    else:
        made = " (made by inv up; 0600, never printed)" if generated_by_us(cfg) else ""
        password = f"in {location.describe()}{made}"
    return [f"Grafana: https://{host} ({audience})", f"user: {GRAFANA_USER}", f"password: {password}"]
