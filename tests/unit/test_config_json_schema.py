"""The config's JSON Schema for editors: committed, fresh, and named where a YAML language server looks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from helpers import REPO
from homelab.config import json_schema

COMMITTED = REPO / json_schema.SCHEMA_FILE
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def named_schema(config: Path) -> Path:
    first = config.read_text().splitlines()[0]
    found = MODELINE.match(first)
    assert found, f"{config}'s first line does not name the schema: {first!r}"
    return (config.parent / found.group(1)).resolve()


def test_the_committed_schema_is_what_the_model_exports_now() -> None:
    assert COMMITTED.read_text() == json_schema.text(), (
        f"{json_schema.SCHEMA_FILE} is stale: run `inv config.schema > {json_schema.SCHEMA_FILE}` and commit it"
    )


def test_the_reference_config_and_every_example_name_the_committed_schema() -> None:
    configs = [REPO / "config" / "homelab.yaml", *sorted((REPO / "config" / "examples").glob("*.yaml"))]
    assert len(configs) > 1
    for config in configs:
        assert named_schema(config) == COMMITTED.resolve(), config


def test_every_top_level_key_of_the_reference_config_is_in_the_schema_and_no_other_is_allowed() -> None:
    schema = json.loads(COMMITTED.read_text())
    reference = yaml.safe_load((REPO / "config" / "homelab.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert set(reference) <= set(schema["properties"])


def test_bounds_use_json_schema_keywords_not_pythons() -> None:
    schema = json.loads(COMMITTED.read_text())
    cpus = schema["$defs"]["Node"]["properties"]["cpus"]
    assert (cpus["minimum"], cpus["maximum"]) == (1, 64)
    text = COMMITTED.read_text()
    assert not re.search(r'"(ge|le|gt|lt)": ', text)


def test_config_schema_prints_the_committed_file(tmp_path: Path) -> None:
    from helpers import run_cli

    result = run_cli(["config.schema"], {"HOMELAB_CONFIG": str(tmp_path / "none.yaml")})  # needs no config
    assert result.code == 0, result.stderr
    assert result.stdout == COMMITTED.read_text()
