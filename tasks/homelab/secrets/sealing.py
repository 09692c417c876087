"""Sealed Secrets: plaintext only in a git-ignored file or in references; Git gets sealed manifests.

Sealing uses the real ``kubeseal`` offline with the controller's public
certificate, pinned in the state directory, with strict scope (the secret
only decrypts under its own name and namespace).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from homelab.core.errors import HomelabError, SecretError
from homelab.core.executor import write_local
from homelab.core.paths import resolve_in_project
from homelab.core.secret_refs import REDACTOR, SecretLocation
from homelab.core.tools import require

KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"


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


def fetch_cert(session: Any, kube: Any) -> tuple[Path, str, bool]:
    """Pin the controller's newest public certificate; returns (path, fingerprint, changed)."""
    ns = session.cfg.secrets.controller_namespace
    keys = kube.list_objects("v1", "Secret", ns, label_selector=KEY_LABEL)
    if not keys:
        raise HomelabError(f"no Sealed Secrets key in namespace {ns}; is the controller installed (inv up)?")
    newest = max(keys, key=lambda k: k["metadata"].get("creationTimestamp") or "")
    import base64

    pem = base64.b64decode(newest["data"]["tls.crt"]).decode()
    path = cert_path(session)
    changed = not path.is_file() or path.read_text() != pem
    if changed:
        write_local(path, pem.encode(), 0o644)
    return path, hashlib.sha256(pem.encode()).hexdigest()[:16], changed


def read_plaintext(session: Any) -> list[PlainSecret]:
    """The git-ignored plaintext file: values may be literals or {file|env|keychain} references."""
    path = resolve_in_project(session.cfg.secrets.plaintext_file)
    if not path.is_file():
        raise HomelabError(f"{path} does not exist; list the secrets to seal there (it is git-ignored)")
    doc = yaml.safe_load(path.read_text()) or {}
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


def seal(secret: PlainSecret, cert: Path) -> str:
    """SealedSecret YAML from ``kubeseal`` (plaintext on stdin, never in argv)."""
    kubeseal = require("kubeseal")
    manifest = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": secret.name, "namespace": secret.namespace},
            "stringData": secret.data,
        }
    )
    done = subprocess.run(
        [kubeseal, "--cert", str(cert), "--scope", "strict", "--format", "yaml"],
        input=manifest,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SecretError(
            f"kubeseal could not seal {secret.namespace}/{secret.name}: {REDACTOR.redact(done.stderr.strip())}"
        )
    return done.stdout


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
