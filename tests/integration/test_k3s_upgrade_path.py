"""K3S upgrades one minor at a time, over SSH on the sshd test nodes with the stand-in installer.

Each test runs the CLI with its own copy of versions.toml (``HOMELAB_VERSIONS``) whose
``[k3s.upgrade_path]`` it sets, so a Renovate bump of the real manifest changes nothing here.
The stand-in installer records every install on the node (``installer-log.jsonl``), so the
intermediate release is visible after the walk.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path

import pytest
from k3s_nodes import Lab

from helpers import REPO, CliResult, run_cli
from homelab.core.kube import Kube
from homelab.k3s.plan import UPGRADING_ANNOTATION

pytestmark = pytest.mark.integration

OLD, BETWEEN, TARGET = "v1.33.5+k3s1", "v1.34.9+k3s1", "v1.35.5+k3s1"
PATH = {"1.33": OLD, "1.34": BETWEEN, "1.35": TARGET}
SERVER_FIRST = ["k3s-server", "k3s-worker-1", "k3s-worker-2"]


def manifest(tmp: Path, upgrade_path: dict[str, str]) -> Path:
    """A copy of versions.toml with ``upgrade_path`` as its [k3s.upgrade_path]."""
    entries = "".join(f'"{minor}" = "{release}"\n' for minor, release in upgrade_path.items())
    text = re.sub(
        r"(?ms)^\[k3s\.upgrade_path\]\n.*?(?=^\[)",
        lambda _: f"[k3s.upgrade_path]\n{entries}\n",
        (REPO / "versions.toml").read_text(),
    )
    assert entries in text
    path = tmp / "versions.toml"
    path.write_text(text)
    return path


def cli(lab: Lab, versions: Path, *args: str) -> CliResult:
    return run_cli(list(args), {"HOMELAB_CONFIG": str(lab.config), "HOMELAB_VERSIONS": str(versions)})


def installed_on(lab: Lab, version: str, versions: Path) -> None:
    """K3S ``version`` on every node, then k3s.version set to the target."""
    lab.data["k3s"]["version"] = version
    lab.save()
    done = cli(lab, versions, "k3s.install")
    assert done.code == 0, done.output
    lab.data["k3s"]["version"] = TARGET
    lab.save()


def files_of(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "sshd.pid"
    }


def picture(lab: Lab, kube: Kube) -> dict[str, object]:
    """Every file on every node (the installer log among them) and each Node's cordon and upgrade mark."""
    cluster = {}
    for name in lab.nodes:
        node = kube.get("v1", "Node", name) or {}
        marks = (node.get("metadata", {}).get("annotations") or {}).get(UPGRADING_ANNOTATION)
        cluster[name] = (bool(node.get("spec", {}).get("unschedulable")), marks)
    return {"nodes": {name: files_of(node.root) for name, node in lab.nodes.items()}, "cluster": cluster}


def test_a_skipped_minor_is_refused_with_the_steps_and_no_node_is_changed(lab: Lab, kube: Kube) -> None:
    versions = manifest(lab.tmp, PATH)
    installed_on(lab, OLD, versions)
    before = picture(lab, kube)
    for args in (["k3s.upgrade"], ["k3s.install"]):  # k3s.install is the k3s layer of inv up
        refused = cli(lab, versions, *args)
        assert refused.code == 2, refused.output
        text = refused.stderr
        named = ", ".join(f"{name} ({OLD})" for name in SERVER_FIRST)
        assert f"k3s.version {TARGET} is more than one minor ahead of {named}" in text, text
        assert f"The way there is 1.33 → {BETWEEN} → {TARGET}" in text
        assert f"1. k3s {BETWEEN} on k3s-server, k3s-worker-1, k3s-worker-2" in text
        assert "Run inv k3s.upgrade --yes" in text
        assert picture(lab, kube) == before, f"{args[0]} changed something"
    assert [[r["version"] for r in n.installer_log()] for n in lab.nodes.values()] == [[OLD]] * 3


def test_inv_up_refuses_the_same_skip(lab: Lab, kube: Kube) -> None:
    versions = manifest(lab.tmp, PATH)
    installed_on(lab, OLD, versions)
    before = picture(lab, kube)
    refused = cli(lab, versions, "up", "--only", "k3s", "--offline")
    assert refused.code == 2, refused.output
    assert f"The way there is 1.33 → {BETWEEN} → {TARGET}" in refused.stderr
    assert "Run inv k3s.upgrade --yes" in refused.stderr
    assert picture(lab, kube) == before


def test_a_downgrade_is_refused_even_with_yes_naming_the_node_that_runs_newer(lab: Lab, kube: Kube) -> None:
    versions = manifest(lab.tmp, PATH)
    installed_on(lab, TARGET, versions)
    # Only the K3S build is newer on k3s-worker-2 (and "10" > "5" as numbers): still a downgrade.
    (lab.nodes["k3s-worker-2"].root / "lib" / "fake-k3s-version").write_text("v1.35.5+k3s2")
    (lab.nodes["k3s-worker-1"].root / "lib" / "fake-k3s-version").write_text("v1.35.10+k3s1")
    before = picture(lab, kube)
    for args in (["k3s.upgrade", "--yes"], ["k3s.upgrade", "--dry-run"], ["k3s.install"]):
        refused = cli(lab, versions, *args)
        assert refused.code == 2, refused.output
        assert (
            f"k3s.version {TARGET} is older than what the nodes run "
            "(k3s-worker-1 runs v1.35.10+k3s1, k3s-worker-2 runs v1.35.5+k3s2)"
        ) in refused.stderr, refused.stderr
        assert "Set k3s.version to v1.35.10+k3s1 or newer" in refused.stderr
        assert picture(lab, kube) == before, f"{' '.join(args)} changed something"


def test_yes_walks_one_minor_at_a_time_to_the_target_server_first_in_each_step(lab: Lab, kube: Kube) -> None:
    versions = manifest(lab.tmp, PATH)
    installed_on(lab, OLD, versions)
    before = picture(lab, kube)

    dry = cli(lab, versions, "k3s.upgrade", "--dry-run")
    assert dry.code == 0, dry.output
    assert picture(lab, kube) == before
    out = dry.stdout
    assert f"1.33 → {BETWEEN} → {TARGET} (a real run needs --yes)" in out
    titles = [out.index(f"plan: upgrade {name} to k3s {v}") for v in (BETWEEN, TARGET) for name in SERVER_FIRST]
    assert titles == sorted(titles), "each step server first, the second step after the whole first"
    assert out.index("step 1 of 2") < titles[0] < out.index("step 2 of 2") < titles[3]

    walked = cli(lab, versions, "k3s.upgrade", "--yes")
    assert walked.code == 0, walked.output
    assert f"every node runs {TARGET}; converged" in walked.stdout
    logs = {name: node.installer_log() for name, node in lab.nodes.items()}
    assert {name: [r["version"] for r in log] for name, log in logs.items()} == {
        name: [OLD, BETWEEN, TARGET] for name in SERVER_FIRST
    }
    installs = sorted((r for log in logs.values() for r in log[1:]), key=lambda r: r["start"])
    assert [(r["node"], r["version"]) for r in installs] == [
        *((name, BETWEEN) for name in SERVER_FIRST),
        *((name, TARGET) for name in SERVER_FIRST),
    ]
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(installs)), "one node at a time"
    assert all(state == (False, None) for state in picture(lab, kube)["cluster"].values()), "left cordoned or marked"

    status = cli(lab, versions, "k3s.status")
    assert status.code == 0 and status.stdout.count(TARGET) == 3, status.output
    again = cli(lab, versions, "k3s.upgrade", "--yes")
    assert again.code == 0 and "nothing to do" in again.stdout, again.output
    assert [len(n.installer_log()) for n in lab.nodes.values()] == [3, 3, 3]


def test_a_missing_minor_in_the_manifest_is_named_and_no_node_is_changed(lab: Lab, kube: Kube) -> None:
    installed_on(lab, OLD, manifest(lab.tmp, PATH))
    versions = manifest(lab.tmp, {"1.33": OLD, "1.35": TARGET})
    before = picture(lab, kube)
    refused = cli(lab, versions, "k3s.upgrade", "--yes")
    assert refused.code == 2, refused.output
    assert f"{versions} [k3s.upgrade_path] names no release for Kubernetes 1.34" in refused.stderr
    assert '"1.34" = "v1.34.N+k3s1"' in refused.stderr
    assert picture(lab, kube) == before
