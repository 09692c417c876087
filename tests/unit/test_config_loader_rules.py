"""The config loader's rules, one by one: messages a user reads, layer precedence, origins, YAML handling.

Each message is asserted whole: the key path a user has to edit and the sentence
that tells them what is wrong are the behaviour, so a stray prefix or a lost
word is a failure here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import loopback_data
from homelab.config import loader
from homelab.config.loader import Layer
from homelab.core.errors import ConfigError
from homelab.core.paths import project_root

UNKNOWN = "unknown key (misspelled? see the config reference, docs/reference/config.md)"
NOT_A_MAPPING = "must be a mapping (for secrets: {file: ...}, {env: ...} or {keychain: ...}), not a value"


def problems_of(change: Any) -> list[str]:
    data = loopback_data()
    change(data)
    with pytest.raises(ConfigError) as caught:
        loader.validate(data)
    return [str(p) for p in caught.value.problems]


def test_an_unknown_key_is_named_by_its_full_path() -> None:
    assert problems_of(lambda d: d.update(nodez=1)) == [f"nodez: {UNKNOWN}"]
    assert problems_of(lambda d: d["nodes"][0].update(cpu=1)) == [f"nodes[0].cpu: {UNKNOWN}"]
    assert problems_of(lambda d: d["k3s"].update(versio="x")) == [f"k3s.versio: {UNKNOWN}"]


def test_a_missing_key_is_named_and_said_to_be_required() -> None:
    assert problems_of(lambda d: d["nodes"][1].pop("ip")) == ["nodes[1].ip: required key is missing"]


def test_a_bad_mapping_key_is_named_once() -> None:
    """pydantic adds a '[key]' step for a bad dict key; the path already ends with the key."""
    [problem] = problems_of(lambda d: d["apps"].update({"Bad_Name": {**d["apps"]["plex"], "image": "x/plex:1"}}))
    assert problem.startswith("apps.Bad_Name: 'Bad_Name' is not a Kubernetes name")
    assert "[key]" not in problem


def test_a_validator_message_is_shown_without_pydantics_prefix() -> None:
    assert problems_of(lambda d: d["apps"]["qbittorrent"].update(egress=["internet", "internet"])) == [
        "apps.qbittorrent.egress: lists 'internet' more than once"
    ]


def test_a_scalar_where_a_section_or_secret_reference_belongs_is_never_echoed() -> None:
    assert problems_of(lambda d: d.update(k3s=5)) == [f"k3s: {NOT_A_MAPPING}"]
    [problem] = problems_of(lambda d: d["k3s"].update(token="hunter2-pasted-token"))
    assert problem == f"k3s.token: {NOT_A_MAPPING}"


def test_a_bad_value_is_quoted_once() -> None:
    assert problems_of(lambda d: d["apps"]["plex"].update(replicas=-1)) == [
        "apps.plex.replicas: Input should be greater than or equal to 0 (got -1)"
    ]
    [problem] = problems_of(lambda d: d["apps"]["plex"].update(port="abc"))
    assert problem.endswith("unable to parse string as an integer (got 'abc')")
    [named] = problems_of(lambda d: d["apps"].update({"Bad_Name": {**d["apps"]["plex"], "image": "x/plex:1"}}))
    assert named.count("'Bad_Name'") == 1, "the message already quotes it: no '(got ...)' after it"


def test_a_mapping_or_list_in_the_wrong_place_is_not_echoed() -> None:
    [problem] = problems_of(lambda d: d["network"].update(dns={"a": "secret-looking-value"}))
    assert problem.startswith("network.dns: ") and "secret-looking-value" not in problem and "(got" not in problem
    [reference] = problems_of(lambda d: d["k3s"].update(token={"file": "/x", "env": "Y"}))
    assert reference == "k3s.token: a secret reference needs exactly one of file, env or keychain"


def test_every_problem_is_reported_together() -> None:
    problems = problems_of(lambda d: (d.update(nodez=1), d["nodes"][1].pop("ip")))
    assert sorted(problems) == sorted([f"nodez: {UNKNOWN}", "nodes[1].ip: required key is missing"])


def test_the_config_file_is_HOMELAB_CONFIG_else_the_projects(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOMELAB_CONFIG", str(tmp_path / "mine.yaml"))
    assert loader.default_config_path() == tmp_path / "mine.yaml"
    monkeypatch.delenv("HOMELAB_CONFIG")
    assert loader.default_config_path() == project_root() / "config" / "homelab.yaml"


def test_the_local_override_sits_beside_the_main_file() -> None:
    assert loader.local_override_path(Path("/c/homelab.yaml")) == Path("/c/homelab.local.yaml")
    assert loader.local_override_path(Path("/c/lab.yml")) == Path("/c/lab.local.yml")


def test_yaml_problems_name_the_file_and_line(tmp_path: Path) -> None:
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text("name: a\nk3s:\n  version: x\n  version: y\n")
    with pytest.raises(ConfigError) as caught:
        loader.read_yaml_file(duplicate, "file")
    assert str(caught.value) == f"config error: {duplicate}:4: invalid YAML: duplicate key 'version'"
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: a\nnodes: [\n")
    with pytest.raises(ConfigError, match=rf"config error: {broken}:3: invalid YAML: "):
        loader.read_yaml_file(broken, "file")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as caught:
        loader.read_yaml_file(listed, "file")
    assert str(caught.value) == f"config error: {listed}: the top level must be a mapping of sections"


def test_an_empty_file_is_an_error_only_when_it_is_the_main_one(tmp_path: Path) -> None:
    empty = tmp_path / "homelab.yaml"
    empty.write_text("# only a comment\n\n")
    assert loader.read_yaml_file(empty, "local") == {}
    with pytest.raises(ConfigError) as caught:
        loader.read_yaml_file(empty, "file", required=True)
    assert str(caught.value) == (
        f"config error: {empty}: the config file is empty (nothing but blank lines or comments); "
        "start from config/homelab.yaml"
    )


def test_environment_variables_become_nested_typed_keys() -> None:
    environ = {
        "HOMELAB__K3S__VERSION": "v1.30.0+k3s1",
        "HOMELAB__BACKUP__RETENTION__DAILY": "3",
        "HOMELAB__NETWORK__DNS": "[1.1.1.1, 9.9.9.9]",
        "HOMELAB__NAME": "",
        "HOMELAB_CONFIG": "/not/a/layer.yaml",
        "PATH": "/bin",
    }
    assert loader.env_layer(environ) == {
        "k3s": {"version": "v1.30.0+k3s1"},
        "backup": {"retention": {"daily": 3}},
        "network": {"dns": ["1.1.1.1", "9.9.9.9"]},
        "name": "",
    }


def test_later_layers_win_key_by_key_and_origins_follow_the_winner() -> None:
    base = {"k3s": {"version": "a", "datastore": "sqlite"}, "network": {"dns": ["1.1.1.1", "8.8.8.8"]}}
    top = {"k3s": {"version": "b"}, "network": {"dns": ["9.9.9.9"]}}
    merged, origins = loader.merge_layers([Layer("file", base), Layer("env", top)])
    assert merged == {"k3s": {"version": "b", "datastore": "sqlite"}, "network": {"dns": ["9.9.9.9"]}}
    assert origins == {"k3s.version": "env", "k3s.datastore": "file", "network.dns[0]": "env"}
    merged["k3s"]["version"] = "changed"
    merged["network"]["dns"].append("x")
    assert top == {"k3s": {"version": "b"}, "network": {"dns": ["9.9.9.9"]}}, "layers are copied, never shared"


def test_a_value_replacing_a_section_drops_the_sections_origins() -> None:
    first = {"apps": {"plex": {"port": 1, "env": {"A": "1"}}, "plexed": {"port": 2}}}
    merged, origins = loader.merge_layers([Layer("file", first), Layer("cli", {"apps": {"plex": None}})])
    assert merged["apps"]["plex"] is None
    assert origins == {"apps.plex": "cli", "apps.plexed.port": "file"}
    _, empty = loader.merge_layers([Layer("file", {"a": {}, "b": []})])
    assert empty == {"a": "file", "b": "file"}


def test_load_reads_main_then_local_then_env_then_cli(tmp_path: Path) -> None:
    main = tmp_path / "homelab.yaml"
    main.write_text(yaml.safe_dump(loopback_data()))
    (tmp_path / "homelab.local.yaml").write_text("domain: local.test\nname: fromlocal\n")
    loaded = loader.load(
        main,
        overrides={"name": "fromcli"},
        environ={"HOMELAB__DOMAIN": "env.test", "HOMELAB__K3S__VERSION": "v1.30.0+k3s1"},
    )
    assert loaded.files == [main, tmp_path / "homelab.local.yaml"]
    assert (loaded.config.name, loaded.config.domain, loaded.config.k3s.version) == (
        "fromcli",
        "env.test",
        "v1.30.0+k3s1",
    )
    assert loaded.origin("name") == "cli" and loaded.origin("domain") == "env"
    assert loaded.origin("target") == "file homelab.yaml" and loaded.origin("backup.keep_verified") == "default"
    with pytest.raises(ConfigError) as caught:
        loader.load(tmp_path / "absent.yaml", environ={})
    assert str(caught.value) == (
        f"config error: {tmp_path / 'absent.yaml'}: config file not found (set HOMELAB_CONFIG or create it)"
    )


def test_a_config_without_a_local_file_has_one_file(tmp_path: Path) -> None:
    main = tmp_path / "homelab.yaml"
    data = copy.deepcopy(loopback_data())
    main.write_text(yaml.safe_dump(data))
    loaded = loader.load(main, environ={"HOMELAB__NAME": "x1"})
    assert loaded.files == [main] and loaded.config.name == "x1" and loaded.origin("name") == "env"


def test_an_unreadable_character_is_named_with_the_file_even_without_a_line(tmp_path: Path) -> None:
    bell = tmp_path / "bell.yaml"
    bell.write_bytes(b"name: a\x07b\n")
    with pytest.raises(ConfigError) as caught:
        loader.read_yaml_file(bell, "file")
    assert str(caught.value).startswith(
        f"config error: {bell}: invalid YAML: unacceptable character #x0007: special characters are not allowed"
    )


def test_origins_reach_into_lists_of_sections() -> None:
    _, origins = loader.merge_layers([Layer("file", {"nodes": [{"name": "a", "ip": "1"}, {"name": "b"}]})])
    assert origins == {"nodes[0].name": "file", "nodes[0].ip": "file", "nodes[1].name": "file"}


def test_the_kubeconfig_context_is_the_configured_one_else_named_after_the_homelab() -> None:
    cfg = loader.validate(loopback_data())
    assert cfg.target == "sandbox" and cfg.context_name() == "itest-sandbox"
    assert cfg.model_copy(update={"target": "lima"}).context_name() == "itest"
    assert cfg.model_copy(update={"kube_context": "work"}).context_name() == "work"


def test_a_keychain_reference_keeps_its_item_name() -> None:
    from homelab.config.schema import SecretRef
    from homelab.core.secret_refs import SecretLocation

    assert SecretRef(keychain="homelab-k3s").location() == SecretLocation(keychain="homelab-k3s")
    assert SecretRef(file="~/t").location() == SecretLocation(file="~/t")
