"""``inv up --target lima --dry-run`` on the reference config, as a newcomer reads it before the first run.

No key material beyond a fresh SSH key, no secrets set, no cluster, no VMs: the dry
run must still read as the whole homelab, layer by layer, and change nothing. It runs
in an empty network namespace (the reference config names 192.168.105.x).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import REPO, run_cli
from homelab.core.paths import cache_dir

pytestmark = pytest.mark.integration


def test_the_reference_dry_run_narrates_every_layer_and_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "homelab_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    state = tmp_path / "state"
    env = {
        "HOME": str(home),
        "HOMELAB_CACHE_DIR": str(cache_dir()),  # the built binaries (limactl, terraform's helpers) stay where they are
        "HOMELAB_CONFIG": str(REPO / "config" / "homelab.yaml"),
        "HOMELAB__STATE_DIR": str(state),
    }
    done = run_cli(["up", "--target", "lima", "--dry-run"], env, timeout=600, isolated_network=True)
    assert done.code == 0, done.output
    out = done.stdout
    for layer in ("[1/4] vm", "[2/4] k3s", "[3/4] gitops", "[4/4] backup"):
        assert layer in out, layer
    assert "k3s-server (server) at 192.168.105.10: 4 CPUs, 4GiB memory, 60GiB disk" in out
    # No VM exists yet: the note says why the nodes cannot be checked, naming a node, not only a header.
    assert "nodes cannot be checked yet (k3s-server: " in out and "; 2 more); planning a fresh install" in out
    assert "plan: what Argo CD will deploy from https://github.com/example/homelab.git" in out
    assert "app vaultwarden: https://vault.home.example.com, vaultwarden/server:1.34.3" in out
    # Private by default: the tunnel carries only what the owner marked public; Grafana's login is generated, once.
    assert "public through tunnel homelab: vault.home.example.com" in out
    assert "LAN only: chat.home.example.com, files.home.example.com, grafana.home.example.com" in out
    assert f"write {state / 'grafana-admin-password'} (secret, mode 0600" in out  # planned, not written (below)
    assert "not sealed, its reference is not found: vaultwarden/vaultwarden-secrets" in out
    assert "the real run stops here: gitops.repo_url is the example" in out
    assert out.rstrip().endswith("dry run: nothing was changed")
    assert not state.exists() or not any(state.rglob("*")), sorted(state.rglob("*"))[:5]
