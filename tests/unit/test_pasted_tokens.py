"""Tokens pasted into plain config values are refused by key, and never echoed."""

from __future__ import annotations

import pytest

from helpers import LOOPBACK_CONFIG, run_cli
from homelab.config.token_shapes import shape_of
from homelab.core.errors import EXIT_USAGE

# Made-up values in each issuer's documented shape.
K3S = "K10" + "a1" * 32 + "::server:" + "f0" * 16
TELEGRAM = "123456789:AAH" + "x" * 32
GITHUB = "ghp_" + "A1b2" * 9
AWS = "AKIA" + "ABCDEFGHIJ234567"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQ"
TUNNEL = "eyJhIjoiMDEyMzQ1Njc4OWFiY2RlZiIsInQiOiIxMjM0In0"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HOMELAB__K3S__EXTRA_SERVER_CONFIG", f"{{token: '{K3S}'}}"),
        ("HOMELAB__K3S__EXTRA_SERVER_CONFIG", f"{{agent-token: '{TELEGRAM}'}}"),
        ("HOMELAB__GITOPS__REPO_USERNAME", GITHUB),
        ("HOMELAB__K3S__EXTRA_SERVER_CONFIG", f"{{etcd-s3-access-key: {AWS}}}"),
        ("HOMELAB__K3S__EXTRA_SERVER_CONFIG", f"{{kube-apiserver-arg: 'token={JWT}'}}"),
        ("HOMELAB__GITOPS__REPO_USERNAME", TUNNEL),
    ],
    ids=["k3s", "telegram", "github", "aws", "jwt", "tunnel"],
)
def test_a_token_in_a_free_form_field_is_refused_by_key_without_echoing_it(variable: str, value: str) -> None:
    result = run_cli(["config.validate"], {"HOMELAB_CONFIG": str(LOOPBACK_CONFIG), variable: value})
    assert result.code == EXIT_USAGE, result.output
    key = variable.removeprefix("HOMELAB__").lower().replace("__", ".")
    assert f"{key}" in result.stderr and "looks like" in result.stderr and "reference" in result.stderr
    secret_part = value.strip("{}'").split(": ")[-1].strip("'").split("=")[-1]
    assert secret_part not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "ordinary",
    [
        "ghcr.io/home-assistant/home-assistant:2026.11.3",
        "lscr.io/linuxserver/plex@sha256:" + "ab" * 32,
        "10.42.0.0/16,fd00:42::/56",
        "https://hc-ping.com/0f5e7d5c-1234-4bcd-9abc-1234567890ab",
        "--kube-apiserver-arg=audit-log-maxage=30",
        "Europe/Amsterdam",
        "eyJ",
    ],
)
def test_ordinary_values_do_not_look_like_tokens(ordinary: str) -> None:
    assert shape_of(ordinary) is None
