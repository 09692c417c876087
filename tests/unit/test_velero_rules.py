"""Velero (options.velero): what it renders from backup.offsite and backup.velero, and what it refuses."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from helpers import loopback_data
from homelab.backup import velero
from homelab.config import loader
from homelab.core import pins
from homelab.core.errors import ConfigError

KEYS = {"AWS_ACCESS_KEY_ID": {"file": "/k/id"}, "AWS_SECRET_ACCESS_KEY": {"file": "/k/secret"}}
OFFSITE = {"repository": "s3:https://s3.example.com/homelab-bucket/restic", "credentials": KEYS, "region": "eu-west-1"}


def with_velero(offsite: dict[str, Any] | None = OFFSITE, **settings: Any) -> dict[str, Any]:
    data = loopback_data()
    data["options"] = {"velero": True}
    if offsite is not None:
        data["backup"]["offsite"] = offsite
    if settings:
        data["backup"]["velero"] = settings
    return data


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        loader.validate(data)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_velero_without_an_offsite_store_is_refused_naming_the_keys() -> None:
    message = refused(with_velero(None))
    assert "options.velero" in message
    for key in ("backup.offsite.repository", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "options.velero: false"):
        assert key in message


def test_velero_with_a_non_s3_offsite_is_refused() -> None:
    message = refused(with_velero({"repository": "sftp:u@h:/srv/restic"}))
    assert "backup.offsite.repository" in message and "S3" in message


def test_velero_off_needs_no_offsite() -> None:
    data = loopback_data()
    data["options"] = {"velero": False}
    assert not loader.validate(data).options.velero


def test_the_storage_location_uses_the_offsite_endpoint_bucket_region_and_path_style() -> None:
    cfg = loader.validate(with_velero())
    bsl = velero.storage_location(cfg)
    assert bsl["spec"]["provider"] == "aws"
    assert bsl["spec"]["objectStorage"] == {"bucket": "homelab-bucket", "prefix": "velero"}
    assert bsl["spec"]["config"] == {
        "region": "eu-west-1",
        "s3Url": "https://s3.example.com",
        "s3ForcePathStyle": "true",
    }


@pytest.mark.parametrize(
    ("repository", "endpoint", "bucket", "prefix"),
    [
        ("s3:s3.example.com/b", "https://s3.example.com", "b", ""),
        ("s3:http://127.0.0.1:7070/b/p/q", "http://127.0.0.1:7070", "b", "p/q"),
        ("s3:https://s3.example.com:9000/b/", "https://s3.example.com:9000", "b", ""),
    ],
)
def test_s3_store_reads_restic_s3_repositories(repository: str, endpoint: str, bucket: str, prefix: str) -> None:
    cfg = loader.validate(with_velero({"repository": repository, "credentials": KEYS}))
    store = velero.s3_store(cfg)
    assert store is not None and (store.endpoint, store.bucket, store.restic_prefix) == (endpoint, bucket, prefix)


def test_a_prefix_inside_the_restic_repository_is_refused() -> None:
    message = refused(with_velero(prefix="restic"))
    assert "backup.velero.prefix" in message


def test_chart_values_pin_velero_the_aws_plugin_kopia_the_node_agent_and_sealed_keys() -> None:
    cfg = loader.validate(with_velero(node_agent_memory_limit="768MiB"))
    values = velero.chart_values(cfg)
    repository, _, tag = pins.load().image("velero").rpartition(":")
    assert values["image"] == {"repository": repository, "tag": tag}
    assert tag.startswith("v1.18.")
    plugin = values["initContainers"][0]
    assert plugin["image"].startswith("docker.io/velero/velero-plugin-for-aws:v1.14.")
    assert plugin["volumeMounts"] == [{"mountPath": "/target", "name": "plugins"}]
    assert values["configuration"]["uploaderType"] == "kopia"
    assert values["deployNodeAgent"] is True
    assert values["nodeAgent"]["resources"] == {"requests": {"memory": "256Mi"}, "limits": {"memory": "768Mi"}}
    assert values["credentials"] == {"useSecret": False, "extraSecretRef": velero.CREDENTIALS_SECRET}
    assert values["backupsEnabled"] is False and values["snapshotsEnabled"] is False


def test_the_chart_is_12_or_later() -> None:
    assert int(pins.load().chart("velero").version.split(".")[0]) >= 12


def test_the_credentials_are_sealed_from_the_offsite_references() -> None:
    from homelab.secrets.needed import needed

    cfg = loader.validate(with_velero())
    secret = next(s for s in needed(cfg) if s.name == velero.CREDENTIALS_SECRET)
    assert secret.namespace == "velero"
    assert {k: path for k, (path, _) in secret.keys.items()} == {
        "AWS_ACCESS_KEY_ID": "backup.offsite.credentials.AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY": "backup.offsite.credentials.AWS_SECRET_ACCESS_KEY",
    }


def test_the_default_schedule_runs_two_hours_before_backup_run() -> None:
    cfg = loader.validate(with_velero())
    assert cfg.backup.schedule == "0 3 * * *"
    spec = velero.backup_schedule(cfg)["spec"]
    assert spec["schedule"] == "0 1 * * *"
    assert spec["skipImmediately"] is True  # unpaused, it waits for its time instead of backing up at once
    assert spec["template"]["ttl"] == "720h0m0s"
    assert spec["template"]["includedNamespaces"] == sorted(cfg.deployed_apps)
    assert spec["template"]["defaultVolumesToFsBackup"] is True


def test_owner_choices_reach_the_schedule() -> None:
    cfg = loader.validate(with_velero(schedule="30 4 * * 0", ttl_hours=48, namespaces=["vaultwarden", "default"]))
    spec = velero.backup_schedule(cfg)["spec"]
    assert spec["schedule"] == "30 4 * * 0"
    assert spec["template"]["ttl"] == "48h0m0s"
    assert spec["template"]["includedNamespaces"] == ["default", "vaultwarden"]


@pytest.mark.parametrize("schedule", ["0 3 * * *", "15 3 * * 1", "50 2 * * *", "*/20 * * * *"])
def test_a_schedule_colliding_with_backup_run_is_refused(schedule: str) -> None:
    message = refused(with_velero(schedule=schedule))
    assert "backup.velero.schedule" in message and "backup.schedule" in message


def test_a_backup_schedule_with_no_free_hour_asks_for_a_velero_schedule() -> None:
    data = with_velero()
    data["backup"]["schedule"] = "@hourly"
    assert "backup.velero.schedule" in refused(data)
    data["backup"]["velero"] = {"schedule": "30 * * * *"}
    assert velero.schedule(loader.validate(data)) == "30 * * * *"


def test_the_platform_renders_velero_with_its_chart_12_and_the_alert() -> None:
    from homelab.gitops import platform

    data = with_velero()
    data["monitoring"] = {**data.get("monitoring", {}), "enabled": True}
    cfg = loader.validate(data)
    app, objects = platform.platform(cfg)["velero"]
    assert app is not None
    assert app["spec"]["source"]["targetRevision"] == pins.load().chart("velero").version
    assert app["spec"]["source"]["helm"]["valuesObject"] == velero.chart_values(cfg)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("BackupStorageLocation", "default") in kinds and ("Schedule", velero.SCHEDULE) in kinds
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    expr = rule["spec"]["groups"][0]["rules"][0]["expr"]
    assert f'velero_backup_last_successful_timestamp{{schedule="{velero.SCHEDULE}"}}' in expr
    assert expr.endswith(f"> {26 * 3600}")


class FakeKube:
    """Only the reads velero.py makes, over fixed objects (the real server is in tests/integration)."""

    def __init__(self, backups: list[dict[str, Any]], bsl: dict[str, Any] | None = None) -> None:
        self.backups, self.bsl = backups, bsl

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        assert (api_version, kind, namespace) == ("velero.io/v1", "Backup", "velero")
        return self.backups

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        assert (api_version, kind, name, namespace) == ("velero.io/v1", "BackupStorageLocation", "default", "velero")
        return self.bsl


def backup(name: str, created: str, phase: str, completed: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if completed:
        status["completionTimestamp"] = completed
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}


NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z


class Session:
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg


@pytest.mark.parametrize(
    ("phase", "partial"),
    [
        ("Completed", False),
        ("PartiallyFailed", True),
        ("Failed", True),
        ("FailedValidation", True),
        ("InProgress", False),
    ],
)
def test_run_result_counts_partially_failed_as_failed(phase: str, partial: bool) -> None:
    session = Session(loader.validate(with_velero()))
    kube = FakeKube([backup("old", "2026-05-27T20:00:00Z", "Completed"), backup("new", "2026-05-28T19:26:40Z", phase)])
    line, is_partial = velero.run_result(session, kube, NOW)
    assert line == f"velero: backup new {phase} (1.0 h ago)"
    assert is_partial is partial


def test_run_result_without_backups_or_when_stale_is_partial_and_off_is_silent() -> None:
    session = Session(loader.validate(with_velero()))
    assert velero.run_result(session, FakeKube([]), NOW)[1] is True
    stale = FakeKube([backup("b", "2026-05-26T20:00:00Z", "Completed")])
    line, partial = velero.run_result(session, stale, NOW)
    assert partial and "older than 26 h" in line
    assert velero.run_result(Session(loader.validate(loopback_data())), FakeKube([]), NOW) == ("", False)


def test_doctor_shows_the_location_phase_and_the_last_completed_age() -> None:
    session = Session(loader.validate(with_velero()))
    kube = FakeKube(
        [
            backup("done", "2026-05-28T17:00:00Z", "Completed", "2026-05-28T17:26:40Z"),
            backup("bad", "2026-05-28T19:00:00Z", "PartiallyFailed", "2026-05-28T19:10:00Z"),
        ],
        {"status": {"phase": "Available"}},
    )
    rows = {c.name: c for c in velero.doctor_checks(session, kube, NOW)}
    assert rows["velero storage"].status == "ok"
    assert rows["velero backup"].status == "ok" and "3.0 h" in rows["velero backup"].detail
    kube.bsl = {"status": {"phase": "Unavailable"}}
    rows = {c.name: c for c in velero.doctor_checks(session, kube, NOW + 30 * 3600)}
    assert rows["velero storage"].status == "fail" and "Unavailable" in rows["velero storage"].detail
    assert rows["velero backup"].status == "fail" and "limit 26 h" in rows["velero backup"].detail


def test_record_puts_velero_into_the_backup_report_and_partially_failed_makes_the_run_partial() -> None:
    from homelab.backup.run import RunReport
    from homelab.core.errors import EXIT_OK, EXIT_PARTIAL

    session = Session(loader.validate(with_velero()))
    created = datetime.fromtimestamp(time.time() - 600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = RunReport("r1", ok=["config"])
    velero.record(session, report, FakeKube([backup("good", created, "Completed")]))
    assert report.exit_code == EXIT_OK and report.ok[-1].startswith("velero (backup good Completed")
    report = RunReport("r2", ok=["config"])
    velero.record(session, report, FakeKube([backup("half", created, "PartiallyFailed")]))
    assert report.exit_code == EXIT_PARTIAL and report.failed["velero"].startswith("backup half PartiallyFailed")
    assert "FAILED: velero: backup half PartiallyFailed" in report.summary()
