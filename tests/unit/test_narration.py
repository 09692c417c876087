"""``inv up --dry-run`` on a cluster target says what the real homelab will get, from the same render."""

from __future__ import annotations

from helpers import REPO
from homelab.config import loader
from homelab.core import pins
from homelab.gitops import narrate, tree


def test_the_narration_names_every_application_in_wave_order_and_every_app() -> None:
    cfg = loader.load(REPO / "config" / "homelab.yaml", environ={}).config
    lines = [a.display() for a in narrate.narration(cfg).actions]
    waves = [line for line in lines if "] wave " in line]
    assert len(waves) == len(tree.applications(tree.render(cfg)))
    numbers = [int(line.split("] wave ")[1].split()[0]) for line in waves]
    assert numbers == sorted(numbers)
    chart = pins.load().chart("sealed-secrets").version
    assert any(f"sealed-secrets -> kube-system: Helm chart sealed-secrets {chart}" in line for line in waves)
    for name, app in cfg.deployed_apps.items():
        assert any(f"app {name}: https://{app.hostname}.{cfg.domain}, {app.image}" in line for line in lines), name
    assert any("app telegram-bot: off (enabled: false)" in line for line in lines)
    assert any(line.endswith("public through tunnel homelab: vault.home.example.com") for line in lines)
    assert any(
        line.endswith(
            "LAN only: chat.home.example.com, files.home.example.com, grafana.home.example.com, "
            "ha.home.example.com, home.home.example.com, plex.home.example.com, torrent.home.example.com"
        )
        for line in lines
    )
    assert any(
        line.endswith(
            "app vaultwarden: https://vault.home.example.com, vaultwarden/server:1.34.3, "
            "1 replica(s), 2GiB volume; public: the internet through the tunnel, and the LAN"
        )
        for line in lines
    )
    assert any(line.endswith("; LAN only") and "app plex: https://plex.home.example.com" in line for line in lines)
    assert any("vaultwarden: critical with 1 replica: no PDB" in line for line in lines)
