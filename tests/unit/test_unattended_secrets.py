"""Which secret references a scheduled backup.run could read where cron or launchd starts it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from homelab.backup import unattended
from homelab.config.schema import SecretRef
from homelab.core.errors import EXIT_USAGE, ConfigError


def config(password: SecretRef, token: SecretRef, repository: str = "/srv/restic") -> Any:
    return SimpleNamespace(
        backup=SimpleNamespace(password=password, repository=repository),
        monitoring=SimpleNamespace(telegram=SimpleNamespace(bot_token=token)),
    )


@pytest.fixture
def readable(tmp_path: Path) -> SecretRef:
    path = tmp_path / "secret"
    path.write_text("value-of-the-secret\n")
    path.chmod(0o600)
    return SecretRef(file=str(path))


def test_file_references_the_user_can_read_pass(readable: SecretRef) -> None:
    assert unattended.problems(config(readable, readable), "cron") == []
    unattended.check(config(readable, readable), "launchd")


@pytest.mark.parametrize("scheduler", ["cron", "launchd"])
def test_an_env_reference_is_refused_even_when_the_installers_shell_has_it(
    readable: SecretRef, scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456789:" + "Ab" * 17 + "c")
    [problem] = unattended.problems(config(readable, SecretRef(env="TELEGRAM_BOT_TOKEN")), scheduler)
    assert problem.path == "monitoring.telegram.bot_token"
    assert "env: TELEGRAM_BOT_TOKEN" in problem.message and scheduler in problem.message
    assert "file:" in problem.message
    assert ("keychain:" in problem.message) == (scheduler == "launchd")  # only launchd's job can read the keychain


def test_every_unreadable_secret_is_named_in_one_exit_2_error(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.write_text("x" * 20)
    loose.chmod(0o644)
    cfg = config(SecretRef(file=str(tmp_path / "missing")), SecretRef(file=str(loose)))
    with pytest.raises(ConfigError) as refused:
        unattended.check(cfg, "cron")
    assert refused.value.exit_code == EXIT_USAGE
    lines = str(refused.value).splitlines()
    assert lines[0].startswith("config error: backup.password: ") and "does not exist" in lines[0]
    assert lines[1].startswith("config error: monitoring.telegram.bot_token: ") and "chmod 600" in lines[1]


def test_a_keychain_item_is_refused_for_cron(readable: SecretRef) -> None:
    [problem] = unattended.problems(config(SecretRef(keychain="homelab-restic"), readable), "cron")
    assert problem.path == "backup.password" and "keychain: homelab-restic cannot be read by cron" in problem.message


def test_an_s3_repository_needs_the_aws_credentials_file_a_scheduled_run_falls_back_to(
    readable: SecretRef, tmp_path: Path
) -> None:
    cfg = config(readable, readable, "s3:https://s3.eu-central-1.amazonaws.com/homelab-backups")
    [problem] = unattended.problems(cfg, "cron", home=tmp_path)
    assert (
        problem.path == "backup.repository" and f"{tmp_path}/.aws/credentials, which does not exist" in problem.message
    )
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    assert unattended.problems(cfg, "cron", home=tmp_path) == []


def test_a_b2_repository_is_refused_pointing_at_its_s3_endpoint(readable: SecretRef, tmp_path: Path) -> None:
    [problem] = unattended.problems(config(readable, readable, "b2:homelab-backups:/"), "launchd", home=tmp_path)
    assert (
        problem.path == "backup.repository" and "B2_ACCOUNT_ID" in problem.message and "s3:https://" in problem.message
    )


def test_local_sftp_and_rest_repositories_need_nothing_from_the_environment(
    readable: SecretRef, tmp_path: Path
) -> None:
    for repository in ("/srv/restic", "sftp:backup@nas:/restic", "rest:https://nas:8000/homelab"):
        assert unattended.problems(config(readable, readable, repository), "cron", home=tmp_path) == []
