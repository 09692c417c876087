"""The redactor masks credential shapes it was never told about, and leaves ordinary text alone."""

from __future__ import annotations

import pytest

from homelab.core.secret_refs import Redactor

TOKEN = "123456789" + ":" + "Xy" * 17 + "z"  # built here so no token-shaped literal is tracked by Git


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"https://api.telegram.org/bot{TOKEN}/sendMessage", "https://api.telegram.org/bot<redacted>/sendMessage"),
        ("https://api.telegram.org/bot42:short/getMe", "https://api.telegram.org/bot<redacted>/getMe"),
        (f"token {TOKEN} here", "token <redacted> here"),
        ("rest:https://backup:s3cret@nas.lan/repo", "rest:https://<redacted>@nas.lan/repo"),
        ("https://ghp_abcdef@github.com/me/lab.git", "https://<redacted>@github.com/me/lab.git"),
        (
            "https://x.test/hook?chat=1&access_token=abc123&b=2",
            "https://x.test/hook?chat=1&access_token=<redacted>&b=2",
        ),
        ("https://x.test/?apiKey=k1#top", "https://x.test/?apiKey=<redacted>#top"),
        ("https://x.test/?X-Amz-Signature=f00d", "https://x.test/?X-Amz-Signature=<redacted>"),
    ],
)
def test_credential_shapes_are_masked(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "started 2026-01-02 10:30:00, took 12:04",
        "git@github.com:me/lab.git",
        "traefik/whoami:v1.11 sha256:0123abcd",
        "/home/me/bottles/bot.py",
        "https://example.org/search?q=sealed+secrets&page=2",
        "mailto:ops@example.org and https://example.org/?next=/a@b",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().redact(text) == text


def test_registered_values_are_masked_before_the_shapes() -> None:
    redactor = Redactor()
    redactor.register("correct horse battery staple")
    assert redactor.redact("pw 'correct horse battery staple'") == "pw '<redacted>'"
