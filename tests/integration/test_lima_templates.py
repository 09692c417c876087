"""Every rendered Lima template passes the real `limactl validate`; a broken one does not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from helpers import LOOPBACK_CONFIG, REPO

sys.path.insert(0, str(REPO / "scripts"))
from validate_lima_templates import render_config, validate_files

pytestmark = pytest.mark.integration


def test_every_rendered_template_validates(tmp_path: Path) -> None:
    files = render_config(REPO / "config" / "homelab.yaml", tmp_path) + render_config(LOOPBACK_CONFIG, tmp_path)
    assert len(files) == 6
    results = validate_files(files)
    assert [(p.name, code) for p, code, _ in results if code != 0] == []


def test_limactl_rejects_a_broken_template(tmp_path: Path) -> None:
    good = render_config(LOOPBACK_CONFIG, tmp_path)[0]
    broken = tmp_path / "broken.yaml"
    data = yaml.safe_load(good.read_text())
    data["cpus"] = "four"
    broken.write_text(yaml.safe_dump(data))
    [(_, code, output)] = validate_files([broken])
    assert code != 0 and "cpus" in output.lower()
