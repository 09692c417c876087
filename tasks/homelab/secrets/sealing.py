"""Sealed Secrets: plaintext only in a git-ignored file or in references; Git gets sealed manifests.

Sealing uses the real ``kubeseal`` offline with the controller's public
certificate, pinned in the state directory, with strict scope (the secret
only decrypts under its own name and namespace).

Every change is a plan action: the pinned certificate, each SealedSecret file and
the plaintext file are ``WriteFile`` actions, so ``--dry-run`` prints them and
writes nothing. Offline sealing is a ``Run`` of kubeseal that only reads the
certificate and prints to stdout, so it runs as an observation while planning
(under ``--dry-run`` too, which shows the exact files and proves the certificate
seals). Its encryption is randomised: a second plan would never be empty, so the
re-check after acting is that every file now holds exactly what the plan wrote.
"""

from __future__ import annotations

import base64
import hashlib
import re
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from homelab.config.loader import parse_yaml
from homelab.core import reading
from homelab.core.converge import require_empty
from homelab.core.errors import HomelabError, SecretError, UsageError
from homelab.core.executor import Executor
from homelab.core.paths import resolve_in_project
from homelab.core.plan import LOCAL, Note, Plan, Run, WriteFile
from homelab.core.secret_refs import REDACTOR, Secret, SecretLocation
from homelab.core.tools import require
from homelab.secrets import generated
from homelab.secrets.generated import Generated

KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
CERT_BYTES = 64 * 1024  # a PEM certificate is about 2 KiB
PLAINTEXT_BYTES = 1024 * 1024  # as a config layer


@dataclass(frozen=True)
class PlainSecret:
    name: str
    namespace: str
    data: dict[str, str]


def cert_path(session: Any) -> Path:
    if session.cfg.secrets.cert_file:
        return resolve_in_project(session.cfg.secrets.cert_file)
    path: Path = session.state_dir / "sealed-secrets-cert.pem"
    return path


def fingerprint(pem: str) -> str:
    return hashlib.sha256(pem.encode()).hexdigest()[:16]


def cert_plan(session: Any, kube: Any) -> tuple[Plan, str]:
    """Pin the controller's newest public certificate: a write when the pinned file differs; (plan, fingerprint)."""
    ns = session.cfg.secrets.controller_namespace
    keys = kube.list_objects("v1", "Secret", ns, label_selector=KEY_LABEL)
    if not keys:
        raise HomelabError(f"no Sealed Secrets key in namespace {ns}; is the controller installed (inv up)?")
    newest = max(keys, key=lambda k: k["metadata"].get("creationTimestamp") or "")
    pem = base64.b64decode(newest["data"]["tls.crt"]).decode()
    path, printed = cert_path(session), fingerprint(pem)
    plan = Plan(f"secrets.fetch-cert: pin the controller certificate {printed}")
    if pinned_certificate(path) == pem:
        return plan.add(Note(f"{path} already holds certificate {printed}")), printed
    return plan.add(WriteFile(str(path), pem, 0o644, why=f"certificate of key {newest['metadata']['name']}")), printed


def pinned_certificate(path: Path) -> str | None:
    """The pinned controller certificate, or None when none is pinned yet; read through the checked path."""
    if not path.exists():
        return None
    try:
        return reading.read_text(path, "pinned sealing certificate", CERT_BYTES)
    except reading.ReadProblem as err:
        raise HomelabError(f"{err}; delete it and run inv secrets.fetch-cert") from None


def plaintext_path(session: Any) -> Path:
    return resolve_in_project(session.cfg.secrets.plaintext_file)


def read_plaintext(session: Any) -> list[PlainSecret]:
    """The git-ignored plaintext file: values may be literals or {file|env|keychain} references."""
    path = plaintext_path(session)
    if not path.exists():
        raise HomelabError(f"{path} does not exist; list the secrets to seal there (it is git-ignored)")
    try:  # written by the owner: a regular UTF-8 file within bounds, parsed by the config's bounded YAML loader
        text = reading.read_text(path, "plaintext secrets file", PLAINTEXT_BYTES)
    except reading.ReadProblem as err:
        raise SecretError(str(err)) from None
    doc = parse_yaml(text, str(path)) or {}
    if not isinstance(doc, dict):
        raise SecretError(f"{path}: the top level must be a mapping with a secrets: list")
    return parse_plaintext(path, doc)


def parse_plaintext(path: Path, doc: dict[str, Any]) -> list[PlainSecret]:
    """The secrets of a loaded plaintext document, every value resolved and registered with the redactor."""
    found = []
    for i, entry in enumerate(doc.get("secrets") or []):
        data = {}
        for key, value in (entry.get("data") or {}).items():
            if isinstance(value, dict):
                data[key] = SecretLocation(**value).resolve().reveal()
            else:
                data[key] = str(value)
                REDACTOR.register(data[key])
        if not entry.get("name") or not entry.get("namespace") or not data:
            raise HomelabError(f"{path}: secrets[{i}] needs name, namespace and data")
        found.append(PlainSecret(entry["name"], entry["namespace"], data))
    return found


def seal_argv(cert: Path) -> tuple[str, ...]:
    return (require("kubeseal"), "--cert", str(cert), "--scope", "strict", "--format", "yaml")


def seal(executor: Executor, secret: PlainSecret, cert: Path) -> str:
    """SealedSecret YAML from ``kubeseal`` (plaintext on stdin, never in argv); read-only, so an observation."""
    manifest = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": secret.name, "namespace": secret.namespace},
            "stringData": secret.data,
        }
    )
    stdin = Secret(manifest, f"Secret {secret.namespace}/{secret.name}")
    done = executor.observe(Run(seal_argv(cert), stdin=stdin, why="seal offline with the pinned certificate"), False)
    if done.exited != 0:
        raise SecretError(
            f"kubeseal could not seal {secret.namespace}/{secret.name}: {REDACTOR.redact(done.stderr.strip())}"
        )
    return str(done.stdout)


def require_cert(session: Any) -> Path:
    cert = cert_path(session)
    if not cert.is_file():
        raise SecretError(f"no pinned certificate at {cert}; run inv secrets.fetch-cert (or set secrets.cert_file)")
    return cert


def sealed_writes(session: Any, secrets: Iterable[PlainSecret]) -> list[WriteFile]:
    """One SealedSecret file per secret, sealed now (offline) with the pinned certificate."""
    cert = require_cert(session)
    return [
        WriteFile(
            str(sealed_file(session, secret)),
            seal(session.executor, secret, cert),
            0o644,
            why=f"SealedSecret {secret.namespace}/{secret.name} ({len(secret.data)} keys)",
        )
        for secret in secrets
    ]


def from_config(session: Any, made: Iterable[Generated] = ()) -> tuple[list[PlainSecret], list[str]]:
    """The Secrets the cluster needs (``needed``), resolved from their references; and one line per unresolved one.

    ``made``: values generated in this run (``generated.pending``), used for their keys
    instead of reading files the plan has not written yet.
    """
    from homelab.secrets.needed import needed

    fresh = {g.key: g.value for g in made}
    resolved, missing = [], []
    for want in needed(session.cfg):
        data, absent = dict(want.literals), []
        for key, (path, ref) in want.keys.items():
            try:
                data[key] = fresh[path].reveal() if path in fresh else ref.location().resolve().reveal()
            except HomelabError as err:
                absent.append(f"{path} ({err})")
        if absent:
            missing.append(f"{want.ref}: {'; '.join(absent)}")
        else:
            resolved.append(PlainSecret(want.name, want.namespace, data))
    return resolved, missing


def seal_plan(session: Any, names: list[str]) -> Plan:
    """Seal the Secrets the config's references name and those of the plaintext file (or only ``names``)."""
    made = generated.pending(session.cfg)
    configured, missing = from_config(session, made)
    listed = read_plaintext(session) if plaintext_path(session).is_file() or not configured else []
    secrets = [s for s in [*configured, *listed] if not names or s.name in names]
    unknown = sorted(set(names) - {s.name for s in secrets})
    if unknown:
        raise UsageError(
            f"no secret named {', '.join(unknown)} in the config's references or {plaintext_path(session)}"
        )
    plan = Plan(f"secrets.seal: seal {len(secrets)} secret{'' if len(secrets) == 1 else 's'} (strict scope)")
    plan.extend(Note(f"not sealed, its reference is not found: {line}") for line in missing if not names)
    plan.extend(g.write for g in made)
    return plan.extend(sealed_writes(session, secrets))


def unsealed(session: Any, made: Iterable[Generated] = ()) -> tuple[list[PlainSecret], list[str]]:
    """The Secrets the cluster needs that have no SealedSecret file yet; and one line per unresolved reference."""
    configured, unresolved = from_config(session, made)
    return [s for s in configured if not sealed_file(session, s).is_file()], unresolved


def missing_plan(session: Any) -> Plan:
    """For ``inv up``: seal each Secret the cluster needs that has no SealedSecret file yet; notes for the rest.

    First the values the toolkit makes itself (Grafana's password) are generated and
    written, whether or not the controller answers yet, so the run that seals later
    (``finish_sealing``) reads the same value back.
    """
    made = generated.pending(session.cfg)
    todo, unresolved = unsealed(session, made)
    plan = Plan(f"seal the Secrets the cluster needs ({len(todo)} without a SealedSecret yet)")
    plan.extend(Note(f"not sealed, its reference is not found: {line}") for line in unresolved)
    plan.extend(g.write for g in made)
    if not todo:
        return plan
    if not cert_path(session).is_file():
        names = ", ".join(f"{s.namespace}/{s.name}" for s in todo)
        return plan.add(Note(f"{names} sealed once the Sealed Secrets controller runs: inv up again after it"))
    return plan.extend(sealed_writes(session, todo))


def rotate_plan(session: Any, name: str, key: str, value: str) -> Plan:
    """Put ``value`` under ``key`` of secret ``name`` in the plaintext file (0600) and re-seal that secret."""
    REDACTOR.register(value)
    path = plaintext_path(session)
    doc = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    entry = next((e for e in doc.get("secrets") or [] if e.get("name") == name), None)
    if entry is None:
        raise UsageError(f"no secret named {name!r} in {path}")
    entry.setdefault("data", {})[key] = value
    text = yaml.safe_dump(doc, sort_keys=False)
    [secret] = parse_plaintext(path, {"secrets": [entry]})
    plan = Plan(f"secrets.rotate: replace {secret.namespace}/{name}.{key} and re-seal it")
    if not holds(WriteFile(str(path), text, 0o600)):
        plan.add(WriteFile(str(path), Secret(text, f"{path} (plaintext)"), 0o600, why="the rotated value"))
    sealed = sealed_writes(session, [secret])
    return plan.extend([*sealed, *rolls(session, sealed)])


def rolls(session: Any, sealed: list[WriteFile]) -> list[WriteFile]:
    """The rendered files whose pod templates carry the resealed secrets' checksum, written anew.

    Pods read a Secret through ``envFrom`` only when they start; the new checksum in
    their template is what makes Argo CD's sync roll them (``gitops.checksums``).
    Nothing in the cluster changes here: the commit carries both, so Argo CD has
    nothing to be held back from.
    """
    from homelab.core.paths import project_root
    from homelab.gitops import tree

    directory = resolve_in_project(session.cfg.secrets.sealed_dir)
    written = {Path(w.path).name: w.data().decode() for w in sealed if Path(w.path).parent == directory}
    root = project_root() / "k8s"
    return [
        WriteFile(str(root / path), text, 0o644, why="its pods roll: the checksum of a resealed secret")
        for path, text in sorted(tree.changed_by_sealing(session.cfg, written).items())
    ]


def holds(action: WriteFile) -> bool:
    """Whether the local file already has exactly this content and mode."""
    path = Path(action.path)
    try:
        return stat.S_IMODE(path.stat().st_mode) == action.mode and path.read_bytes() == action.data()
    except FileNotFoundError:
        return False


def require_written(plan: Plan) -> None:
    """The re-check after acting: every file the plan wrote holds exactly its content and mode."""
    missed = [a for a in plan.actions if isinstance(a, WriteFile) and a.host == LOCAL and not holds(a)]
    require_empty(Plan(plan.title, list(missed)))


def sealed_file(session: Any, secret: PlainSecret) -> Path:
    return resolve_in_project(session.cfg.secrets.sealed_dir) / f"{secret.namespace}-{secret.name}.yaml"


PATTERNS = {
    "PEM private key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "age secret key": re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
    "K3S token": re.compile(r"K10[0-9a-f]{64}::[a-z]+:[0-9a-f]+"),
    "Telegram bot token": re.compile(r"\b[0-9]{8,10}:[A-Za-z0-9_-]{35}\b"),
}


def plaintext_secret_docs(text: str) -> bool:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return False
    return any(
        isinstance(d, dict) and d.get("kind") == "Secret" and (d.get("data") or d.get("stringData")) for d in docs
    )


def scan(repo: Path, known_values: list[str]) -> list[str]:
    """Files tracked by Git that hold key material or plaintext Secrets; one line each."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, text=True)
    if listed.returncode != 0:
        raise HomelabError(f"{repo} is not a Git repository: {listed.stderr.strip()}")
    findings = []
    for rel in filter(None, listed.stdout.split("\0")):
        path = repo / rel
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for what, pattern in PATTERNS.items():
            if pattern.search(text):
                findings.append(f"{rel}: {what}")
        if path.suffix in (".yaml", ".yml") and plaintext_secret_docs(text):
            findings.append(f"{rel}: plaintext Kubernetes Secret (seal it with inv secrets.seal)")
        for value in known_values:
            if len(value) >= 8 and value in text:
                findings.append(f"{rel}: contains the value of a configured secret")
                break
    return findings
