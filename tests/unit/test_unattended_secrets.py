"""Which secret references a scheduled backup.run could read where cron or launchd starts it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from homelab.backup import unattended
from homelab.config.schema import SecretRef
from homelab.core.errors import EXIT_USAGE, ConfigError


def config(password: SecretRef, token: SecretRef) -> Any:
    return SimpleNamespace(
        backup=SimpleNamespace(password=password),
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
