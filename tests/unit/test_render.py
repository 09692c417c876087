"""Rendering choices that must hold for any catalog."""

from __future__ import annotations

import re

import pytest
import yaml

from helpers import loopback_data
from homelab.apps import render as apps
from homelab.apps.sizing import quantity_mib
from homelab.config.loader import validate
from homelab.core import pins
from homelab.gitops import platform, tree


@pytest.fixture
def cfg():
    return validate(loopback_data())


def test_pdb_only_where_a_pod_can_be_spared(cfg) -> None:
    """A budget on one replica either protects nothing or blocks every drain of its node: none is rendered."""
    app = cfg.apps["homepage"]
    pdb, note = apps.disruption_budget("homepage", app.model_copy(update={"replicas": 3}))
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "homepage"}}}
    assert "1 of 3" in note
    pdb, note = apps.disruption_budget("vault", app.model_copy(update={"replicas": 1}))
    assert pdb is None and "no PDB" in note and apps.CRITICAL_PRIORITY in note
    assert apps.disruption_budget("x", app.model_copy(update={"critical": False})) == (None, "")


def test_critical_apps_are_scheduled_first(cfg) -> None:
    rendered = tree.render(cfg)
    [priority] = rendered.files["platform/scheduling/manifests.yaml"]
    assert priority["kind"] == "PriorityClass" and priority["metadata"]["name"] == apps.CRITICAL_PRIORITY
    for name, app in cfg.deployed_apps.items():
        [deployment] = [o for o in rendered.files[f"apps/{name}/app.yaml"] if o["kind"] == "Deployment"]
        assert deployment["spec"]["template"]["spec"].get("priorityClassName") == (
            apps.CRITICAL_PRIORITY if app.critical else None
        ), name


ROOT_APP_CAPABILITIES = {"CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER"}  # what a non_root: false app may add


def test_every_app_gets_hardening(cfg) -> None:
    rendered = tree.render(cfg)
    assert {a.non_root for a in cfg.apps.values()} == {True, False}, "the catalog has both kinds of app"
    for name, app in cfg.deployed_apps.items():
        objects = rendered.files[f"apps/{name}/app.yaml"]
        kinds = [o["kind"] for o in objects]
        assert {"Namespace", "Deployment", "Service", "NetworkPolicy"} <= set(kinds), name
        assert ("HTTPRoute" in kinds) == app.routed, name  # LAN-only apps are routed too (homelab.apps.exposure)
        assert ("PersistentVolumeClaim" in kinds) == bool(app.storage), name
        assert ("PodDisruptionBudget" in kinds) == (app.critical and app.replicas >= 2), name
        [deployment] = [o for o in objects if o["kind"] == "Deployment"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        if app.non_root:
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["securityContext"]["runAsUser"] == app.run_as_user, name
        else:
            assert "runAsNonRoot" not in pod["securityContext"], name
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and "privileged" not in security, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert set(security["capabilities"].get("add", [])) <= (set() if app.non_root else ROOT_APP_CAPABILITIES)
            resources = container["resources"]
            assert set(resources["requests"]) == {"cpu", "memory"} and "memory" in resources["limits"], name
            assert quantity_mib(resources["limits"]["memory"]) >= quantity_mib(resources["requests"]["memory"]), name
        for container in pod["containers"]:
            assert container["readinessProbe"]["tcpSocket"] == container["livenessProbe"]["tcpSocket"], name
        policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
        assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, name


def test_tunnel_routes_every_public_hostname_and_ends_with_404(cfg) -> None:
    config_map = next(o for o in platform.cloudflared(cfg) if o["kind"] == "ConfigMap")
    rules = yaml.safe_load(config_map["data"]["config.yaml"])["ingress"]
    public = {f"{a.hostname}.{cfg.domain}" for a in cfg.deployed_apps.values() if a.public}
    assert public == {f"vault.{cfg.domain}"}, "the reference config publishes Vaultwarden alone"
    assert {r["hostname"] for r in rules[:-1]} == public  # Grafana is private unless monitoring.grafana_public
    assert all(r["originRequest"]["originServerName"] == r["hostname"] for r in rules[:-1])
    assert rules[-1] == {"service": "http_status:404"}


def chart_versions(value: object) -> set[str]:
    """Every chart_version the config sets, wherever it sits."""
    if isinstance(value, dict):
        return {v for k, v in value.items() if k == "chart_version"} | {
            found for v in value.values() for found in chart_versions(v)
        }
    if isinstance(value, list):
        return {found for v in value for found in chart_versions(v)}
    return set()


def test_charts_are_pinned_and_synced_automatically(cfg) -> None:
    """Every upstream release is one exact version from the config: chart versions, and Argo CD's own tag."""
    configured = chart_versions(cfg.model_dump()) | {cfg.gitops.argocd_version}
    # ...and the Gateway API CRDs, at the version the pinned Traefik is built against (versions.toml).
    configured.add("v" + pins.load().binaries["gateway-api"].version)
    charts = [chart for chart, _ in platform.platform(cfg).values() if chart is not None]
    assert charts
    for chart in charts:
        version = chart["spec"]["source"]["targetRevision"]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", version), f"{version!r} is not one exact release"
        assert version in configured, f"{version} does not come from the config"
        assert chart["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_rendered_text_has_no_timestamps_and_is_stable(cfg) -> None:
    first = tree.render(cfg)
    text = "".join(first.text(p) for p in sorted(first.files))
    assert text == "".join(tree.render(cfg).text(p) for p in sorted(first.files))
    assert "creationTimestamp" not in text
