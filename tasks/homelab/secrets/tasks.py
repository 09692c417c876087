"""Sealed Secrets: seal plaintext into k8s/, pin the controller certificate, back up its keys, keep Git clean."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task


@task(
    name="fetch-cert",
    help={
        "target": "Cluster target (default from config).",
        "dry_run": "Print the certificate file that would be written (the cluster is only read); write nothing.",
    },
)
def fetch_cert(c: Any, target: str | None = None, dry_run: bool = False) -> None:
    """Fetch the controller's public certificate and pin it in the state directory."""
    from homelab.core.converge import require_empty
    from homelab.secrets import sealing

    s = session(c, dry_run, target=target)
    plan, fingerprint = sealing.cert_plan(s, s.executor.kube())
    s.executor.execute(plan)
    if dry_run:
        return
    if not plan.empty:
        require_empty(sealing.cert_plan(s, s.executor.kube())[0])
    state = "unchanged; nothing to do" if plan.empty else "pinned; converged"
    print(f"certificate {fingerprint} {state} at {sealing.cert_path(s)}")


@task(
    iterable=["name"],
    help={
        "name": "Only this secret (repeatable); default: every one the config's references and the plaintext "
        "file name.",
        "dry_run": "Print the SealedSecret files that would be written (sealed offline to count them); write nothing.",
    },
)
def seal(c: Any, name: list[str], dry_run: bool = False) -> None:
    """Seal the Secrets the cluster needs, from the config's file:/env:/keychain: references, into SealedSecrets.

    Also the git-ignored plaintext file's secrets, when it exists. Strict scope: each
    decrypts only under its own name and namespace. A reference that is not found is
    named and its Secret left unsealed.
    """
    from homelab.secrets import sealing

    s = session(c, dry_run)
    plan = sealing.seal_plan(s, name)
    s.executor.execute(plan)
    if not dry_run:
        sealing.require_written(plan)
        print(f"sealed {len(plan.changes())} secret(s); commit them and Argo CD applies them")


@task(
    help={
        "name": "Secret name in the plaintext file.",
        "key": "Key to replace.",
        "value_env": "Environment variable holding the new value (never pass values as arguments).",
        "dry_run": "Print the plaintext and SealedSecret files that would be written; write nothing.",
    }
)
def rotate(c: Any, name: str, key: str, value_env: str, dry_run: bool = False) -> None:
    """Replace one key of a secret from an environment variable, re-seal it, re-render the pods that read it.

    The pods of an app read its Secret only when they start (``envFrom``): the rendered
    Deployment carries the SealedSecret's checksum, so the commit that brings the new
    SealedSecret also changes the pod template, and Argo CD's sync rolls the pods.
    """
    import os

    from homelab.core.errors import UsageError
    from homelab.secrets import sealing

    value = os.environ.get(value_env)
    if not value:
        raise UsageError(f"environment variable {value_env} is empty or unset")
    s = session(c, dry_run)
    plan = sealing.rotate_plan(s, name, key, value)
    s.executor.execute(plan)
    if not dry_run:
        sealing.require_written(plan)
        print(
            f"rotated {name}.{key}; commit the SealedSecret and the re-rendered k8s/ files: Argo CD applies them "
            "and the pods that read it roll"
        )


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


@task(
    name="backup-key",
    help={"dry_run": "Print the backup run's plan (what it would collect, the restic call); store nothing."},
)
def backup_key(c: Any, dry_run: bool = False) -> None:
    """Back up the controller keys now (a backup run; do it after every key renewal)."""
    from invoke.exceptions import Exit

    from homelab.backup import run as backup_run

    with session(c, dry_run) as s:
        if dry_run:
            s.executor.execute(backup_run.dry_run_plan(s))
            return
        report = backup_run.run(s)
    print(report.summary())
    if report.exit_code or "sealed-keys" not in report.ok:
        raise Exit("the Sealed Secrets keys were not backed up", code=report.exit_code or 1)


@task
def grafana(c: Any) -> None:
    """Where Grafana's admin login is: its address, the user, and the file holding its password (never printed)."""
    from homelab.secrets import generated

    s = session(c)
    for line in generated.grafana_login(s.cfg):
        print(line)


ns = Collection("secrets", fetch_cert, seal, rotate, check, backup_key, grafana)
