"""Each app's requests and limits come from its contract, the owner's values win, and the total must fit the nodes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, loopback_data
from homelab.apps import contracts, render, sizing
from homelab.config import loader
from homelab.config.kinds import size_mib
from homelab.config.loader import Layer, merge_layers
from homelab.core.errors import ConfigError

BASE = loopback_data()


def with_change(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def problems_of(data: dict[str, Any]) -> list[str]:
    try:
        loader.validate(data)
    except ConfigError as err:
        return [str(p) for p in err.problems]
    return []


def container_resources(data: dict[str, Any], name: str) -> dict[str, Any]:
    cfg = loader.validate(data)
    spec = render.container(name, cfg.apps[name], cfg)
    return spec["resources"]  # type: ignore[no-any-return]


def test_every_catalog_contract_sizes_its_app_with_a_source() -> None:
    for image, contract in contracts.CONTRACTS.items():
        figures = contract.resources
        assert figures is not contracts.DEFAULT_RESOURCES, image
        assert "https://" in figures.source, image
        assert size_mib(figures.memory_limit) >= size_mib(figures.memory_request) > size_mib("64MiB") - 1, image


def test_an_unset_request_comes_from_the_contract_and_no_cpu_limit_is_rendered() -> None:
    resources = container_resources(BASE, "open-webui")
    assert resources["requests"] == {"cpu": "200m", "memory": "1Gi"}
    assert resources["limits"] == {"memory": "2Gi"}  # the reference config's own memory_limit, equal to the contract


def test_the_owners_values_beat_the_contract() -> None:
    data = with_change(
        lambda d: d["apps"]["open-webui"].update(memory_request="768MiB", cpu_request="1", cpu_limit="2")
    )
    resources = container_resources(data, "open-webui")
    assert resources["requests"] == {"cpu": "1", "memory": "768Mi"}
    assert resources["limits"] == {"cpu": "2", "memory": "2Gi"}


def test_an_owner_who_raises_only_the_request_gets_a_limit_to_match() -> None:
    data = with_change(lambda d: d["apps"]["vaultwarden"].update(memory_request="1GiB"))
    assert container_resources(data, "vaultwarden")["limits"] == {"memory": "1Gi"}  # the contract's is 256MiB


def test_an_image_without_a_contract_gets_the_default() -> None:
    data = with_change(lambda d: d["apps"]["telegram-bot"].update(image="registry.home.arpa/bot:1.0", enabled=True))
    resources = container_resources(data, "telegram-bot")
    assert resources == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}


def test_a_limit_below_the_contracts_request_names_the_figure_and_the_fix() -> None:
    data = with_change(lambda d: d["apps"]["open-webui"].update(memory_limit="512MiB"))
    [problem] = problems_of(data)
    assert problem.startswith("apps.open-webui.memory_request: '1GiB' (its image's figure: https://github.com/open-")
    assert problem.endswith(
        "is above memory_limit '512MiB': raise memory_limit, or set memory_request if yours uses less"
    )


def reference_with(overlay: Path | None) -> dict[str, Any]:
    reference = yaml.safe_load((REPO / "config" / "homelab.yaml").read_text())
    layers = [Layer("reference", reference)]
    if overlay:
        layers.append(Layer("overlay", yaml.safe_load(overlay.read_text())))
    merged, _ = merge_layers(layers)
    return merged


@pytest.mark.parametrize("overlay", [None, REPO / "config" / "examples" / "mac-16gb.local.yaml"])
def test_the_reference_configs_fit_their_nodes(overlay: Path | None) -> None:
    cfg = loader.validate(reference_with(overlay))
    assert sizing.problems(cfg) == []
    line = sizing.summary(cfg)
    assert line.startswith("memory requests: apps 2688MiB + platform ")  # the catalog's seven apps, homepage twice


def test_the_allocatable_memory_is_the_node_less_the_k3s_reserve() -> None:
    cfg = loader.validate(reference_with(REPO / "config" / "examples" / "mac-16gb.local.yaml"))
    assert [sizing.allocatable_mib(node) for node in cfg.nodes] == [4096 - 1536, 3072 - 512, 3072 - 512]


def test_a_nodes_own_reserve_replaces_its_roles() -> None:
    data = with_change(lambda d: d["nodes"][0].update(reserved_memory="1GiB"))
    cfg = loader.validate(data)
    assert [sizing.allocatable_mib(node) for node in cfg.nodes] == [6144 - 1024, 8192 - 512, 8192 - 512]


def test_requests_beyond_the_nodes_are_refused_naming_the_largest_app() -> None:
    data = reference_with(REPO / "config" / "examples" / "mac-16gb.local.yaml")
    for node in data["nodes"][1:]:
        node["memory"] = "1GiB"
    [problem] = problems_of(data)
    assert problem.startswith("apps.open-webui.memory_request: the apps ask for 2688MiB and the platform for ")
    assert "and the nodes leave pods 3584MiB" in problem
    assert "lower apps.open-webui.memory_request (1GiB, the largest), set enabled: false on an app" in problem


def test_one_pod_larger_than_every_node_is_refused_alone() -> None:
    data = with_change(lambda d: d["apps"]["plex"].update(memory_request="8GiB", memory_limit="8GiB"))
    assert problems_of(data) == [
        "apps.plex.memory_request: 8GiB does not fit on any node: the largest leaves pods 7680MiB (its memory less "
        "1536MiB on a server, 512MiB on an agent, for K3S and the system, unless its reserved_memory says otherwise); "
        "lower it or give a node more memory"
    ]


def test_the_platform_counts_replicas_and_only_what_is_enabled() -> None:
    cfg = loader.validate(BASE)
    demands = {d.name: d.mib for d in sizing.platform_demands(cfg)}
    assert demands["cloudflared"] == 2 * 64  # two replicas of 64Mi
    assert demands["kube-prometheus-stack"] == 1024 + 128 + 64  # Prometheus, Grafana, Alertmanager
    quiet = loader.validate(with_change(lambda d: d["monitoring"].update(enabled=False)))
    assert "kube-prometheus-stack" not in {d.name for d in sizing.platform_demands(quiet)}


def test_a_per_node_agent_counts_once_per_node() -> None:
    values = {"nodeAgent": {"resources": {"requests": {"memory": "256Mi"}}}}
    assert sizing.memory_requests(values, nodes=3) == 768
    daemon_set = {
        "kind": "DaemonSet",
        "spec": {"template": {"spec": {"containers": [{"resources": values["nodeAgent"]["resources"]}]}}},
    }
    assert sizing.memory_requests(daemon_set, nodes=3) == 768


@pytest.mark.parametrize(
    ("quantity", "mib"),
    [("128Mi", 128), ("1Gi", 1024), ("512Ki", 1), ("500M", 477), ("134217728", 128), ("1.5Gi", 1536), ("0", 0)],
)
def test_kubernetes_quantities_in_mib(quantity: str, mib: int) -> None:
    assert sizing.quantity_mib(quantity) == mib


def test_config_validate_says_what_the_requests_leave() -> None:
    from helpers import run_cli

    result = run_cli(["config.validate"], {"HOMELAB_CONFIG": str(REPO / "config" / "homelab.yaml")})
    assert result.code == 0, result.output
    assert "memory requests: apps 2688MiB + platform 1536MiB of 15872MiB the nodes leave pods" in result.stdout
