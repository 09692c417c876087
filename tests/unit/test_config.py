"""Config: the reference file, the bad-config corpus, layer precedence, redaction."""

from __future__ import annotations

import concurrent.futures
import json
import os
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from helpers import FAKES, LOOPBACK_CONFIG, REPO, loopback_data, run_cli
from homelab.config import loader
from homelab.config.schema import HomelabConfig
from homelab.core.errors import ConfigError

BAD = sorted((REPO / "tests" / "configs" / "bad").glob("*.yaml"))


def headers(path: Path) -> dict[str, list[str]]:
    """The ``# key: value`` lines a corpus file starts with: expect (the key path), shows, hides."""
    found: dict[str, list[str]] = {"expect": [], "shows": [], "hides": []}
    for line in path.read_text().splitlines():
        key, _, value = line.removeprefix("# ").partition(": ")
        if not line.startswith("# ") or key not in found:
            break
        found[key].append(value.strip())
    return found


def expected_of(path: Path) -> str:
    return headers(path)["expect"][0]


def materialise(source: Path, tmp_path: Path) -> Path:
    """Copy a corpus file, filling in the unsafe paths it names.

    {world_writable}: a 0777 directory holding a private (0700) one; {sticky}: a
    1777 directory like /tmp; {readable_file}: a file others can read.
    """
    writable = tmp_path / "shared"
    (writable / "private").mkdir(parents=True, exist_ok=True)
    os.chmod(writable, 0o777)
    os.chmod(writable / "private", 0o700)
    sticky = tmp_path / "sticky"
    sticky.mkdir(exist_ok=True)
    os.chmod(sticky, 0o1777)
    readable = tmp_path / "readable"
    readable.write_text("not a secret, but readable by anyone\n")
    os.chmod(readable, 0o644)
    text = source.read_text()
    for name, value in (("world_writable", writable), ("sticky", sticky), ("readable_file", readable)):
        text = text.replace("{" + name + "}", str(value))
    target = tmp_path / source.name
    target.write_text(text)
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
    """The message names the key path and shows the bad value, unless it may be a secret."""
    with pytest.raises(ConfigError) as caught:
        loader.load(materialise(bad, tmp_path), environ={})
    message = str(caught.value)
    wanted = headers(bad)
    assert wanted["expect"][0] in message
    for text in wanted["shows"]:
        assert text in message, (text, message)
    for text in wanted["hides"]:
        assert text not in message, (text, message)
        assert text not in repr(caught.value.problems)
    for line in message.splitlines():
        assert line.startswith("config error: ")


def test_bad_configs_exit_2_and_execute_nothing(tmp_path: Path) -> None:
    """Every corpus file through the real CLI: exit 2, no tool called, no state written, no secret shown.

    Each file goes through ``up``; a few go through every entry point too, since
    validation is shared and what differs per command is only whether it validates first.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("limactl", "terraform", "tofu", "kwokctl", "kubectl", "ssh", "restic", "kubeseal", "crontab"):
        (bin_dir / tool).symlink_to(FAKES / "recorder")
    record = tmp_path / "record.jsonl"
    every_entry_point = {"unknown_target.yaml", "cron_never_fires.yaml", "notify_api_malformed_with_token.yaml"}

    def run(bad: Path) -> list[str]:
        work = tmp_path / bad.stem
        work.mkdir()
        config = materialise(bad, work)
        try:
            own_state = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError:
            own_state = {}
        state = Path(own_state.get("state_dir") or work / "state")
        env = {
            "HOMELAB_CONFIG": str(config),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOMELAB_CACHE_DIR": str(work / "no-cache"),
            "FAKE_RECORD": str(record),
        }
        if "state_dir" not in own_state:
            env["HOMELAB__STATE_DIR"] = str(state)
        failures = []
        commands = [["up"], ["vm.apply"], ["sandbox.up"], ["backup.run"]] if bad.name in every_entry_point else [["up"]]
        for command in commands:
            result = run_cli(command, env)
            if result.code != 2 or expected_of(bad) not in result.stderr:
                failures.append(f"{bad.name} {command}: exit {result.code}\n{result.output}")
            failures += [
                f"{bad.name} {command}: shows {text!r}" for text in headers(bad)["hides"] if text in result.output
            ]
        if state.exists():
            failures.append(f"{bad.name}: wrote state into {state}")
        return failures

    assert {p.name for p in BAD} >= every_entry_point
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        failures = [line for found in pool.map(run, BAD) for line in found]
    assert not failures, "\n".join(failures)
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


def test_config_show_json_roundtrip_keeps_every_section(tmp_path: Path) -> None:
    """What config.show prints is JSON-typed, has every section, and read back is the same config."""
    env = {"HOMELAB_CONFIG": str(write(tmp_path / "homelab.yaml", loopback_data()))}
    shown = run_cli(["config.show"], env)
    assert shown.code == 0, shown.output
    data = yaml.safe_load(shown.stdout)
    assert set(data) == set(HomelabConfig.model_fields)
    assert data["apps"]["homepage"]["storage"] is None  # not dropped, or it would read back as the default size
    assert json.loads(json.dumps(data)) == data
    again = run_cli(["config.show"], {"HOMELAB_CONFIG": str(write(tmp_path / "shown.yaml", data))})
    assert again.code == 0, again.output
    assert again.stdout == shown.stdout


@pytest.mark.parametrize("text", ["", "\n  \n", "# only a comment\n# and another\n", "---\n"])
def test_empty_config_file_says_it_is_empty_naming_it(text: str, tmp_path: Path) -> None:
    config = tmp_path / "homelab.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        loader.load(config, environ={})
    assert str(caught.value) == f"config error: {config}: " + caught.value.problems[0].message
    assert "the config file is empty" in str(caught.value)


def test_empty_local_override_is_allowed(tmp_path: Path) -> None:
    """Only the main file must say something: an empty homelab.local.yaml overrides nothing."""
    main = write(tmp_path / "homelab.yaml", {"nodes": [{"name": "s", "role": "server", "ip": "192.168.105.10"}]})
    (tmp_path / "homelab.local.yaml").write_text("# my overrides, none yet\n")
    assert loader.load(main, environ={}).config.nodes[0].name == "s"


def test_a_validation_error_printed_anywhere_never_shows_the_value() -> None:
    """Code that lets pydantic's own error escape (a traceback) must not leak a URL's token either."""
    token = "HIDDEN-" + "PING-UUID"
    with pytest.raises(ValidationError) as caught:
        HomelabConfig.model_validate({"backup": {"deadman_url": f"https://hc-ping.com:99999/{token}"}})
    assert token not in str(caught.value) and token not in repr(caught.value)
