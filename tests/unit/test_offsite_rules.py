"""backup.offsite: what a config may name, and what a scheduled run must be able to read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import loopback_data
from homelab.backup import unattended
from homelab.backup.offsite import missing_offsite
from homelab.config import loader
from homelab.core.errors import ConfigError

KEYS = {"AWS_ACCESS_KEY_ID": {"file": "/k/id"}, "AWS_SECRET_ACCESS_KEY": {"file": "/k/secret"}}


def with_offsite(offsite: dict[str, Any]) -> dict[str, Any]:
    data = loopback_data()
    data["backup"]["offsite"] = offsite
    return data


@pytest.mark.parametrize(
    ("offsite", "expected"),
    [
        ({"repository": "/mnt/usb/restic"}, "on this machine is lost with it"),
        ({"repository": "local:/mnt/usb/restic"}, "on this machine is lost with it"),
        ({"repository": "s3:https://s3.example.com/b"}, "needs AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"),
        ({"repository": "b2:bucket:path", "credentials": {"B2_ACCOUNT_ID": {"file": "/a"}}}, "needs B2_ACCOUNT_KEY"),
        ({"repository": "s3:http://192.0.2.7/b", "credentials": KEYS}, "use https://"),
        ({"repository": "sftp:u@h:/x", "credentials": KEYS}, "not read by restic's sftp: backend"),
        ({"repository": "swift:c:/p"}, "not offered for offsite copies"),
        ({"repository": "s3:https://AKID:hunter2pass@s3.example.com/b", "credentials": KEYS}, "holds a user name"),
        ({"repository": "s3:https://s3.example.com/b", "credentials": {**KEYS, "GITHUB_TOKEN": {"file": "/x"}}}, ""),
    ],
)
def test_an_offsite_that_is_not_away_or_not_complete_is_refused_naming_the_key(
    offsite: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        loader.validate(with_offsite(offsite))
    assert "backup.offsite" in str(caught.value) and expected in str(caught.value)
    assert "hunter2pass" not in str(caught.value)


def test_the_offsite_must_be_a_second_repository() -> None:
    data = with_offsite({"repository": "s3:https://s3.example.com/b", "credentials": KEYS})
    data["backup"]["repository"] = "s3:https://s3.example.com/b"
    with pytest.raises(ConfigError, match=r"is backup\.repository itself"):
        loader.validate(data)


def test_loopback_http_and_each_backend_with_its_keys_are_accepted() -> None:
    for offsite in (
        {"repository": "s3:http://127.0.0.1:7070/bucket", "credentials": KEYS},
        {"repository": "s3:https://s3.eu-central-003.backblazeb2.com/bucket", "credentials": KEYS},
        {
            "repository": "b2:bucket:homelab",
            "credentials": {"B2_ACCOUNT_ID": {"file": "/a"}, "B2_ACCOUNT_KEY": {"file": "/b"}},
        },
        {"repository": "sftp:backup@nas.home:/srv/restic"},
        {"repository": "rest:https://backup.example.com/homelab/"},
    ):
        assert loader.validate(with_offsite(offsite)).backup.offsite is not None


def test_a_scheduled_run_must_read_the_offsite_keys_too(tmp_path: Path) -> None:
    data = with_offsite(
        {
            "repository": "s3:https://s3.example.com/b",
            "credentials": {
                "AWS_ACCESS_KEY_ID": {"env": "AWS_ACCESS_KEY_ID"},
                "AWS_SECRET_ACCESS_KEY": KEYS["AWS_SECRET_ACCESS_KEY"],
            },
        }
    )
    cfg = loader.validate(data)
    found = unattended.problems(cfg, "cron", tmp_path)
    keys = [p.path for p in found]
    assert "backup.offsite.credentials.AWS_ACCESS_KEY_ID" in keys  # env: never set for a cron job
    assert "backup.offsite.credentials.AWS_SECRET_ACCESS_KEY" in keys  # the file does not exist


def test_copies_are_matched_to_local_snapshots_by_their_original_id() -> None:
    local = [{"id": "a" * 64}, {"id": "b" * 64}, {"id": "c" * 64}]
    remote = [{"id": "f" * 64, "original": "a" * 64}, {"id": "c" * 64}]
    assert missing_offsite(local, remote) == ["b" * 8]
