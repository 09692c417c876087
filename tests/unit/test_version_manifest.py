"""versions.toml is the one place every pin lives, every pin in it is visible to Renovate, and the tree obeys it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab.config.schema import HomelabConfig
from homelab.core import pins
from homelab.core.errors import HomelabError

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "versions.toml"


def renovate_matches() -> list[dict[str, str]]:
    """Every match of every custom manager in renovate.json over versions.toml, as Python sees the same regex."""
    config = json.loads((REPO / "renovate.json").read_text())
    text = MANIFEST.read_text()
    found = []
    for manager in config["customManagers"]:
        assert manager["managerFilePatterns"] == ["/^versions\\.toml$/"]
        for pattern in manager["matchStrings"]:
            for match in re.finditer(pattern.replace("(?<", "(?P<"), text):
                found.append(match.groupdict())
    return found


def pinned_values(loaded: pins.Pins) -> list[str]:
    """Every version the manifest pins (the end-of-support dates are facts, not pins)."""
    return [
        loaded.k3s_version,
        *loaded.k3s_upgrade_path.values(),
        loaded.argocd_version,
        *(chart.version for chart in loaded.charts.values()),
        *(image.rpartition(":")[2] for image in loaded.images.values()),
        *(binary.version for binary in loaded.binaries.values()),
        *(toolchain.removeprefix("go") for toolchain in loaded.toolchains.values()),
    ]


def test_every_pin_in_the_manifest_is_seen_by_a_renovate_manager_exactly_once() -> None:
    matched = [m["currentValue"] for m in renovate_matches()]
    loaded = pins.load()
    for value in pinned_values(loaded):
        assert value in matched, f"{value}: no renovate.json manager matches it"
    assert len(matched) == len(pinned_values(loaded)), "a pin matched twice, or a match that is not a pin"
    charts = {m["depName"]: m for m in renovate_matches() if "registryUrl" in m}
    assert {c.chart: c.repository for c in loaded.charts.values()} == {n: m["registryUrl"] for n, m in charts.items()}


def test_the_sandbox_builds_what_the_cluster_deploys() -> None:
    loaded = pins.load()
    assert loaded.argocd_version == "v" + loaded.binaries["argocd"].version
    assert loaded.image("sealed-secrets-controller").endswith(":" + loaded.binaries["sealed-secrets"].version)
    assert loaded.chart("metallb").version == loaded.binaries["metallb"].version
    assert pins.minor_of(loaded.k3s_version) in loaded.k3s_upgrade_path
    assert loaded.k3s_upgrade_path[pins.minor_of(loaded.k3s_version)] == loaded.k3s_version


def test_the_config_defaults_are_the_manifest() -> None:
    cfg = HomelabConfig()
    loaded = pins.load()
    assert cfg.k3s.version == loaded.k3s_version and cfg.k3s.installer_url == loaded.k3s_installer
    assert cfg.gitops.argocd_version == loaded.argocd_version
    assert cfg.secrets.chart_version == loaded.chart("sealed-secrets").version
    assert cfg.metallb.chart_version == loaded.chart("metallb").version
    assert cfg.tls.chart_version == loaded.chart("cert-manager").version
    assert cfg.monitoring.chart_version == loaded.chart("kube-prometheus-stack").version
    app = HomelabConfig.model_validate({"apps": {"plex": {"port": 32400, "hostname": "plex"}}}).apps["plex"]
    assert app.image == loaded.image("plex")


# Files that name versions for other reasons than pinning what the homelab pulls.
NOT_PINS = {"versions.toml", "renovate.json"}
SCANNED = ("tasks/**/*.py", "scripts/*", "config/*.yaml", "terraform/*", "lima/*", "noxfile.py", ".ci/*")


def code_text(path: Path) -> str:
    """What of a file can pin something: a Python file's string literals but its docstrings; any other file whole."""
    import ast

    text = path.read_text(errors="replace")
    if path.suffix != ".py":
        return text
    tree = ast.parse(text)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return "\n".join(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    )


def test_no_pin_lives_outside_the_manifest() -> None:
    loaded = pins.load()
    needles = {v for v in pinned_values(loaded) if len(v) >= 5} | set(loaded.images.values())
    needles |= {c.repository for c in loaded.charts.values()} | {loaded.k3s_releases}
    found = []
    for pattern in SCANNED:
        for path in REPO.glob(pattern):
            if not path.is_file() or path.name in NOT_PINS or "egg-info" in str(path):
                continue
            text = code_text(path)
            found += [f"{path.relative_to(REPO)}: {needle}" for needle in sorted(needles) if needle in text]
    assert found == [], "pins outside versions.toml (read them from it: homelab.core.pins)"


def test_the_pin_scan_sees_a_pin_in_code_and_not_in_a_docstring(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text('"""Runs v1.35.5+k3s1."""\n\nVERSION = "v1.35.5+k3s1"\n')
    assert code_text(source) == "v1.35.5+k3s1"
    source.write_text('"""Runs v1.35.5+k3s1."""\n')
    assert code_text(source) == ""


def rendered_objects() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((REPO / "k8s").rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return docs


def images_of(obj: dict[str, Any]) -> list[str]:
    spec = (obj.get("spec") or {}).get("template", {}).get("spec") or {}
    return [c["image"] for c in [*spec.get("containers", []), *spec.get("initContainers", [])]]


def test_the_rendered_tree_names_only_sources_from_the_manifest_or_the_owners_config() -> None:
    loaded = pins.load()
    owners = yaml.safe_load((REPO / "config" / "homelab.yaml").read_text())["apps"]
    configured = {entry["image"] for entry in owners.values() if "image" in entry}
    charts = {(c.repository, c.chart, c.version) for c in loaded.charts.values()}
    seen_charts, seen_images = 0, 0
    for obj in rendered_objects():
        source = (obj.get("spec") or {}).get("source") or {}
        if obj.get("kind") == "Application" and "chart" in source:
            assert (source["repoURL"], source["chart"], source["targetRevision"]) in charts, source
            seen_charts += 1
        for image in images_of(obj):
            base = image.split("@")[0]
            assert base in set(loaded.images.values()) | configured or image.startswith("busybox"), image
            seen_images += 1
    assert seen_charts >= 4 and seen_images >= 8


def test_a_broken_manifest_names_the_file_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "versions.toml"
    with pytest.raises(HomelabError, match=r"versions.toml: not a valid TOML file"):
        pins.parse(b"[charts\nx", bad)
    text = MANIFEST.read_text().replace('chart = "metallb"', 'chart = ""')
    with pytest.raises(HomelabError, match=r"versions.toml: charts.metallb: chart must be a non-empty string"):
        pins.parse(text.encode(), bad)
    with pytest.raises(HomelabError, match=r"no \[charts.nope\] entry"):
        pins.parse(MANIFEST.read_bytes(), bad).chart("nope")
