"""Credentials pasted into plain config values, recognised by their published shapes.

The config is committed and shown (``config.show``, plans, issues), so a secret
belongs in a reference (``file:``, ``env:``, ``keychain:``), never in a value. A
free-form field (a K3S option, an app's environment) is where a token lands when
an owner copies a setup guide; those shapes are refused with the key, never
echoed. Each pattern is the issuer's documented format, anchored on its prefix so
ordinary values (image tags, hostnames, digests) cannot match.
"""

from __future__ import annotations

import re
from typing import Any

from homelab.config.schema import HomelabConfig
from homelab.core.errors import Problem

SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # K3S secure token: K10<CA hash>::<user>:<password> (docs.k3s.io/cli/token#secure)
    ("a K3S join token", re.compile(r"\bK10[0-9a-f]{32,}::[^:\s]+:\S+")),
    # Telegram Bot API token: <bot id>:<35-character key> (core.telegram.org/bots/api#authorizing-your-bot)
    ("a Telegram bot token", re.compile(r"(?<![\w-])\d{6,12}:[A-Za-z0-9_-]{30,}")),
    # GitHub tokens carry a type prefix (github.blog 2021-04-05, "Behind GitHub's new authentication token formats")
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})")),
    ("an AWS access key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    # JSON Web Tokens and Cloudflare tunnel tokens are base64 of a JSON object: they start "eyJ" ('{"').
    ("a JSON web or tunnel token", re.compile(r"\beyJ[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]+){0,2}")),
)


def shape_of(text: str) -> str | None:
    """What credential ``text`` holds, by shape, or None."""
    return next((what for what, pattern in SHAPES if pattern.search(text)), None)


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        if set(value) <= {"file", "env", "keychain"} and value:
            return []  # a secret reference: where the secret is, not the secret
        return [pair for key, item in value.items() for pair in _strings(item, f"{path}.{key}" if path else key)]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _strings(item, f"{path}[{i}]")]
    return [(path, value)] if isinstance(value, str) else []


def pasted_token_problems(cfg: HomelabConfig) -> list[Problem]:
    """Every plain config value shaped like a credential, named by key; the value is never quoted."""
    problems = []
    for path, text in _strings(cfg.model_dump(mode="json"), ""):
        if what := shape_of(text):
            problems.append(
                Problem(
                    path,
                    f"holds what looks like {what}: secrets go in a reference ({{file: ...}}, {{env: ...}} or "
                    "{keychain: ...}; for an app, under its secrets:), never in a plain value",
                )
            )
    return problems
