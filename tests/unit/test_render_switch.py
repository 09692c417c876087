"""The sandbox's tree is the real homelab's but for one switch, and both carry what Argo CD needs to converge."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from homelab.config.loader import validate
from homelab.config.schema import HomelabConfig
from homelab.gitops import platform, tree

REFERENCE = Path(__file__).resolve().parents[2] / "config" / "homelab.yaml"


@pytest.fixture
def cfg() -> HomelabConfig:
    return validate(yaml.safe_load(REFERENCE.read_text()))


def test_the_switch_leaves_out_every_chart_application_and_nothing_else(cfg: HomelabConfig) -> None:
    real, sandbox = tree.render(cfg), tree.render(cfg, local_controllers=True)
    charts = {name for name, (chart, _) in platform.platform(cfg).items() if chart is not None}
    real_apps, sandbox_apps = tree.applications(real), tree.applications(sandbox)
    assert set(real_apps) - set(sandbox_apps) == charts
    assert set(sandbox_apps) == set(real_apps) - charts  # the gateway's own manifests are an Application on both
    for name, app in sandbox_apps.items():
        if name in real_apps:
            assert app == real_apps[name], name
    assert all("chart" not in app["spec"]["source"] for app in sandbox_apps.values())


def test_the_switch_changes_no_file_but_the_chart_lists_and_adds_only_the_gateway_service(cfg: HomelabConfig) -> None:
    real, sandbox = tree.render(cfg), tree.render(cfg, local_controllers=True)
    assert set(real.files) == set(sandbox.files)
    differing = {path for path in real.files if real.text(path) != sandbox.text(path)}
    charted = {f"argocd/{name}.yaml" for name, (chart, _) in platform.platform(cfg).items() if chart is not None}
    assert differing == charted | {"platform/traefik/manifests.yaml", "platform/kube-prometheus-stack/manifests.yaml"}
    grafana = [o["kind"] for o in sandbox.files["platform/kube-prometheus-stack/manifests.yaml"]]
    assert grafana == [o["kind"] for o in real.files["platform/kube-prometheus-stack/manifests.yaml"]][:-1]
    assert "HTTPRoute" not in grafana and "Grafana" in tree.switch_differences(cfg)[-1]
    added = sandbox.files["platform/traefik/manifests.yaml"][len(real.files["platform/traefik/manifests.yaml"]) :]
    assert (
        sandbox.files["platform/traefik/manifests.yaml"][: -len(added)] == real.files["platform/traefik/manifests.yaml"]
    )
    [service] = added
    assert (service["kind"], service["metadata"]["name"]) == ("Service", platform.GATEWAY_SERVICE)
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] == cfg.ingress.load_balancer_ip
    lines = tree.switch_differences(cfg)
    assert all(name in lines[0] for name in sorted(charted_name.split("/")[1][:-5] for charted_name in charted))


def test_every_application_retries_a_failed_sync(cfg: HomelabConfig) -> None:
    """Argo CD v3 gives up on a failed automated sync after 5 retries unless the policy says otherwise."""
    for name, app in tree.applications(tree.render(cfg)).items():
        retry = app["spec"]["syncPolicy"].get("retry") or {}
        assert retry.get("limit") == -1, name  # until it works
        assert retry["backoff"]["maxDuration"] == "30s", name


def test_an_application_delivers_the_sealed_secrets_directory(cfg: HomelabConfig) -> None:
    rendered = tree.render(cfg)
    sealed = tree.applications(rendered)["sealed-secrets-sealed"]
    assert sealed["spec"]["source"]["path"] == cfg.secrets.sealed_dir == "k8s/sealed"
    assert sealed["spec"]["source"]["repoURL"] == cfg.gitops.repo_url
    controller_wave = int(
        tree.applications(rendered)["sealed-secrets"]["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
    )
    assert int(sealed["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) > controller_wave
    assert "sealed/_keep.yaml" in rendered.files  # git keeps no empty directory; Argo CD fails on a missing path


def test_a_sealed_dir_outside_the_repository_gets_no_application_and_a_note(cfg: HomelabConfig) -> None:
    moved = cfg.model_copy(update={"secrets": cfg.secrets.model_copy(update={"sealed_dir": "/srv/elsewhere/sealed"})})
    rendered = tree.render(moved)
    assert "sealed-secrets-sealed" not in tree.applications(rendered)
    assert any("outside the repository" in note for note in rendered.notes)


def test_argo_cd_manages_itself_from_the_manifest_it_was_bootstrapped_from(cfg: HomelabConfig) -> None:
    """Same file, same objects: no immutable selector differs (the Helm chart's do)."""
    argocd = tree.applications(tree.render(cfg))["argocd"]
    source = argocd["spec"]["source"]
    assert "chart" not in source
    bootstrapped = cfg.gitops.install_manifest.format(version=cfg.gitops.argocd_version)
    owner_repo = source["repoURL"].removeprefix("https://github.com/").removesuffix(".git")
    read = f"https://raw.githubusercontent.com/{owner_repo}/{source['targetRevision']}/{source['path']}/"
    assert read + source["directory"]["include"] == bootstrapped
    assert "finalizers" not in argocd["metadata"]  # deleting it must not delete Argo CD and its CRDs


def test_an_install_manifest_outside_github_leaves_argo_cd_unmanaged_with_a_note(cfg: HomelabConfig) -> None:
    gitops = cfg.gitops.model_copy(update={"install_manifest": "/srv/argocd/install.yaml"})
    rendered = tree.render(cfg.model_copy(update={"gitops": gitops}))
    assert "argocd" not in tree.applications(rendered)
    assert any("does not manage itself" in note for note in rendered.notes)
