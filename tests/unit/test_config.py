"""Config: the reference file, the bad-config corpus, layer precedence, redaction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from helpers import FAKES, LOOPBACK_CONFIG, REPO, run_cli
from homelab.config import loader
from homelab.core.errors import ConfigError

BAD = sorted((REPO / "tests" / "configs" / "bad").glob("*.yaml"))


def expected_of(path: Path) -> str:
    return path.read_text().splitlines()[0].removeprefix("# expect:").strip()


def materialise(source: Path, tmp_path: Path) -> Path:
    """Copy a corpus file, filling in a world-writable directory where asked."""
    writable = tmp_path / "shared"
    writable.mkdir(exist_ok=True)
    os.chmod(writable, 0o777)
    target = tmp_path / source.name
    target.write_text(source.read_text().replace("{world_writable}", str(writable)))
    return target


def test_reference_config_is_valid() -> None:
    loaded = loader.load(REPO / "config" / "homelab.yaml", environ={})
    cfg = loaded.config
    assert [n.role for n in cfg.nodes] == ["server", "agent", "agent"]
    assert cfg.lima.vm_type == "vz"
    assert (cfg.metallb.pool.start, cfg.metallb.pool.end) == ("192.168.105.50", "192.168.105.99")
    assert len(cfg.apps) == 8


def test_corpus_has_at_least_fifteen_distinct_bad_configs() -> None:
    assert len(BAD) >= 15
    assert len({p.read_text() for p in BAD}) == len(BAD)


@pytest.mark.parametrize("bad", BAD, ids=[p.stem for p in BAD])
def test_bad_config_is_rejected_naming_the_key(bad: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        loader.load(materialise(bad, tmp_path), environ={})
    assert expected_of(bad) in str(caught.value)
    for line in str(caught.value).splitlines():
        assert line.startswith("config error: ")


def test_bad_configs_exit_2_and_execute_nothing(tmp_path: Path) -> None:
    """Every corpus file through the real CLI: exit 2, no tool called, no state written."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("limactl", "terraform", "tofu", "kwokctl", "kubectl", "ssh", "restic", "kubeseal"):
        (bin_dir / tool).symlink_to(FAKES / "recorder")
    record = tmp_path / "record.jsonl"
    for bad in BAD:
        state = tmp_path / "state"
        env = {
            "HOMELAB_CONFIG": str(materialise(bad, tmp_path)),
            "HOMELAB__STATE_DIR": str(state),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOMELAB_CACHE_DIR": str(tmp_path / "no-cache"),
            "FAKE_RECORD": str(record),
        }
        for command in (["up"], ["vm.apply"], ["sandbox.up"]):
            result = run_cli(command, env)
            assert result.code == 2, (bad.name, command, result.output)
            assert expected_of(bad) in result.stderr, (bad.name, result.stderr)
        assert not state.exists(), bad.name
    assert not record.exists(), record.read_text()


def test_secret_pasted_as_value_is_never_echoed(tmp_path: Path) -> None:
    bad = REPO / "tests" / "configs" / "bad" / "secret_value_instead_of_reference.yaml"
    result = run_cli(["config.validate"], {"HOMELAB_CONFIG": str(bad)})
    assert result.code == 2
    assert "TOPSECRET" not in result.output


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_layers_apply_in_precedence_order(tmp_path: Path) -> None:
    main = write(
        tmp_path / "homelab.yaml",
        {
            "nodes": [{"name": "s", "role": "server", "ip": "192.168.105.10"}],
            "k3s": {"version": "v1.30.0+k3s1", "datastore": "etcd"},
            "domain": "file.example",
            "name": "fromfile",
        },
    )
    write(tmp_path / "homelab.local.yaml", {"k3s": {"version": "v1.31.0+k3s1"}, "domain": "local.example"})
    env = {"HOMELAB__K3S__VERSION": "v1.32.0+k3s1", "HOMELAB__DOMAIN": "env.example"}
    loaded = loader.load(main, overrides={"domain": "cli.example"}, environ=env)
    cfg = loaded.config
    assert cfg.name == "fromfile"  # file beats default
    assert cfg.k3s.datastore == "etcd"  # file value kept where nothing overrides it
    assert cfg.k3s.version == "v1.32.0+k3s1"  # env beats local beats file
    assert cfg.domain == "cli.example"  # cli beats env
    assert cfg.k3s.flannel_backend == "vxlan"  # default where nothing sets it
    assert loaded.origin("name") == "file homelab.yaml"
    assert loaded.origin("k3s.version") == "env"
    assert loaded.origin("domain") == "cli"
    assert loaded.origin("k3s.flannel_backend") == "default"


def test_local_override_beats_file(tmp_path: Path) -> None:
    main = write(
        tmp_path / "homelab.yaml",
        {"nodes": [{"name": "s", "role": "server", "ip": "192.168.105.10"}], "domain": "file.example"},
    )
    write(tmp_path / "homelab.local.yaml", {"domain": "local.example"})
    loaded = loader.load(main, environ={})
    assert loaded.config.domain == "local.example"
    assert loaded.origin("domain") == "local homelab.local.yaml"


def test_cli_flag_beats_env_for_target(loopback_env: dict[str, str]) -> None:
    env = {**loopback_env, "HOMELAB__TARGET": "existing"}
    shown = run_cli(["config.show", "--origins", "--target", "lima"], env)
    assert shown.code == 0, shown.output
    line = next(row for row in shown.stdout.splitlines() if row.startswith("target "))
    assert "'lima'" in line and "[cli]" in line
    shown = run_cli(["config.show", "--origins"], env)
    line = next(row for row in shown.stdout.splitlines() if row.startswith("target "))
    assert "'existing'" in line and "[env]" in line


def test_show_lists_secret_references_not_values(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("super-secret-token-value\n")
    secret_file.chmod(0o600)
    env = {"HOMELAB_CONFIG": str(LOOPBACK_CONFIG), "HOMELAB__K3S__TOKEN__FILE": str(secret_file)}
    shown = run_cli(["config.show"], env)
    assert shown.code == 0, shown.output
    assert str(secret_file) in shown.stdout
    assert "super-secret-token-value" not in shown.stdout


def test_validate_secrets_names_the_missing_reference(tmp_path: Path) -> None:
    env = {"HOMELAB_CONFIG": str(LOOPBACK_CONFIG), "HOMELAB__K3S__TOKEN__FILE": str(tmp_path / "absent")}
    result = run_cli(["config.validate", "--secrets"], env)
    assert result.code == 2
    assert "k3s.token: secret reference not found" in result.stderr


def test_env_values_are_typed_yaml() -> None:
    layer = loader.env_layer(
        {"HOMELAB__TERRAFORM__PARALLELISM": "5", "HOMELAB__OPTIONS__VELERO": "true", "UNRELATED": "x"}
    )
    assert layer == {"terraform": {"parallelism": 5}, "options": {"velero": True}}


def test_config_show_json_roundtrip_keeps_every_section(loopback_env: dict[str, str]) -> None:
    shown = run_cli(["config.show"], loopback_env)
    data = yaml.safe_load(shown.stdout)
    assert set(data) >= {"nodes", "k3s", "metallb", "apps", "backup", "secrets"}
    assert json.dumps(data)
