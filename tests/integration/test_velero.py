"""Velero's real server on the sandbox, storing in a real S3 server on 127.0.0.1.

``velero server`` (v1.18, built by ``scripts/get-binaries.sh velero`` with velero-plugin-for-aws
v1.14) runs as a local process against the sandbox's API server, with the storage location
the toolkit renders from ``backup.offsite`` (homelab.backup.velero) pointing at a versitygw
S3Server. Pods do not run on the sandbox, so there is no node agent and the backup holds the
namespace's objects only (``--default-volumes-to-fs-backup=false``): a Backup of an app
namespace Completes, a Restore with a namespace mapping brings its objects back under the new
name, and ``backup.run``'s record line and the doctor's rows read them.

Every listener is on 127.0.0.1 (the S3 server; Velero's metrics and profiler by flag; its
manager's metrics listener is off in the wrapper get-binaries.sh builds) and everything
started here is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from s3_server import S3Server, free_port

from helpers import loopback_data
from homelab.backup import velero
from homelab.config import loader
from homelab.core import pins
from homelab.core.kube import Kube
from homelab.core.session import Session
from homelab.core.tools import find
from homelab.gitops import deploy
from homelab.sandbox import cluster as sandbox

pytestmark = pytest.mark.integration

BUCKET = "homelab-offsite"
PLUGIN_DIR = Path(os.environ.get("HOMELAB_CACHE_DIR", Path.home() / ".cache" / "homelab")) / "velero-plugins"


def tool(name: str) -> str:
    found = find(name)
    if found is None:
        pytest.skip(f"{name} is missing: scripts/get-binaries.sh velero")
    return found


def wait(what: str, probe: Any, timeout: float = 240.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


class Session2:
    """The bits of a Session that velero.run_result and doctor_checks read."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("velero-s3")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def velero_cfg(store: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The config an owner writes: Velero on, the offsite copy in the S3 store (restic under restic/)."""
    keys = tmp_path_factory.mktemp("velero-keys")
    data = loopback_data()
    data["options"] = {"velero": True}
    data["backup"]["offsite"] = {
        "repository": f"s3:{store.endpoint}/{BUCKET}/restic",
        "credentials": store.credential_files(keys),
    }
    cfg = loader.validate(data)
    # The offsite restic repository, which also creates the bucket Velero shares with it.
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": store.access,
        "AWS_SECRET_ACCESS_KEY": store.secret,
        "RESTIC_PASSWORD": "velero-test",
    }
    subprocess.run(
        [tool("restic"), "-r", cfg.backup.offsite.repository, "init"], env=env, check=True, capture_output=True
    )
    return cfg


@pytest.fixture(scope="module")
def velero_server(
    sandbox_session: Session, kube: Kube, store: S3Server, velero_cfg: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """``velero server`` as a local process against the sandbox, with the rendered storage location."""
    binary = tool("velero")
    if not (PLUGIN_DIR / velero.PLUGIN).exists():
        pytest.skip("velero-plugin-for-aws is missing: scripts/get-binaries.sh velero")
    version = "v" + pins.load().binaries["velero"].version
    crds = [
        doc
        for directory in (f"velero-{version}", f"velero-v2alpha1-{version}")  # velero server checks both
        for path in sorted((deploy.crd_dir() / directory).glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    assert crds, "no Velero CRDs: scripts/get-binaries.sh crds"
    kube.apply(crds)
    wait("Velero's CRDs served", lambda: _served(kube))
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": velero.NAMESPACE}}])
    kube.apply([velero.storage_location(velero_cfg), server_deployment()])
    paths = sandbox.paths_for(sandbox_session.cfg, sandbox_session.state_dir)
    work = tmp_path_factory.mktemp("velero-server")
    log = (work / "velero.log").open("ab")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KUBECONFIG"))},
        # what the chart's extraSecretRef gives the pod: the offsite keys as environment variables
        "AWS_ACCESS_KEY_ID": store.access,
        "AWS_SECRET_ACCESS_KEY": store.secret,
        "VELERO_NAMESPACE": velero.NAMESPACE,
        "VELERO_SCRATCH_DIR": str(work / "scratch"),
        "TMPDIR": str(work),
        "HOME": str(work),  # the client config Velero reads and writes (~/.config/velero) stays here
    }
    process = subprocess.Popen(
        [
            binary,
            "server",
            f"--kubeconfig={paths.kubeconfig}",
            f"--kubecontext={paths.context}",
            f"--namespace={velero.NAMESPACE}",
            f"--plugin-dir={PLUGIN_DIR}",
            "--uploader-type=kopia",
            "--default-volumes-to-fs-backup=false",
            f"--metrics-address=127.0.0.1:{free_port()}",
            f"--profiler-address=127.0.0.1:{free_port()}",
            "--store-validation-frequency=5s",
            "--log-level=info",
        ],
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and the plugin processes it started
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        print((work / "velero.log").read_text()[-4000:])


def server_deployment() -> dict[str, Any]:
    """The chart's Deployment, as an object only (replicas 0: the server runs here as a process).

    Velero's pod-volume restore action reads the Deployment named ``velero`` in its namespace
    for the image of its restore helper, and every restore fails without it
    (pkg/restore/actions/pod_volume_restore_action.go); the chart, installed as release
    ``velero``, names it so.
    """
    labels = {"app.kubernetes.io/name": "velero"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "velero", "namespace": velero.NAMESPACE},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "velero", "image": pins.load().image("velero")}]},
            },
        },
    }


def _served(kube: Kube) -> bool:
    try:
        kube.list_objects("velero.io/v1", "Backup", velero.NAMESPACE)
        kube.list_objects("velero.io/v1", "Restore", velero.NAMESPACE)
        kube.list_objects("velero.io/v1", "BackupStorageLocation", velero.NAMESPACE)
    except Exception:
        return False
    return True


def phase_of(kube: Kube, kind: str, name: str) -> str:
    obj = kube.get("velero.io/v1", kind, name, velero.NAMESPACE) or {}
    return str((obj.get("status") or {}).get("phase") or "")


def finished(kube: Kube, kind: str, name: str, server: subprocess.Popen[bytes]) -> str:
    def probe() -> str:
        assert server.poll() is None, "velero server exited (its log is printed at teardown)"
        phase = phase_of(kube, kind, name)
        return phase if phase in ("Completed", "PartiallyFailed", "Failed", "FailedValidation") else ""

    return str(wait(f"{kind} {name} to finish", probe))


def test_a_backup_completes_and_a_mapped_restore_brings_the_objects_back(
    kube: Kube, velero_cfg: Any, velero_server: subprocess.Popen[bytes], store: S3Server
) -> None:
    app = f"vapp-{uuid.uuid4().hex[:6]}"
    mapped = f"{app}-restored"
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app}}])
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": app},
                "data": {"marker": "velero-was-here"},
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": app},
                "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "web"}},
            },
        ]
    )
    phase = wait(
        "the storage location Available",
        lambda: phase_of(kube, "BackupStorageLocation", velero.LOCATION) == "Available",
        timeout=120,
    )
    assert phase
    name = f"b-{app}"
    kube.apply(
        [
            {
                "apiVersion": "velero.io/v1",
                "kind": "Backup",
                "metadata": {"name": name, "namespace": velero.NAMESPACE},
                "spec": {
                    "includedNamespaces": [app],
                    "storageLocation": velero.LOCATION,
                    "ttl": "1h0m0s",
                    "defaultVolumesToFsBackup": False,
                },
            }
        ]
    )
    assert finished(kube, "Backup", name, velero_server) == "Completed"
    stored = list((store.root / "data" / BUCKET / velero_cfg.backup.velero.prefix / "backups" / name).iterdir())
    assert any(p.name == f"{name}.tar.gz" for p in stored), "the backup is in the S3 store, under Velero's prefix"

    # backup.run's record line and the doctor read the real objects
    line, partial = velero.run_result(Session2(velero_cfg), kube)
    assert line.startswith(f"velero: backup {name} Completed") and not partial
    rows = {c.name: c for c in velero.doctor_checks(Session2(velero_cfg), kube)}
    assert rows["velero storage"].status == "ok" and rows["velero backup"].status == "ok"

    restore = f"r-{app}"
    kube.apply(
        [
            {
                "apiVersion": "velero.io/v1",
                "kind": "Restore",
                "metadata": {"name": restore, "namespace": velero.NAMESPACE},
                "spec": {"backupName": name, "namespaceMapping": {app: mapped}},
            }
        ]
    )
    assert finished(kube, "Restore", restore, velero_server) == "Completed"
    configmap = kube.get("v1", "ConfigMap", "settings", mapped)
    assert configmap is not None and configmap["data"] == {"marker": "velero-was-here"}
    assert kube.get("v1", "Service", "web", mapped) is not None
    for namespace in (app, mapped):
        kube.delete("v1", "Namespace", namespace)


def test_the_rendered_schedule_is_accepted_and_waits_for_its_time(
    kube: Kube, velero_cfg: Any, velero_server: subprocess.Popen[bytes]
) -> None:
    """Velero validates the Schedule the toolkit renders (cron, template) and starts no backup at once."""
    kube.apply([velero.backup_schedule(velero_cfg)])
    assert wait(
        "the Schedule validated", lambda: phase_of(kube, "Schedule", velero.SCHEDULE) in ("Enabled", "FailedValidation")
    )
    schedule = kube.get("velero.io/v1", "Schedule", velero.SCHEDULE, velero.NAMESPACE) or {}
    assert schedule["status"]["phase"] == "Enabled", schedule.get("status")
    time.sleep(3)  # what skipImmediately prevents would be created right after validation
    labelled = [
        b
        for b in kube.list_objects("velero.io/v1", "Backup", velero.NAMESPACE)
        if (b["metadata"].get("labels") or {}).get("velero.io/schedule-name") == velero.SCHEDULE
    ]
    assert labelled == []
    kube.delete("velero.io/v1", "Schedule", velero.SCHEDULE, velero.NAMESPACE)


def test_a_partially_failed_backup_makes_the_run_partial(
    kube: Kube, velero_cfg: Any, velero_server: subprocess.Popen[bytes]
) -> None:
    """A Backup whose storage location does not exist fails validation: backup.run reads it as failed."""
    name = f"bad-{uuid.uuid4().hex[:6]}"
    kube.apply(
        [
            {
                "apiVersion": "velero.io/v1",
                "kind": "Backup",
                "metadata": {"name": name, "namespace": velero.NAMESPACE},
                "spec": {"includedNamespaces": ["default"], "storageLocation": "no-such-location"},
            }
        ]
    )
    assert finished(kube, "Backup", name, velero_server) == "FailedValidation"
    line, partial = velero.run_result(Session2(velero_cfg), kube)
    assert partial and f"backup {name} FailedValidation" in line
    kube.delete("velero.io/v1", "Backup", name, velero.NAMESPACE)
