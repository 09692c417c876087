"""Hostile or odd config files: each is one clear config error (exit 2), never a traceback or a hang.

Reading (regular file, size, UTF-8), YAML within bounds (merge keys work, duplicate
and non-plain keys, tags, recursive and exploding aliases refused) and environment
overrides that are not YAML, driven through ``homelab.config.loader`` and the CLI.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from helpers import LOOPBACK_CONFIG, run_cli
from homelab.config import loader
from homelab.core import reading
from homelab.core.errors import EXIT_USAGE, ConfigError

LOOPBACK_TEXT = LOOPBACK_CONFIG.read_text()


def billion_laughs() -> str:
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 10):
        refs = ", ".join([f"*lol{level - 1}"] * 10)
        lines.append(f"lol{level}: &lol{level} [{refs}]")
    return "\n".join(lines) + "\n"


def problems_of(text: str, tmp_path: Path) -> str:
    path = tmp_path / "homelab.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        loader.read_yaml_file(path, path.name, required=True)
    return str(caught.value)


# --- reading -------------------------------------------------------------------------


def test_utf8_with_or_without_bom_reads_the_same(tmp_path: Path) -> None:
    plain, bom = tmp_path / "plain.yaml", tmp_path / "bom.yaml"
    plain.write_bytes("name: café\n".encode())
    bom.write_bytes(codecs.BOM_UTF8 + "name: café\n".encode())
    assert reading.read_text(plain, "config file", 1000) == reading.read_text(bom, "config file", 1000)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("name: café\n".encode("latin-1"), "line 1: byte 0xe9 is not UTF-8"),
        ("name: x\n".encode("utf-16"), "UTF-16"),
        (b"\x7fELF\x02\x01\x00\x00", "NUL byte"),
    ],
    ids=["latin-1", "utf-16", "binary"],
)
def test_text_that_is_not_utf8_names_the_file_and_the_fix(tmp_path: Path, raw: bytes, words: str) -> None:
    path = tmp_path / "homelab.yaml"
    path.write_bytes(raw)
    with pytest.raises(reading.ReadProblem) as caught:
        reading.read_text(path, "config file", 1000)
    assert str(path) in str(caught.value) and words in str(caught.value)
    assert "save it as UTF-8" in str(caught.value)


def test_a_directory_or_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading without a writer would block forever
    with pytest.raises(reading.ReadProblem, match="not a regular file"):
        reading.read_text(fifo, "config file", 1000)
    with pytest.raises(reading.ReadProblem, match="is a directory"):
        reading.read_text(tmp_path, "config file", 1000)


def test_a_file_past_the_size_bound_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * 2000)
    with pytest.raises(reading.ReadProblem, match="2000 bytes; at most 1000"):
        reading.read_text(path, "config file", 1000)


# --- YAML within bounds ---------------------------------------------------------------


def test_merge_keys_share_settings_and_the_mapping_overrides_them() -> None:
    data = loader.parse_yaml(
        "base: &base {cpu_limit: 1, port: 80}\n"
        "extra: &extra {port: 81, mount_path: /data}\n"
        "one:\n  <<: *base\n  port: 8080\n"
        "two:\n  <<: [*extra, *base]\n"
        "three: &three\n  <<: *base\n  cpu_limit: 2\n"
        "four: {<<: *three}\n",
        "f.yaml",
    )
    assert data["one"] == {"cpu_limit": 1, "port": 8080}
    assert data["two"] == {"cpu_limit": 1, "port": 81, "mount_path": "/data"}  # earlier in the list wins
    assert data["four"] == {"cpu_limit": 2, "port": 80}  # an override inside a merged mapping is kept


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a'"),
        ("base: &b {x: 1}\napp:\n  <<: *b\n  y: 1\n  y: 2\n", 5, "duplicate key 'y'"),
        ("? [a, b]\n: 1\n", 1, "a key must be a plain value"),
        ("? {a: 1}\n: 1\n", 1, "a key must be a plain value"),
        ("a: !!python/object/apply:os.system [true]\n", 1, "python/object/apply:os.system' is not allowed"),
        ("a:\n  b: !custom x\n", 2, "'!custom' is not allowed"),
        ("a: !!binary aGVsbG8=\n", 1, "binary' is not allowed"),
        ("a: &a [*a]\n", 1, "recursive aliases"),
        ("a: {<<: 3}\n", 1, "'<<' merges mappings"),
    ],
    ids=[
        "duplicate",
        "duplicate-beside-merge",
        "list-key",
        "mapping-key",
        "python-tag",
        "custom-tag",
        "binary",
        "recursive",
        "merge-scalar",
    ],
)
def test_yaml_outside_the_bounds_is_one_error_with_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    message = problems_of(text, tmp_path)
    assert f"homelab.yaml:{line}: invalid YAML" in message and words in message


def test_billion_laughs_is_refused_at_its_line(tmp_path: Path) -> None:
    message = problems_of(billion_laughs(), tmp_path)
    assert "aliases expand to more than 10000 values" in message
    assert "homelab.yaml:4:" in message  # lol3: 99 + 999 + 9999 values from aliases so far


def test_nesting_past_the_bound_is_refused(tmp_path: Path) -> None:
    message = problems_of("a: " + "[" * 5000 + "]" * 5000 + "\n", tmp_path)
    assert "nested more than 100 levels deep" in message


def test_env_override_that_is_not_yaml_is_named_by_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        loader.env_layer({"HOMELAB__K3S__VERSION": "[unclosed", "HOMELAB__X": "fine"})
    assert "environment variable HOMELAB__K3S__VERSION" in str(caught.value)
    with pytest.raises(ConfigError, match=r"HOMELAB__K3S__VERSION.*'!custom' is not allowed"):
        loader.env_layer({"HOMELAB__K3S__VERSION": "!custom x"})


# --- through the CLI, as a user would meet them -----------------------------------------


def assert_config_error(env: dict[str, str], *words: str) -> None:
    result = run_cli(["config.validate"], env, timeout=20)
    assert result.code == EXIT_USAGE, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def test_cli_refuses_a_billion_laughs_config_quickly(tmp_path: Path) -> None:
    path = tmp_path / "homelab.yaml"
    path.write_text(LOOPBACK_TEXT + billion_laughs())
    assert_config_error({"HOMELAB_CONFIG": str(path)}, str(path), "aliases expand to more than 10000")


def test_cli_refuses_a_latin1_local_layer_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "homelab.yaml"
    path.write_text(LOOPBACK_TEXT)
    local = tmp_path / "homelab.local.yaml"
    local.write_bytes("name: café\n".encode("latin-1"))
    assert_config_error({"HOMELAB_CONFIG": str(path)}, str(local), "save it as UTF-8")


def test_cli_refuses_a_fifo_config_without_waiting_on_it(tmp_path: Path) -> None:
    path = tmp_path / "homelab.yaml"
    os.mkfifo(path)
    assert_config_error({"HOMELAB_CONFIG": str(path)}, str(path), "not a regular file")


def test_cli_refuses_a_python_tag_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "homelab.yaml"
    path.write_text(LOOPBACK_TEXT + f"x: !!python/object/apply:os.system ['touch {marker}']\n")
    assert_config_error({"HOMELAB_CONFIG": str(path)}, f"{path}:", "is not allowed")
    assert not marker.exists()


def test_cli_names_the_env_variable_that_is_not_yaml(tmp_path: Path) -> None:
    assert_config_error(
        {"HOMELAB_CONFIG": str(LOOPBACK_CONFIG), "HOMELAB__K3S__VERSION": "{unclosed"},
        "environment variable HOMELAB__K3S__VERSION",
    )


def test_cli_accepts_apps_that_share_settings_with_merge_keys(tmp_path: Path) -> None:
    path = tmp_path / "homelab.yaml"
    path.write_text(LOOPBACK_TEXT)
    (tmp_path / "homelab.local.yaml").write_text(
        "apps:\n"
        "  one: &app {image: 'registry.home.arpa/notes:1.0', port: 80, hostname: one}\n"
        "  two:\n    <<: *app\n    hostname: two\n"
    )
    result = run_cli(["config.validate"], {"HOMELAB_CONFIG": str(path)}, timeout=20)
    assert result.code == 0, result.output
    apps = loader.load(path, environ={}).config.apps
    assert apps["two"].image == apps["one"].image and apps["two"].hostname == "two"


# --- who may change the config ------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "directory"])
def test_a_config_others_can_change_is_refused_naming_the_fix(tmp_path: Path, where: str) -> None:
    """The config names the commands the scheduled backup runs: held to the rule of the repository."""
    folder = tmp_path / "config"
    folder.mkdir()
    path = folder / "homelab.yaml"
    path.write_text(LOOPBACK_TEXT)
    (path if where == "file" else folder).chmod(0o666 if where == "file" else 0o777)
    result = run_cli(["config.validate"], {"HOMELAB_CONFIG": str(path)})
    assert result.code == EXIT_USAGE, result.output
    assert str(path) in result.stderr and "chmod o-w" in result.stderr and "Traceback" not in result.output
    (path if where == "file" else folder).chmod(0o644 if where == "file" else 0o755)
    assert run_cli(["config.validate"], {"HOMELAB_CONFIG": str(path)}).code == 0
