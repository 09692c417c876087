"""Private by default: who reaches each hostname, and what may not be published through the tunnel.

An app is served to the home LAN through the gateway unless ``routed: false``; only
``public: true`` adds it to the tunnel. Publishing an image whose contract lets the
first visitor take it over, or that serves video or bulk files (Cloudflare's terms),
is refused at ``apps.<name>.public`` unless the closing setting is set or the owner
accepts the risk in ``apps.<name>.accept_risks``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_config import headers, materialise
from test_config_checks_rules import problems_at

from helpers import FAKES, REPO, loopback_data, run_cli
from homelab.apps import contracts, exposure
from homelab.config import loader
from homelab.config.schema import HomelabConfig
from homelab.gitops import platform, tree

BASE = loopback_data()
DOMAIN = "home.test"
ROUTES = {"Ingress", "HTTPRoute"}  # the edge's route for an app, whichever the edge renders
EDGE_ALLOWS = {"allow-ingress-controller", "allow-gateway"}  # the NetworkPolicy that lets the edge in


def validated(change: Any = None) -> HomelabConfig:
    data = copy.deepcopy(BASE)
    if change:
        change(data)
    return loader.validate(data)


def app(data: dict[str, Any], name: str, **values: Any) -> None:
    data["apps"][name].update(values)


def tunnel_hosts(cfg: HomelabConfig) -> set[str]:
    config_map = next(o for o in platform.cloudflared(cfg) if o["kind"] == "ConfigMap")
    rules = yaml.safe_load(config_map["data"]["config.yaml"])["ingress"]
    return {r["hostname"] for r in rules if "hostname" in r}


def test_the_reference_config_publishes_vaultwarden_alone_and_keeps_the_rest_on_the_lan() -> None:
    cfg = validated()
    assert exposure.public_hostnames(cfg) == {f"vault.{DOMAIN}": "apps.vaultwarden.hostname"}
    lan = exposure.lan_only_hostnames(cfg)
    assert set(lan) == {f"{h}.{DOMAIN}" for h in ("home", "ha", "plex", "torrent", "files", "chat", "grafana")}
    assert lan[f"grafana.{DOMAIN}"] == "monitoring.grafana_hostname"
    assert tunnel_hosts(cfg) == {f"vault.{DOMAIN}"}
    assert exposure.summary(cfg) == [
        f"public through tunnel homelab: vault.{DOMAIN}",
        "LAN only: "
        + ", ".join(f"{h}.{DOMAIN}" for h in ("chat", "files", "grafana", "ha", "home", "plex", "torrent")),
    ]


def test_an_app_is_private_unless_it_says_public() -> None:
    cfg = validated(
        lambda d: d["apps"].update(notes={"image": "registry.home.arpa/notes:1", "port": 80, "hostname": "n"})
    )
    assert cfg.apps["notes"].public is False
    assert exposure.audience(cfg)[f"n.{DOMAIN}"] == "lan"
    assert f"n.{DOMAIN}" not in tunnel_hosts(cfg)


def test_a_lan_only_app_keeps_its_route_and_the_gateways_allow() -> None:
    """Private is not unreachable: the LAN reaches it through the gateway, only the tunnel leaves it out."""
    cfg = validated()
    rendered = tree.render(cfg)
    objects = rendered.files["apps/plex/app.yaml"]
    assert not cfg.apps["plex"].public
    assert [o for o in objects if o["kind"] in ROUTES], "the LAN route"
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "NetworkPolicy"} & EDGE_ALLOWS


def test_routed_false_gives_no_route_nor_hostname_anywhere() -> None:
    cfg = validated(lambda d: app(d, "homepage", routed=False))
    objects = tree.render(cfg).files["apps/homepage/app.yaml"]
    assert not [o for o in objects if o["kind"] in ROUTES]
    assert not {o["metadata"]["name"] for o in objects} & EDGE_ALLOWS
    assert f"home.{DOMAIN}" not in exposure.routed_hostnames(cfg)


def test_grafana_is_public_only_when_asked_and_nothing_is_public_without_the_tunnel() -> None:
    asked = validated(lambda d: d["monitoring"].update(grafana_public=True))
    assert asked.monitoring.grafana_public and f"grafana.{DOMAIN}" in tunnel_hosts(asked)
    assert exposure.audience(asked)[f"grafana.{DOMAIN}"] == "public"
    off = validated(lambda d: d["cloudflare"].update(tunnel_enabled=False))
    assert exposure.public_hostnames(off) == {}
    assert exposure.summary(off)[0] == "public (tunnel off): nothing"
    assert f"vault.{DOMAIN}" in exposure.lan_only_hostnames(off)


def test_platform_public_hostnames_is_the_exposure_answer() -> None:
    """Callers of the old name (net.tunnel-routes, the tunnel warnings) get the same set as the tunnel's rules."""
    cfg = validated(lambda d: app(d, "homepage", public=True))
    assert platform.public_hostnames(cfg) == exposure.public_hostnames(cfg)
    assert set(platform.public_hostnames(cfg)) == tunnel_hosts(cfg) == {f"vault.{DOMAIN}", f"home.{DOMAIN}"}


def env_of(cfg: HomelabConfig, name: str) -> dict[str, str]:
    [deployment] = [o for o in tree.render(cfg).files[f"apps/{name}/app.yaml"] if o["kind"] == "Deployment"]
    return {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}


def test_vaultwarden_is_told_its_https_address() -> None:
    assert env_of(validated(), "vaultwarden")["DOMAIN"] == f"https://vault.{DOMAIN}"
    own = validated(lambda d: d["apps"]["vaultwarden"]["env"].update(DOMAIN="https://pw.example.org"))
    assert env_of(own, "vaultwarden")["DOMAIN"] == "https://pw.example.org"


VAULT_OPEN = (
    "apps.vaultwarden.public: vaultwarden/server through the tunnel lets the first visitor from the internet take it "
    "over: SIGNUPS_ALLOWED defaults to true: anyone who reaches it can register an account and store data "
    f"({contracts.CONTRACTS['vaultwarden/server'].takeover.source}); set SIGNUPS_ALLOWED: 'false' in "  # type: ignore[union-attr]
    "apps.vaultwarden.env, keep it on the LAN with public: false (create your account from the LAN first, or invite "
    "users from /admin (ADMIN_TOKEN)), or accept the risk with apps.vaultwarden.accept_risks: [first-visitor]"
)


def test_a_public_vaultwarden_with_signups_open_is_refused_naming_the_setting_and_the_key() -> None:
    assert problems_at("apps.vaultwarden", lambda d: d["apps"]["vaultwarden"]["env"].pop("SIGNUPS_ALLOWED")) == [
        VAULT_OPEN
    ]
    opened = problems_at("apps.vaultwarden", lambda d: d["apps"]["vaultwarden"]["env"].update(SIGNUPS_ALLOWED="true"))
    assert opened == [VAULT_OPEN]


@pytest.mark.parametrize("value", ["false", "False", " FALSE "])
def test_the_closing_setting_is_read_as_the_image_reads_it(value: str) -> None:
    assert (
        problems_at("apps.vaultwarden", lambda d: d["apps"]["vaultwarden"]["env"].update(SIGNUPS_ALLOWED=value)) == []
    )


def test_an_acknowledged_first_visitor_risk_passes() -> None:
    def accept(d: dict[str, Any]) -> None:
        d["apps"]["vaultwarden"]["env"].pop("SIGNUPS_ALLOWED")
        d["apps"]["vaultwarden"]["accept_risks"] = ["first-visitor"]

    assert problems_at("apps.vaultwarden", accept) == []


def test_a_public_open_webui_needs_signups_closed_or_an_acknowledgement() -> None:
    [problem] = problems_at("apps.open-webui", lambda d: app(d, "open-webui", public=True))
    assert problem.startswith("apps.open-webui.public: ghcr.io/open-webui/open-webui through the tunnel lets the first")
    assert "the first account to sign up on an empty database becomes its admin" in problem
    assert "set ENABLE_SIGNUP: 'false' in apps.open-webui.env" in problem
    assert problem.endswith("apps.open-webui.accept_risks: [first-visitor]")
    closed = problems_at("apps.open-webui", lambda d: app(d, "open-webui", public=True, env={"ENABLE_SIGNUP": "false"}))
    assert closed == []


def test_home_assistant_has_no_closing_setting_only_onboarding_on_the_lan_then_an_acknowledgement() -> None:
    [problem] = problems_at("apps.home-assistant", lambda d: app(d, "home-assistant", public=True))
    assert "onboarding is finished" in problem and "home-assistant/core" in problem
    assert " set " not in problem, "no setting closes it; the message must not invent one"
    assert "finish onboarding from the LAN first (public: false)" in problem
    accepted = problems_at(
        "apps.home-assistant", lambda d: app(d, "home-assistant", public=True, accept_risks=["first-visitor"])
    )
    assert accepted == []


@pytest.mark.parametrize(
    ("name", "what"), [("plex", "video"), ("qbittorrent", "downloaded files"), ("filebrowser", "whole files")]
)
def test_a_public_video_or_bulk_app_is_refused_citing_cloudflares_terms(name: str, what: str) -> None:
    [problem] = problems_at(f"apps.{name}", lambda d: app(d, name, public=True))
    assert problem.startswith(f"apps.{name}.public: ")
    assert what in problem and contracts.CLOUDFLARE_TERMS in problem
    assert problem.endswith(
        f"keep it on the LAN with public: false, or accept the risk with apps.{name}.accept_risks: [bulk-media]"
    )
    assert problems_at(f"apps.{name}", lambda d: app(d, name, public=True, accept_risks=["bulk-media"])) == []


def test_an_accepted_risk_the_image_does_not_have_is_named() -> None:
    assert problems_at("apps.plex", lambda d: app(d, "plex", accept_risks=["first-visitor"])) == [
        "apps.plex.accept_risks: lscr.io/linuxserver/plex has no first-visitor risk to accept; remove 'first-visitor'"
    ]


def test_an_unknown_risk_is_refused_by_its_kind() -> None:
    [problem] = problems_at("apps.plex", lambda d: app(d, "plex", accept_risks=["everything"]))
    assert problem.startswith("apps.plex.accept_risks[0]: ")
    assert "first-visitor" in problem and "bulk-media" in problem


def test_public_without_a_route_is_refused() -> None:
    assert problems_at("apps.homepage", lambda d: app(d, "homepage", public=True, routed=False)) == [
        "apps.homepage.routed: false leaves nothing to publish: set routed: true or public: false"
    ]


def test_an_app_kept_off_is_not_judged_until_turned_on() -> None:
    assert problems_at("apps.plex", lambda d: app(d, "plex", public=True, enabled=False)) == []


def test_images_without_a_contract_may_be_published() -> None:
    def mine(d: dict[str, Any]) -> None:
        d["apps"]["notes"] = {"image": "registry.home.arpa/notes:1", "port": 80, "hostname": "n", "public": True}

    assert problems_at("apps.notes", mine) == []


PUBLISHING_CORPUS = sorted(
    p for p in (REPO / "tests" / "configs" / "bad").glob("*.yaml") if p.stem.startswith(("public_", "accept_risks_"))
)


@pytest.mark.parametrize("bad", PUBLISHING_CORPUS, ids=[p.stem for p in PUBLISHING_CORPUS])
def test_inv_up_refuses_each_publishing_risk_with_exit_2_and_runs_nothing(bad: Path, tmp_path: Path) -> None:
    """Through the real CLI: exit 2, the key and its fix on stderr, no tool called, no state written."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("limactl", "terraform", "kubectl", "kubeseal", "cloudflared", "ssh"):
        (bin_dir / tool).symlink_to(FAKES / "recorder")
    record, state = tmp_path / "record.jsonl", tmp_path / "state"
    env = {
        "HOMELAB_CONFIG": str(materialise(bad, tmp_path)),
        "HOMELAB__STATE_DIR": str(state),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_RECORD": str(record),
    }
    result = run_cli(["up", "--dry-run"], env)
    assert result.code == 2, result.output
    wanted = headers(bad)
    assert f"config error: {wanted['expect'][0]}: " in result.stderr, result.stderr
    for text in wanted["shows"]:
        assert text in result.stderr, (text, result.stderr)
    assert not record.exists() and not state.exists()


def test_the_doctor_lists_what_is_public_and_what_only_the_lan_reaches() -> None:
    from types import SimpleNamespace

    from homelab.root import doctor

    checks = doctor.check_exposure(SimpleNamespace(cfg=validated()))
    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("public", "ok", f"through tunnel homelab: vault.{DOMAIN}"),
        (
            "lan only",
            "ok",
            ", ".join(f"{h}.{DOMAIN}" for h in ("chat", "files", "grafana", "ha", "home", "plex", "torrent")),
        ),
    ]
    nothing = doctor.check_exposure(SimpleNamespace(cfg=validated(lambda d: app(d, "vaultwarden", public=False))))
    assert nothing[0].detail == "nothing (through tunnel homelab); every app is LAN only"


def test_the_doctor_keeps_each_accepted_risk_in_sight() -> None:
    from types import SimpleNamespace

    from homelab.root import doctor

    def accept(d: dict[str, Any]) -> None:
        app(d, "plex", public=True, accept_risks=["bulk-media"])
        app(d, "open-webui", public=True, accept_risks=["first-visitor"])

    checks = doctor.check_exposure(SimpleNamespace(cfg=validated(accept)))
    warned = {(c.name, c.detail.split(":")[0], c.fix) for c in checks if c.status == "warn"}
    assert warned == {
        (
            "open-webui public",
            "first-visitor risk accepted",
            "finish its setup before anyone else can, or set apps.open-webui.public: false",
        ),
        ("plex public", "bulk-media risk accepted", "set apps.plex.public: false and reach it from the LAN"),
    }


def test_the_sandbox_dry_run_says_who_reaches_each_hostname() -> None:
    from types import SimpleNamespace

    from invoke import Context

    from homelab.core.executor import Executor
    from homelab.gitops.tasks import show_exposure

    lines: list[str] = []
    show_exposure(SimpleNamespace(cfg=validated(), executor=Executor(Context(), dry_run=True, out=lines.append)))
    shown = "\n".join(lines)
    assert "who reaches each hostname" in shown
    assert f"public through tunnel homelab: vault.{DOMAIN}" in shown
    assert f"LAN only: chat.{DOMAIN}, files.{DOMAIN}, grafana.{DOMAIN}" in shown


def test_apps_list_says_who_reaches_each_app_and_a_lan_only_app_has_a_url(tmp_path: Path) -> None:
    config_file = tmp_path / "homelab.yaml"
    config_file.write_text(yaml.safe_dump({**BASE, "state_dir": str(tmp_path / "state")}))
    env = {"HOMELAB_CONFIG": str(config_file)}
    listed = run_cli(["apps.list"], env)
    assert listed.code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert f"vault.{DOMAIN}" in rows["vaultwarden"] and " internet " in rows["vaultwarden"]
    assert f"plex.{DOMAIN}" in rows["plex"] and " LAN " in rows["plex"]
    assert "(in-cluster only)" in rows["telegram-bot"]
    url = run_cli(["apps.url", "--app", "plex"], env)
    assert (url.code, url.stdout) == (0, f"https://plex.{DOMAIN}\n")
