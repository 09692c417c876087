"""Sealed Secrets: seal plaintext into k8s/, pin the controller certificate, back up its keys, keep Git clean."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task


@task(name="fetch-cert", help={"target": "Cluster target (default from config)."})
def fetch_cert(c: Any, target: str | None = None) -> None:
    """Fetch the controller's public certificate and pin it in the state directory."""
    from homelab.core import cluster
    from homelab.secrets import sealing

    s = session(c, target=target)
    path, fingerprint, changed = sealing.fetch_cert(s, cluster.connect(s))
    print(f"certificate {fingerprint} {'pinned' if changed else 'unchanged; nothing to do'} at {path}")


@task(
    iterable=["name"],
    help={
        "name": "Only this secret (repeatable); default: every secret in the plaintext file.",
        "dry_run": "Show which files would be written; seal nothing.",
    },
)
def seal(c: Any, name: list[str], dry_run: bool = False) -> None:
    """Seal secrets from the git-ignored plaintext file into SealedSecret manifests (strict scope)."""
    from homelab.core.errors import SecretError
    from homelab.secrets import sealing

    s = session(c, dry_run)
    cert = sealing.cert_path(s)
    if not cert.is_file():
        raise SecretError(f"no pinned certificate at {cert}; run inv secrets.fetch-cert (or set secrets.cert_file)")
    for secret in sealing.read_plaintext(s):
        if name and secret.name not in name:
            continue
        target = sealing.sealed_file(s, secret)
        if dry_run:
            print(f"would seal {secret.namespace}/{secret.name} ({len(secret.data)} keys) into {target}")
            continue
        text = sealing.seal(secret, cert)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"sealed {secret.namespace}/{secret.name} into {target}")


@task(
    help={
        "name": "Secret name in the plaintext file.",
        "key": "Key to replace.",
        "value_env": "Environment variable holding the new value (never pass values as arguments).",
    }
)
def rotate(c: Any, name: str, key: str, value_env: str) -> None:
    """Replace one key of a secret from an environment variable, then re-seal it."""
    import os

    import yaml

    from homelab.core.errors import UsageError
    from homelab.core.paths import resolve_in_project
    from homelab.secrets import sealing

    s = session(c)
    value = os.environ.get(value_env)
    if not value:
        raise UsageError(f"environment variable {value_env} is empty or unset")
    path = resolve_in_project(s.cfg.secrets.plaintext_file)
    doc = yaml.safe_load(path.read_text()) if path.is_file() else {}
    entry = next((e for e in doc.get("secrets") or [] if e.get("name") == name), None)
    if entry is None:
        raise UsageError(f"no secret named {name!r} in {path}")
    entry.setdefault("data", {})[key] = value
    from homelab.core.executor import write_local

    write_local(path, yaml.safe_dump(doc, sort_keys=False).encode(), 0o600)
    secret = next(x for x in sealing.read_plaintext(s) if x.name == name)
    target = sealing.sealed_file(s, secret)
    target.write_text(sealing.seal(secret, sealing.cert_path(s)))
    print(f"rotated {secret.namespace}/{name}.{key}; commit {target} and ArgoCD rolls it out")


@task(help={"repo": "Git repository to scan (default: this project)."})
def check(c: Any, repo: str | None = None) -> None:
    """Fail if Git tracks plaintext Secrets or key material (PEM, age, K3S token, bot tokens, secret values)."""
    from pathlib import Path

    from invoke.exceptions import Exit

    from homelab.config.checks import secret_refs
    from homelab.core.errors import HomelabError
    from homelab.core.paths import project_root
    from homelab.secrets import sealing

    s = session(c)
    values = []
    for _, ref in secret_refs(s.cfg):
        try:
            values.append(ref.location().resolve().reveal())
        except HomelabError:
            continue
    findings = sealing.scan(Path(repo) if repo else project_root(), values)
    if findings:
        raise Exit("secrets.check FAILED:\n  " + "\n  ".join(findings), code=1)
    print("secrets.check: no plaintext secrets or key material tracked by Git")


@task(name="backup-key")
def backup_key(c: Any) -> None:
    """Back up the controller keys now (a backup run; do it after every key renewal)."""
    from invoke.exceptions import Exit

    from homelab.backup import run as backup_run

    with session(c) as s:
        report = backup_run.run(s)
    print(report.summary())
    if report.exit_code or "sealed-keys" not in report.ok:
        raise Exit("the Sealed Secrets keys were not backed up", code=report.exit_code or 1)


ns = Collection("secrets", fetch_cert, seal, rotate, check, backup_key)
