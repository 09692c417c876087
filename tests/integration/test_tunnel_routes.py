"""``net.tunnel-routes``: one DNS route per public hostname, through cloudflared's documented command.

Cloudflare cannot be reached from here, so ``cloudflared`` is a recording stand-in
(``tests/fakes/cloudflared``) that keeps the zone's records and answers as the real
command is documented to; what is checked is the contract: which hostnames, which
argv, idempotence, and a record pointing elsewhere named, never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import FAKES, CliResult, loopback_data, run_cli

pytestmark = pytest.mark.integration


def setup(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(FAKES / "cloudflared", bin_dir / "cloudflared")
    data = loopback_data()
    data["state_dir"] = str(tmp_path / "state")
    config = tmp_path / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    record, dns = tmp_path / "record.jsonl", tmp_path / "dns.json"
    env = {
        "HOMELAB_CONFIG": str(config),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_RECORD": str(record),
        "FAKE_CLOUDFLARE_DNS": str(dns),
    }
    return env, record, dns


def calls(record: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in record.read_text().splitlines()] if record.exists() else []


def test_every_public_hostname_gets_one_route_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    env, record, dns = setup(tmp_path)
    shown: CliResult = run_cli(["net.tunnel-routes", "--dry-run"], env)
    assert shown.code == 0, shown.output
    assert "tunnel route dns homelab vault.home.test" in shown.stdout
    assert "grafana.home.test" not in shown.stdout  # private by default: only what is marked public is routed
    assert calls(record) == []  # a dry run runs nothing
    done = run_cli(["net.tunnel-routes"], env)
    assert done.code == 0, done.output
    hosts = {argv[4] for argv in calls(record)}
    assert hosts == {"vault.home.test"}  # the reference config publishes Vaultwarden alone
    assert all(argv[:4] == ["tunnel", "route", "dns", "homelab"] for argv in calls(record))
    before = dns.read_text()
    again = run_cli(["net.tunnel-routes"], env)
    assert again.code == 0, again.output
    assert dns.read_text() == before


def test_a_record_that_points_elsewhere_is_named_not_overwritten(tmp_path: Path) -> None:
    env, _, dns = setup(tmp_path)
    dns.write_text(json.dumps({"vault.home.test": "somewhere-else.example.net"}))
    failed = run_cli(["net.tunnel-routes"], env)
    assert failed.code != 0
    assert "vault.home.test" in failed.output and "already exists" in failed.output
    assert json.loads(dns.read_text())["vault.home.test"] == "somewhere-else.example.net"


def test_without_cloudflared_the_fix_is_named(tmp_path: Path) -> None:
    env, _, _ = setup(tmp_path)
    env["PATH"] = "/usr/bin:/bin"
    missing = run_cli(["net.tunnel-routes"], env)
    assert missing.code != 0 and "brew install cloudflared" in missing.output
