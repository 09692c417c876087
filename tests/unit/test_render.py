"""Rendering choices that must hold for any catalog."""

from __future__ import annotations

import pytest
import yaml

from helpers import loopback_data
from homelab.apps import render as apps
from homelab.config.loader import validate
from homelab.gitops import platform, tree


@pytest.fixture
def cfg():
    return validate(loopback_data())


def test_pdb_fits_the_replica_count(cfg) -> None:
    app = cfg.apps["homepage"]
    pdb, note = apps.disruption_budget("homepage", app.model_copy(update={"replicas": 3}))
    assert pdb["spec"]["minAvailable"] == 2 and "2 of 3" in note
    pdb, note = apps.disruption_budget("vault", app.model_copy(update={"replicas": 1}))
    assert pdb["metadata"]["labels"][apps.SINGLE_REPLICA] == "true" and "--allow-downtime" in note
    assert apps.disruption_budget("x", app.model_copy(update={"critical": False})) == (None, "")


def test_every_app_gets_hardening(cfg) -> None:
    rendered = tree.render(cfg)
    for name in cfg.apps:
        kinds = [o["kind"] for o in rendered.files[f"apps/{name}/app.yaml"]]
        assert {"Namespace", "Deployment", "Service", "Ingress", "NetworkPolicy"} <= set(kinds), name
        assert ("PersistentVolumeClaim" in kinds) == bool(cfg.apps[name].storage), name
        assert ("PodDisruptionBudget" in kinds) == cfg.apps[name].critical, name


def test_tunnel_routes_every_app_and_ends_with_404(cfg) -> None:
    config_map = next(o for o in platform.cloudflared(cfg) if o["kind"] == "ConfigMap")
    rules = yaml.safe_load(config_map["data"]["config.yaml"])["ingress"]
    assert {r["hostname"] for r in rules[:-1]} == {f"{a.hostname}.{cfg.domain}" for a in cfg.apps.values()}
    assert rules[-1] == {"service": "http_status:404"}


def test_charts_are_pinned_and_synced_automatically(cfg) -> None:
    for component, (chart, _) in platform.platform(cfg).items():
        if chart is None:
            continue
        assert chart["spec"]["source"]["targetRevision"], component
        assert chart["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_rendered_text_has_no_timestamps_and_is_stable(cfg) -> None:
    first = tree.render(cfg)
    text = "".join(first.text(p) for p in sorted(first.files))
    assert text == "".join(tree.render(cfg).text(p) for p in sorted(first.files))
    assert "creationTimestamp" not in text
