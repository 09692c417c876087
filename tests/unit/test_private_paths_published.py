"""Private paths never sit where Git takes them: inside the published tree or among tracked files.

Driven through the CLI against a checkout of its own (HOMELAB_ROOT), made with real git.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import LOOPBACK_CONFIG, run_cli
from homelab.core.errors import EXIT_USAGE


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "k8s").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "config" / "homelab.yaml").write_text(LOOPBACK_CONFIG.read_text())
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def validate(root: Path, **overrides: str) -> tuple[int, str]:
    env = {"HOMELAB_ROOT": str(root), "HOMELAB_CONFIG": str(root / "config" / "homelab.yaml")}
    env |= {f"HOMELAB__{key.upper()}": value for key, value in overrides.items()}
    result = run_cli(["config.validate"], env)
    assert "Traceback" not in result.output
    return result.code, result.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("state_dir", "k8s/.homelab"),
        ("secrets__plaintext_file", "k8s/secrets.local.yaml"),
        ("backup__repository", "{root}/k8s/restic"),
        ("ssh__private_key", "k8s/../k8s/id_ed25519"),
    ],
)
def test_a_private_path_inside_the_published_tree_is_refused_naming_the_key(
    checkout: Path, key: str, value: str
) -> None:
    code, stderr = validate(checkout, **{key: value.format(root=checkout)})
    assert code == EXIT_USAGE
    assert f"{key.replace('__', '.')}: " in stderr and "inside k8s/, the tree pushed to Git" in stderr


def test_a_tracked_plaintext_secrets_file_is_refused_until_untracked(checkout: Path) -> None:
    plaintext = checkout / "config" / "secrets.local.yaml"
    plaintext.write_text("a: b\n")
    plaintext.chmod(0o600)
    assert validate(checkout)[0] == 0, "an untracked one is where it belongs"
    subprocess.run(["git", "-C", str(checkout), "add", "config/secrets.local.yaml"], check=True)
    code, stderr = validate(checkout)
    assert code == EXIT_USAGE
    assert "secrets.plaintext_file: " in stderr and "tracked by git" in stderr and "git rm --cached" in stderr
    subprocess.run(["git", "-C", str(checkout), "rm", "-q", "--cached", "config/secrets.local.yaml"], check=True)
    assert validate(checkout)[0] == 0


def test_a_state_dir_holding_tracked_files_is_refused(checkout: Path) -> None:
    state = checkout / ".homelab"
    state.mkdir()
    (state / "kubeconfig").write_text("x")
    subprocess.run(["git", "-C", str(checkout), "add", "-f", ".homelab/kubeconfig"], check=True)
    code, stderr = validate(checkout, state_dir=".homelab")
    assert code == EXIT_USAGE and "state_dir: " in stderr and "tracked by git" in stderr
