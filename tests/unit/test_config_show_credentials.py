"""config.show prints values that are credentials themselves only as their host.

A dead-man's-switch URL lets anyone who holds it report for the job; the run's
logs mask it, and so must the config view an owner pastes into an issue.
"""

from __future__ import annotations

import pytest

from helpers import LOOPBACK_CONFIG, run_cli

PING = "https://hc-ping.com/0f5e7d5c-1234-4bcd-9abc-1234567890ab"


@pytest.mark.parametrize("args", [[], ["--origins"]], ids=["yaml", "origins"])
def test_the_ping_urls_path_never_appears_in_config_show(args: list[str]) -> None:
    env = {"HOMELAB_CONFIG": str(LOOPBACK_CONFIG), "HOMELAB__BACKUP__DEADMAN_URL": PING}
    shown = run_cli(["config.show", *args], env)
    assert shown.code == 0, shown.output
    assert "0f5e7d5c" not in shown.output
    assert "https://hc-ping.com/<redacted>" in shown.stdout
    assert "https://api.telegram.org" in shown.stdout, "URLs that hold no credential are shown whole"
