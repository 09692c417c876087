"""secrets.*: every write is a plan action, and under --dry-run nothing changes.

Against the sandbox API server (the controller key lives there) and the real kubeseal.
The certificate is pinned in the state directory (no ``secrets.cert_file``).
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from backup_support import BackupEnv, Receiver, make_backup_env, sealing_key_secret

from helpers import CliResult, run_cli
from homelab.core.kube import Kube
from homelab.core.session import Session
from homelab.sandbox import cluster as sandbox

pytestmark = pytest.mark.integration
KEY_NAME = "sealed-secrets-key-secrets-test"
OLD, NEW = "old-value-3c1f9a", "rotated-value-8d2e47"


@pytest.fixture
def controller_cert(kube: Kube) -> Iterator[str]:
    secret, cert = sealing_key_secret(KEY_NAME)
    kube.apply([secret])
    yield cert
    kube.delete("v1", "Secret", KEY_NAME, "kube-system")


@pytest.fixture
def bk(tmp_path: Path, sandbox_session: Session, receiver: Receiver) -> BackupEnv:
    receiver.requests.clear()
    kubeconfig = sandbox.paths_for(sandbox_session.cfg, sandbox_session.state_dir).kubeconfig
    env = make_backup_env(tmp_path, kubeconfig, receiver)
    del env.data["secrets"]["cert_file"]  # pinned in the state directory
    env.save()
    plaintext = tmp_path / "secrets.local.yaml"
    plaintext.write_text(yaml.safe_dump({"secrets": [{"name": "api", "namespace": "apps", "data": {"token": OLD}}]}))
    plaintext.chmod(0o600)
    return env


def picture(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (or the file itself): mode and content hash."""
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root] if root.exists() else []:
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path)] = f"{stat.S_IMODE(path.stat().st_mode):o}:{digest}"
    return found


def cli(bk: BackupEnv, *args: str) -> CliResult:
    return run_cli(list(args), {**bk.env(), "NEW_TOKEN": NEW})


def cert(bk: BackupEnv) -> Path:
    return bk.state / "sealed-secrets-cert.pem"


def test_fetch_cert_dry_run_writes_nothing_then_pins_in_the_state_dir_once(bk: BackupEnv, controller_cert: str) -> None:
    dry = cli(bk, "secrets.fetch-cert", "--dry-run")
    assert dry.code == 0, dry.output
    assert f"[local] write {cert(bk)} (mode 0644" in dry.stdout
    assert not cert(bk).exists() and picture(bk.state) == {}

    pinned = cli(bk, "secrets.fetch-cert")
    assert pinned.code == 0 and "pinned; converged" in pinned.stdout, pinned.output
    assert cert(bk).read_text() == controller_cert
    again = cli(bk, "secrets.fetch-cert")
    assert again.code == 0 and "nothing to do" in again.stdout


def test_seal_and_rotate_dry_runs_change_no_file_and_show_every_write(bk: BackupEnv, controller_cert: str) -> None:
    assert cli(bk, "secrets.fetch-cert").code == 0
    sealed = bk.tmp / "sealed" / "apps-api.yaml"
    plaintext = bk.tmp / "secrets.local.yaml"

    dry_seal = cli(bk, "secrets.seal", "--dry-run")
    assert dry_seal.code == 0, dry_seal.output
    assert f"[local] write {sealed} (mode 0644" in dry_seal.stdout
    assert not sealed.parent.exists()

    assert cli(bk, "secrets.seal").code == 0
    before = picture(bk.tmp / "sealed", plaintext, bk.state)
    dry_rotate = cli(bk, "secrets.rotate", "--name", "api", "--key", "token", "--value-env", "NEW_TOKEN", "--dry-run")
    assert dry_rotate.code == 0, dry_rotate.output
    assert f"[local] write {plaintext} (secret, mode 0600" in dry_rotate.stdout
    assert f"[local] write {sealed} (mode 0644" in dry_rotate.stdout
    assert picture(bk.tmp / "sealed", plaintext, bk.state) == before
    for result in (dry_seal, dry_rotate):
        assert OLD not in result.output and NEW not in result.output

    rotated = cli(bk, "secrets.rotate", "--name", "api", "--key", "token", "--value-env", "NEW_TOKEN")
    assert rotated.code == 0, rotated.output
    assert NEW not in rotated.output
    assert yaml.safe_load(plaintext.read_text())["secrets"][0]["data"]["token"] == NEW
    assert stat.S_IMODE(plaintext.stat().st_mode) == 0o600
    assert picture(sealed) != {k: v for k, v in before.items() if k == str(sealed)}


def test_unknown_names_exit_2_and_write_nothing(bk: BackupEnv, controller_cert: str) -> None:
    assert cli(bk, "secrets.fetch-cert").code == 0
    before = picture(bk.tmp)
    seal = cli(bk, "secrets.seal", "--name", "nope")
    rotate = cli(bk, "secrets.rotate", "--name", "nope", "--key", "token", "--value-env", "NEW_TOKEN")
    for result in (seal, rotate):
        assert result.code == 2 and "no secret named" in result.stderr, result.output
    assert picture(bk.tmp) == before


def test_backup_key_dry_run_prints_the_backup_plan_and_stores_nothing(bk: BackupEnv, controller_cert: str) -> None:
    before = picture(bk.tmp)
    dry = cli(bk, "secrets.backup-key", "--dry-run")
    assert dry.code == 0, dry.output
    assert "collect sealed-keys" in dry.stdout
    assert "restic" in dry.stdout and " backup " in dry.stdout
    assert not bk.repo.exists() and picture(bk.tmp) == before
    assert bk.receiver.requests == []  # not even the dead-man's switch heard of it
