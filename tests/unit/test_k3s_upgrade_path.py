"""K3S upgrades one minor at a time: versions, steps, refusals and support warnings, without any node."""

from __future__ import annotations

import dataclasses
import datetime
import re
from pathlib import Path
from typing import Any

import pytest

from helpers import LOOPBACK_CONFIG
from homelab.config import loader
from homelab.config.checks import support_warnings
from homelab.core.errors import EXIT_USAGE, HomelabError, UsageError
from homelab.core.pins import Pins
from homelab.core.pins import load as load_pins
from homelab.core.plan import Plan
from homelab.core.secret_refs import Secret
from homelab.k3s import plan as k3s
from homelab.k3s import run as k3s_run
from homelab.k3s import versions
from homelab.k3s.versions import Step, parse

PATH = {"1.33": "v1.33.5+k3s1", "1.34": "v1.34.9+k3s1", "1.35": "v1.35.5+k3s1"}
EOS = {
    "1.33": datetime.date(2026, 6, 28),
    "1.34": datetime.date(2026, 10, 27),
    "1.35": datetime.date(2027, 2, 28),
    "1.36": datetime.date(2027, 6, 28),
}
THREE = ("k3s-server", "k3s-worker-1", "k3s-worker-2")


def manifest(upgrade_path: dict[str, str] | None = None, end_of_support: dict | None = None) -> Pins:
    """The real manifest with the test's own upgrade path and dates (fixed, whatever versions.toml says later)."""
    return dataclasses.replace(
        load_pins(),
        path=Path("/etc/test/versions.toml"),
        k3s_upgrade_path=PATH if upgrade_path is None else upgrade_path,
        end_of_support=EOS if end_of_support is None else end_of_support,
    )


def on(*versions_run: str) -> dict[str, str]:
    return dict(zip(THREE, versions_run, strict=True))


# --- versions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("v1.35.5+k3s1", "v1.35.10+k3s1"),  # numbers, not text: "10" > "5"
        ("v1.35.10+k3s1", "v1.35.10+k3s2"),  # the +k3sN build counts
        ("v1.35.9+k3s9", "v1.35.10+k3s1"),  # the patch before the build
        ("v1.9.12+k3s1", "v1.10.0+k3s1"),
        ("v1.34.12+k3s3", "v1.35.0+k3s1"),
        ("v1.35.5-rc1+k3s1", "v1.35.5-rc2+k3s1"),
        ("v1.35.5-rc2+k3s1", "v1.35.5+k3s1"),  # a release candidate comes before its release
    ],
)
def test_versions_compare_by_their_numbers_including_the_k3s_build(older: str, newer: str) -> None:
    assert parse(older) < parse(newer)
    assert not parse(newer) < parse(older)
    assert max(parse(newer), parse(older)).text == newer


def test_a_version_knows_its_minor_and_equal_texts_are_equal() -> None:
    seen = parse("v1.35.10+k3s2")
    assert (seen.minor, seen.major, seen.minor_number, str(seen)) == ("1.35", 1, 35, "v1.35.10+k3s2")
    assert parse("v1.35.5+k3s1") == parse("v1.35.5+k3s1")


@pytest.mark.parametrize("text", ["", "latest", "v1.35+k3s1", "1.35.5+rke2r1", "v1.35.5+k3s1 (abc)"])
def test_what_is_not_a_k3s_version_is_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("is not a K3S version like v1.35.0+k3s1")):
        parse(text)


# --- steps ------------------------------------------------------------------------------


def test_every_node_on_the_target_needs_no_step() -> None:
    assert versions.steps(on(*["v1.35.5+k3s1"] * 3), "v1.35.5+k3s1", manifest()) == []


def test_a_patch_or_one_minor_ahead_is_one_step_of_the_nodes_behind() -> None:
    patch = versions.steps(on("v1.35.5+k3s1", "v1.35.1+k3s1", "v1.35.5+k3s1"), "v1.35.5+k3s1", manifest())
    assert patch == [Step("v1.35.5+k3s1", ("k3s-worker-1",))]
    minor = versions.steps(on(*["v1.34.1+k3s1"] * 3), "v1.35.5+k3s1", manifest({}))  # no path entry needed
    assert minor == [Step("v1.35.5+k3s1", THREE)]


def test_two_minors_ahead_go_through_the_release_the_manifest_names_for_the_minor_between() -> None:
    found = versions.steps(on(*["v1.33.5+k3s1"] * 3), "v1.35.5+k3s1", manifest())
    assert found == [Step("v1.34.9+k3s1", THREE), Step("v1.35.5+k3s1", THREE)]


def test_a_step_moves_only_the_nodes_below_its_minor() -> None:
    found = versions.steps(on("v1.33.1+k3s1", "v1.34.2+k3s1", "v1.35.5+k3s1"), "v1.35.5+k3s1", manifest())
    assert found == [Step("v1.34.9+k3s1", ("k3s-server",)), Step("v1.35.5+k3s1", ("k3s-server", "k3s-worker-1"))]
    three = versions.steps(on(*["v1.32.9+k3s1"] * 3), "v1.35.5+k3s1", manifest({**PATH, "1.32": "v1.32.9+k3s1"}))
    assert [s.version for s in three] == ["v1.33.5+k3s1", "v1.34.9+k3s1", "v1.35.5+k3s1"]


def test_nodes_without_k3s_are_no_part_of_the_steps() -> None:
    found = versions.steps({"k3s-server": "v1.33.5+k3s1"}, "v1.35.5+k3s1", manifest())
    assert found == [Step("v1.34.9+k3s1", ("k3s-server",)), Step("v1.35.5+k3s1", ("k3s-server",))]


def test_a_missing_minor_in_the_manifest_names_the_table_and_the_minor_to_add() -> None:
    with pytest.raises(UsageError) as refused:
        versions.steps(on(*["v1.33.5+k3s1"] * 3), "v1.35.5+k3s1", manifest({"1.33": "v1.33.5+k3s1"}))
    text = str(refused.value)
    assert "/etc/test/versions.toml [k3s.upgrade_path] names no release for Kubernetes 1.34" in text
    assert 'add the newest 1.34 release there, e.g. "1.34" = "v1.34.N+k3s1"' in text
    assert refused.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("entry", "says"),
    [("v1.35.1+k3s1", '"1.34" = "v1.35.1+k3s1" is not a 1.34 release'), ("1.34-latest", "is not a K3S version")],
)
def test_a_manifest_entry_of_another_minor_or_no_version_is_refused(entry: str, says: str) -> None:
    with pytest.raises(UsageError, match=re.escape(says)):
        versions.steps(on(*["v1.33.5+k3s1"] * 3), "v1.35.5+k3s1", manifest({**PATH, "1.34": entry}))


def test_a_node_reporting_no_version_is_named() -> None:
    with pytest.raises(UsageError, match="k3s-worker-2: k3s reports 'garbage' is not a K3S version"):
        versions.steps(on("v1.35.5+k3s1", "v1.35.5+k3s1", "garbage"), "v1.35.5+k3s1", manifest())


# --- refusals ---------------------------------------------------------------------------


def test_a_skipped_minor_is_refused_naming_nodes_target_and_the_steps_instead() -> None:
    running = on("v1.33.5+k3s1", "v1.33.5+k3s1", "v1.34.9+k3s1")
    with pytest.raises(UsageError) as refused:
        versions.plan(running, "v1.35.5+k3s1", manifest())
    text = str(refused.value)
    assert refused.value.exit_code == EXIT_USAGE
    assert text.startswith(
        "k3s.version v1.35.5+k3s1 is more than one minor ahead of k3s-server (v1.33.5+k3s1), "
        "k3s-worker-1 (v1.33.5+k3s1): K3S upgrades one minor at a time"
    ), text
    assert "k3s-worker-2 (" not in text, "one minor behind is no skip"
    assert "The way there is 1.33 → v1.34.9+k3s1 → v1.35.5+k3s1" in text
    assert "1. k3s v1.34.9+k3s1 on k3s-server, k3s-worker-1\n" in text
    assert "2. k3s v1.35.5+k3s1 on k3s-server, k3s-worker-1, k3s-worker-2\n" in text
    assert "Run inv k3s.upgrade --yes" in text and "nothing was changed" in text
    assert "https://docs.k3s.io/upgrades" in text


def test_with_walk_the_same_plan_is_its_steps() -> None:
    running = on(*["v1.33.5+k3s1"] * 3)
    assert versions.plan(running, "v1.35.5+k3s1", manifest(), walk=True) == [
        Step("v1.34.9+k3s1", THREE),
        Step("v1.35.5+k3s1", THREE),
    ]
    assert versions.plan(on(*["v1.34.9+k3s1"] * 3), "v1.35.5+k3s1", manifest()) == [Step("v1.35.5+k3s1", THREE)]


@pytest.mark.parametrize(
    ("node", "target"),
    [
        ("v1.35.10+k3s1", "v1.35.5+k3s1"),  # a patch back, though "5" > "1" as text
        ("v1.35.5+k3s2", "v1.35.5+k3s1"),  # only the K3S build back
        ("v1.35.5+k3s1", "v1.34.9+k3s1"),  # a minor back
        ("v1.35.5+k3s1", "v1.35.5-rc1+k3s1"),
    ],
)
def test_a_downgrade_is_refused_even_with_walk_naming_the_node_and_what_it_runs(node: str, target: str) -> None:
    running = on(target, node, target)
    for walk in (False, True):
        with pytest.raises(UsageError) as refused:
            versions.plan(running, target, manifest(), walk=walk)
        text = str(refused.value)
        assert f"k3s.version {target} is older than what the nodes run (k3s-worker-1 runs {node})" in text
        assert f"Set k3s.version to {node} or newer" in text and "downgrade" in text
        assert "k3s-server runs" not in text and "nothing was changed" in text


def test_the_downgrade_fix_names_the_newest_release_any_node_runs() -> None:
    with pytest.raises(UsageError, match=r"Set k3s.version to v1.35.10\+k3s2 or newer"):
        versions.plan(on("v1.35.6+k3s1", "v1.35.10+k3s2", "v1.35.10+k3s1"), "v1.35.5+k3s1", manifest())


def test_across_a_major_version_there_is_no_plan() -> None:
    with pytest.raises(UsageError, match="across major versions"):
        versions.steps(on(*["v0.35.5+k3s1"] * 3), "v1.35.5+k3s1", manifest())


# --- support warnings -------------------------------------------------------------------


@pytest.fixture
def cfg() -> Any:
    return loader.load(LOOPBACK_CONFIG, environ={}).config


def with_version(cfg: Any, version: str) -> Any:
    return cfg.model_copy(update={"k3s": cfg.k3s.model_copy(update={"version": version})})


def test_a_supported_minor_warns_nothing_up_to_and_on_its_last_day(cfg: Any) -> None:
    old = with_version(cfg, "v1.33.5+k3s1")
    assert support_warnings(old, datetime.date(2026, 1, 1), manifest()) == []
    assert support_warnings(old, datetime.date(2026, 6, 28), manifest()) == []


def test_a_minor_past_its_end_of_support_warns_with_the_date_and_the_newest_supported_release(cfg: Any) -> None:
    old = with_version(cfg, "v1.33.5+k3s1")
    [warning] = support_warnings(old, datetime.date(2026, 6, 29), manifest())
    assert warning.path == "k3s.version"
    assert warning.message.startswith("v1.33.5+k3s1: Kubernetes 1.33 left upstream support on 2026-06-28")
    assert "move to v1.35.5+k3s1 (supported until 2027-02-28)" in warning.message
    assert "inv k3s.upgrade --yes" in warning.message
    [later] = support_warnings(old, datetime.date(2026, 11, 1), manifest({**PATH, "1.36": "v1.36.1+k3s1"}))
    assert "move to v1.36.1+k3s1 (supported until 2027-06-28)" in later.message
    [nothing] = support_warnings(old, datetime.date(2030, 1, 1), manifest())
    assert "no release in /etc/test/versions.toml [k3s.upgrade_path] is still supported" in nothing.message


def test_the_newest_supported_release_skips_minors_past_support_or_without_a_date() -> None:
    pins = manifest({**PATH, "1.37": "v1.37.0+k3s1"})  # 1.37 has no date: not known to be supported
    assert str(versions.newest_supported(pins, datetime.date(2026, 12, 7))) == "v1.35.5+k3s1"
    assert str(versions.newest_supported(pins, datetime.date(2026, 7, 1))) == "v1.35.5+k3s1"
    only_old = manifest({"1.33": "v1.33.5+k3s1", "1.34": "v1.34.9+k3s1"})
    assert str(versions.newest_supported(only_old, datetime.date(2026, 7, 1))) == "v1.34.9+k3s1"


def test_a_minor_without_an_end_of_support_date_warns_where_to_add_it(cfg: Any) -> None:
    new = with_version(cfg, "v1.37.0+k3s1")
    [warning] = support_warnings(new, datetime.date(2026, 12, 7), manifest())
    assert warning.path == "k3s.version"
    assert "Kubernetes 1.37 has no end-of-support date in /etc/test/versions.toml [kubernetes] end_of_support" in (
        warning.message
    )
    assert '"1.37" =' in warning.message


def test_the_date_defaults_to_today(cfg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class Today(datetime.date):
        @classmethod
        def today(cls) -> Today:
            return cls(2026, 7, 1)

    monkeypatch.setattr(datetime, "date", Today)
    assert support_warnings(with_version(cfg, "v1.33.5+k3s1"), manifest=manifest())
    assert not support_warnings(with_version(cfg, "v1.34.9+k3s1"), manifest=manifest())


# --- the run: refuse before acting, observe between steps -------------------------------


class Nodes:
    """Fake nodes for run.upgrade and run.install: what each runs, what the steps did, what was printed."""

    def __init__(self, cfg: Any, running: dict[str, str], dry_run: bool = False) -> None:
        self.running = dict(running)
        self.rolled: list[tuple[str, tuple[str, ...]]] = []
        self.observed = 0
        self.printed: list[str] = []
        self.executed: list[str] = []
        self.cfg, self.dry_run = cfg, dry_run
        self.executor = self

    def out(self, text: str) -> None:
        self.printed.append(text)

    def execute(self, plan: Any) -> list[Any]:
        self.executed.append(plan.title)
        return []

    def observe(self) -> dict[str, k3s.Observed]:
        self.observed += 1
        return {name: k3s.Observed(version, "c", "t") for name, version in self.running.items()}

    def roll(self, _session: Any, names: list[str], version: str, _allow_downtime: bool = False) -> None:
        self.rolled.append((version, tuple(names)))
        if not self.dry_run:
            self.running.update(dict.fromkeys(names, version))


@pytest.fixture
def nodes(cfg: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(running: dict[str, str], target: str = "v1.35.5+k3s1", dry_run: bool = False) -> Nodes:
        fake = Nodes(with_version(cfg, target), running, dry_run)
        monkeypatch.setattr(k3s_run.preflight, "check", lambda _s: {})
        monkeypatch.setattr(k3s_run, "observe", lambda _s: fake.observe())
        monkeypatch.setattr(k3s_run, "roll", fake.roll)
        monkeypatch.setattr(k3s_run, "recovery", lambda _s: k3s.recovery_plan(["k3s-worker-1"], []))
        monkeypatch.setattr(k3s_run, "load_pins", manifest)
        return fake

    return make


def test_upgrade_refuses_a_skip_before_putting_anything_back_or_rolling(nodes: Any) -> None:
    fake = nodes(on(*["v1.33.5+k3s1"] * 3))
    with pytest.raises(UsageError, match=re.escape("1.33 → v1.34.9")):
        k3s_run.upgrade(fake)
    assert fake.rolled == [] and fake.executed == []


def test_upgrade_with_walk_rolls_each_minor_and_observes_the_nodes_between_steps(nodes: Any) -> None:
    fake = nodes(on("v1.33.5+k3s1", "v1.33.5+k3s1", "v1.34.2+k3s1"))
    assert k3s_run.upgrade(fake, walk=True) is True
    assert fake.rolled == [("v1.34.9+k3s1", ("k3s-server", "k3s-worker-1")), ("v1.35.5+k3s1", THREE)]
    assert fake.observed == 3, "once before, then after each step"
    assert fake.printed == [
        "k3s upgrade in 2 steps, one minor at a time: 1.33 → v1.34.9+k3s1 → v1.35.5+k3s1",
        "step 1 of 2: k3s v1.34.9+k3s1 on k3s-server, k3s-worker-1",
        "step 2 of 2: k3s v1.35.5+k3s1 on k3s-server, k3s-worker-1, k3s-worker-2",
    ]


def test_a_step_the_nodes_do_not_reach_stops_the_walk_naming_them(nodes: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = nodes(on(*["v1.33.5+k3s1"] * 3))
    monkeypatch.setattr(k3s_run, "roll", lambda _s, names, version, _a=False: fake.rolled.append((version, names)))
    with pytest.raises(HomelabError, match=r"upgrade to v1.34.9\+k3s1 did not converge:\n  k3s-server: runs k3s v1.33"):
        k3s_run.upgrade(fake, walk=True)
    assert len(fake.rolled) == 1, "no second step after a first that did not take"


def test_upgrade_dry_run_prints_every_step_even_without_walk_and_says_a_run_needs_yes(nodes: Any) -> None:
    fake = nodes(on(*["v1.33.5+k3s1"] * 3), dry_run=True)
    assert k3s_run.upgrade(fake) is False
    assert fake.rolled == [("v1.34.9+k3s1", THREE), ("v1.35.5+k3s1", THREE)]
    assert fake.printed[0].endswith("1.33 → v1.34.9+k3s1 → v1.35.5+k3s1 (a real run needs --yes)")
    assert fake.observed == 1


def test_one_minor_is_one_roll_without_step_headers(nodes: Any) -> None:
    fake = nodes(on(*["v1.34.9+k3s1"] * 3))
    assert k3s_run.upgrade(fake) is True
    assert fake.rolled == [("v1.35.5+k3s1", THREE)] and fake.printed == []


def test_upgrade_refuses_a_downgrade_even_with_walk(nodes: Any) -> None:
    fake = nodes(on("v1.35.10+k3s1", "v1.35.5+k3s1", "v1.35.5+k3s1"))
    with pytest.raises(UsageError, match=r"k3s-server runs v1.35.10\+k3s1"):
        k3s_run.upgrade(fake, walk=True)
    assert fake.rolled == [] and fake.executed == []


def test_install_as_inv_up_runs_it_refuses_a_skip_before_changing_anything(
    nodes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = nodes(on(*["v1.33.5+k3s1"] * 3))
    monkeypatch.setattr(k3s_run, "check_nodes", lambda _s: (fake.observe(), [], Plan("tools")))
    monkeypatch.setattr(k3s_run.k3s, "cluster_token", lambda _where: (Secret("t" * 64, "test"), []))
    with pytest.raises(UsageError, match=re.escape("Run inv k3s.upgrade --yes")):
        k3s_run.install(fake)
    assert fake.rolled == [] and fake.executed == []


def test_config_validate_warns_about_an_unsupported_minor_and_exits_0(tmp_path: Path) -> None:
    """The CLI, with its own versions.toml: 1.33 long out of support, 1.35 supported for centuries."""
    from helpers import REPO, run_cli

    text = re.sub(
        r"(?m)^end_of_support = .*$",
        'end_of_support = { "1.33" = 2000-01-01, "1.34" = 2000-06-01, "1.35" = 2999-12-31 }',
        (REPO / "versions.toml").read_text(),
    )
    versions_copy = tmp_path / "versions.toml"
    versions_copy.write_text(text)
    env = {"HOMELAB_CONFIG": str(LOOPBACK_CONFIG), "HOMELAB_VERSIONS": str(versions_copy)}
    old = run_cli(["config.validate"], {**env, "HOMELAB__K3S__VERSION": "v1.33.5+k3s1"})
    assert old.code == 0, old.output
    assert "warning: k3s.version: v1.33.5+k3s1: Kubernetes 1.33 left upstream support on 2000-01-01" in old.stdout
    assert f"move to {load_pins().k3s_upgrade_path['1.35']} (supported until 2999-12-31)" in old.stdout
    assert "config OK" in old.stdout
    unknown = run_cli(["config.validate"], {**env, "HOMELAB__K3S__VERSION": "v1.36.1+k3s1"})
    assert unknown.code == 0 and "Kubernetes 1.36 has no end-of-support date" in unknown.stdout, unknown.output
    current = run_cli(["config.validate"], {**env, "HOMELAB__K3S__VERSION": "v1.35.5+k3s1"})
    assert current.code == 0 and "k3s.version" not in current.stdout, current.output
