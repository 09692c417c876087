"""backup.* and secrets.* with real restic, the sandbox API server and real kubeseal."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from backup_support import BackupEnv, kill_group, make_backup_env, sealing_key_secret

from helpers import interrupt, run_cli
from homelab.core.kube import Kube
from homelab.core.session import Session
from homelab.sandbox import cluster as sandbox

pytestmark = pytest.mark.integration
KILL_POINTS = int(os.environ.get("BACKUP_KILL_POINTS", "50"))


@pytest.fixture
def sealing_key(kube: Kube) -> Iterator[str]:
    secret, cert = sealing_key_secret("sealed-secrets-key-test1")
    kube.apply([secret])
    yield cert
    kube.delete("v1", "Secret", "sealed-secrets-key-test1", "kube-system")
    kube.delete("v1", "Secret", "sealed-secrets-key-test2", "kube-system")


def unseal_with_live_key(kube: Kube, scratch: Path, sealed: dict) -> dict:
    """Decrypt ``sealed`` offline with the controller key in the cluster, using the real kubeseal."""
    from homelab.core.tools import require

    [key] = kube.list_objects(
        "v1", "Secret", "kube-system", label_selector="sealedsecrets.bitnami.com/sealed-secrets-key"
    )
    (scratch / "unseal-key.yaml").write_text(yaml.safe_dump({**key, "apiVersion": "v1", "kind": "Secret"}))
    (scratch / "unseal-in.yaml").write_text(yaml.safe_dump(sealed))
    done = subprocess.run(
        [
            require("kubeseal"),
            "--recovery-unseal",
            "--recovery-private-key",
            str(scratch / "unseal-key.yaml"),
            "-f",
            str(scratch / "unseal-in.yaml"),
            "-o",
            "yaml",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return dict(yaml.safe_load(done.stdout))


def snapshots(bk: BackupEnv) -> list[dict]:
    done = bk.restic("snapshots", "--json")
    return json.loads(done.stdout or "[]") or []


def test_a_run_is_one_complete_tagged_snapshot_with_a_manifest_and_verifies(bk: BackupEnv) -> None:
    result = bk.cli("backup.run")
    assert result.code == 0, result.output
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("backup ok: run ")
    [snap] = snapshots(bk)
    assert "homelab" in snap["tags"] and "status:complete" in snap["tags"]
    listing = bk.restic("ls", snap["id"]).stdout
    assert (
        "/manifest.json" in listing and "/cluster/Namespace.v1.yaml" in listing and "/sealed-keys/keys.yaml" in listing
    )
    assert "/cluster/Secret" not in listing
    verify = bk.cli("backup.verify")
    assert verify.code == 0 and "verified" in verify.stdout, verify.output
    assert "verified" in bk.cli("backup.list").stdout
    [row] = json.loads(bk.cli("backup.list", "--json").stdout)
    assert row["snapshot"] == snap["short_id"] and row["status"] == "complete" and row["verified"] is True, row
    assert set(row) == {"time", "snapshot", "status", "run", "verified"} and row["run"]
    pings = bk.receiver.pings()
    assert pings == ["/ping/start", "/ping"]
    metric = (bk.state / "backup.prom").read_text()
    assert "homelab_backup_last_run_partial 0" in metric
    assert not (bk.state / "backup-staging").exists()


def test_verify_says_what_it_read_and_full_reads_everything_and_every_manifest(bk: BackupEnv) -> None:
    """The default is a sample and one snapshot, and says so; --full reads all data and each snapshot's manifest."""
    bk.data["backup"]["verify_read_percent"] = 10
    bk.save()
    for _ in range(2):
        assert bk.cli("backup.run").code == 0
    older, newest = (snap["short_id"] for snap in snapshots(bk))
    sampled = bk.cli("backup.verify")
    assert sampled.code == 0, sampled.output
    summary = sampled.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"backup {newest}") and " verified: " in summary, summary
    assert "a 10% sample" in summary and "1 older snapshot(s) not restored (--full" in summary
    full = bk.cli("backup.verify", "--full")
    assert full.code == 0, full.output
    assert "read all of the repository's data" in full.stdout and "manifests of 1 other complete" in full.stdout
    assert f"ok    snapshot {older}" in full.stdout and "manifest restored" in full.stdout
    pack = max((p for p in (bk.repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    flip_byte(pack)
    damaged = bk.cli("backup.verify", "--full")  # a sample may miss one damaged pack; reading all data cannot
    assert damaged.code == 1 and "repository damaged" in damaged.stderr, damaged.output


def test_sigkill_at_random_points_never_leaves_a_partial_snapshot(bk: BackupEnv) -> None:
    started = time.monotonic()
    assert bk.cli("backup.run").code == 0
    duration = time.monotonic() - started
    rng = random.Random(20261125)
    for _ in range(KILL_POINTS):
        process = bk.start("backup.run")
        time.sleep(rng.uniform(0, duration * 1.1))
        kill_group(process)
    for snap in snapshots(bk):
        assert "status:complete" in snap["tags"]
        assert "/manifest.json" in bk.restic("ls", snap["id"]).stdout, snap["id"]
    after = bk.cli("backup.run")
    assert after.code == 0, after.output
    verify = bk.cli("backup.verify")
    assert verify.code == 0, verify.output
    check = bk.restic("check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_disk_full_fails_alerts_keeps_older_runs_and_recovers(bk: BackupEnv, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    # mode=0700: the repository's directory must be private (the config refuses a world-writable one)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(small)], check=True)
    try:
        bk.data["backup"]["repository"] = str(small / "repo")
        bk.save()
        first = bk.cli("backup.run")
        assert first.code == 0, first.output
        good = snapshots(bk)[0]["short_id"]
        # 8 MiB that the config component backs up (local K3S snapshots), more than the repository's disk holds
        local = Path(bk.data["state_dir"]) / "snapshots" / "filler.bin"
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(os.urandom(8 * 1024 * 1024))
        full = bk.cli("backup.run")
        assert full.code == 1, full.output
        assert "no space left on device" in full.stderr.lower()
        assert any("FAILED" in m for m in bk.receiver.messages())
        assert bk.receiver.pings()[-1] == "/ping/fail"
        local.unlink()
        older = bk.cli("backup.verify", "--snapshot", good)
        assert older.code == 0, older.output
        again = bk.cli("backup.run")
        assert again.code == 0, again.output
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    where = len(data) // 2 if offset is None else offset
    data[where] ^= 0xFF
    path.chmod(0o600)
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_data_or_in_the_snapshot_record_fails_verify_naming_it(bk: BackupEnv) -> None:
    assert bk.cli("backup.run").code == 0
    pack = max((p for p in (bk.repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    flip_byte(pack)
    damaged = bk.cli("backup.verify")
    assert damaged.code == 1
    assert "repository damaged" in damaged.stderr and pack.name[:8] in damaged.stdout + damaged.stderr

    other = make_backup_env(bk.tmp / "second", Path(bk.data["kubeconfig"]), bk.receiver)
    assert other.cli("backup.run").code == 0
    [record] = list((other.repo / "snapshots").iterdir())
    flip_byte(record)
    broken = other.cli("backup.verify")
    assert broken.code != 0
    assert record.name[:8] in broken.stdout + broken.stderr or "snapshot" in broken.stderr.lower()


def restic_running_under(pid: int, timeout: float = 120) -> int:
    """The pid of ``restic backup`` once it runs below ``pid``."""
    from homelab.core.signals import descendants

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in descendants(pid):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                if any(a.endswith(b"restic") for a in argv) and b"backup" in argv:
                    return child
        time.sleep(0.05)
    raise AssertionError("restic backup never started")


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie has ended
    except OSError:
        return True


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_mid_run_ends_it_with_its_code_and_words_stops_restic_and_the_next_run_completes(
    bk: BackupEnv, how: str
) -> None:
    """Ctrl-C reaches the whole process group (a terminal); a scheduler's SIGTERM only the task's own process."""
    filler = Path(bk.data["state_dir"]) / "snapshots" / "filler.bin"  # local K3S snapshots: the config component
    filler.parent.mkdir(parents=True, exist_ok=True)
    with filler.open("wb") as out:
        for _ in range(24):
            out.write(os.urandom(16 * 1024 * 1024))
    process = bk.start("backup.run")
    restic = restic_running_under(process.pid)
    code = interrupt(process, how)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "re-run the same command" in stderr and "Traceback" not in stderr, stderr
    assert gone(restic), "restic was left running"
    assert any("INTERRUPTED" in m for m in bk.receiver.messages()), (bk.receiver.messages(), stderr)
    assert bk.receiver.pings()[-1] == "/ping/fail"
    assert not [s for s in snapshots(bk) if "status:complete" in s["tags"]], "nothing was stored"
    filler.unlink()
    again = bk.cli("backup.run")
    assert again.code == 0, again.output
    assert bk.cli("backup.verify").code == 0


def test_a_read_only_repository_fails_the_run_at_once_naming_it(bk: BackupEnv) -> None:
    """restic would retry writing its lock for 15 minutes; the run says what is wrong instead."""
    assert bk.cli("backup.run").code == 0
    subprocess.run(["mount", "--bind", str(bk.repo), str(bk.repo)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(bk.repo)], check=True)
        started = time.monotonic()
        result = run_cli(["backup.run"], bk.env(), timeout=120)
        assert result.code == 1, result.output
        assert "read-only" in result.stderr and str(bk.repo) in result.stderr, result.stderr
        assert time.monotonic() - started < 60
        assert bk.receiver.pings()[-1] == "/ping/fail"
    finally:
        subprocess.run(["umount", "-l", str(bk.repo)], check=False)
    assert bk.cli("backup.run").code == 0, "writable again, the next run stores"


def test_overlapping_runs_second_exits_11_at_once_and_lock_survives_sigkill(bk: BackupEnv) -> None:
    holder = bk.start("backup.run")
    lock = bk.state / "backup.lock"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.05)
    second = bk.cli("backup.run")
    assert second.code == 11, second.output
    # It did not wait for the lock: the holder is still running when the second run has already given up.
    assert holder.poll() is None, "the second run waited until the first one finished"
    assert "holds" in second.stderr
    kill_group(holder)
    before = sorted(p.name for p in bk.repo.rglob("*")) if bk.repo.exists() else []
    after_kill = bk.cli("backup.run")
    assert after_kill.code == 0, after_kill.output
    assert sorted(p.name for p in bk.repo.rglob("*")) != before


def test_forty_concurrent_starts_never_have_two_holders(tmp_path: Path) -> None:
    script = (
        "import os, sys, time\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from homelab.backup.run import exclusive_lock\n"
        "from homelab.core.locks import Locked\n"
        "try:\n"
        "    with exclusive_lock(__import__('pathlib').Path(sys.argv[1])):\n"
        "        fd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
        "        os.write(fd, f'in {time.monotonic()}\\n'.encode()); time.sleep(0.2)\n"
        "        os.write(fd, f'out {time.monotonic()}\\n'.encode())\n"
        "except Locked:\n"
        "    sys.exit(11)\n"
    )
    tasks = str(Path(__file__).resolve().parents[2] / "tasks")
    lock, log = tmp_path / "backup.lock", tmp_path / "holders.log"
    processes = [subprocess.Popen([os.sys.executable, "-c", script, str(lock), str(log), tasks]) for _ in range(40)]
    codes = [p.wait() for p in processes]
    assert set(codes) <= {0, 11} and codes.count(0) >= 1
    depth = 0
    for line in log.read_text().splitlines():
        depth += 1 if line.startswith("in") else -1
        assert depth in (0, 1), "two holders at once"


def test_an_unreachable_api_makes_the_run_partial_and_it_does_not_count(bk: BackupEnv) -> None:
    assert bk.cli("backup.run").code == 0
    dead = yaml.safe_load(Path(bk.data["kubeconfig"]).read_text())
    dead["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    (bk.tmp / "dead-kubeconfig").write_text(yaml.safe_dump(dead))
    bk.data["kubeconfig"] = str(bk.tmp / "dead-kubeconfig")
    bk.save()
    partial = bk.cli("backup.run")
    assert partial.code == 3, partial.output
    assert "backup partial" in partial.stdout and "cluster" in partial.stdout
    tags = [s["tags"] for s in snapshots(bk)]
    assert sum("status:partial" in t for t in tags) == 1
    assert "homelab_backup_last_run_partial 1" in (bk.state / "backup.prom").read_text()
    assert any("partial" in m for m in bk.receiver.messages())
    prune = bk.cli("backup.prune", "--dry-run")
    assert prune.code == 0, prune.output
    verify = bk.cli("backup.verify")  # picks the newest complete run, not the partial one
    assert verify.code == 0, verify.output


@pytest.mark.parametrize("fault", ["wrong", "missing", "blank", "fifo"])
def test_wrong_or_missing_password_exits_12_naming_where_and_writes_nothing(bk: BackupEnv, fault: str) -> None:
    """A blank password file would make restic prompt, a FIFO would block the read: both end at once, named."""
    assert bk.cli("backup.run").code == 0
    before = sorted(str(p) for p in bk.repo.rglob("*"))
    if fault == "wrong":
        (bk.tmp / "pw").write_text("not the password\n")
    elif fault == "blank":
        (bk.tmp / "pw").write_text("  \n")
    else:
        (bk.tmp / "pw").unlink()
        if fault == "fifo":
            os.mkfifo(bk.tmp / "pw", 0o600)
    for command in (["backup.run"], ["backup.verify"], ["backup.list"]):
        result = bk.cli(*command)
        assert result.code == 12, (command, result.output)
        assert str(bk.tmp / "pw") in result.stderr
        assert "correct horse" not in result.output and "not the password" not in result.output
    assert sorted(str(p) for p in bk.repo.rglob("*")) == before


def test_sealed_keys_renewed_after_the_last_backup_fail_verify_until_backed_up(
    bk: BackupEnv, kube: Kube, sealing_key: str
) -> None:
    (bk.tmp / "cert.pem").write_text(sealing_key)
    bk.write_plaintext(
        yaml.safe_dump({"secrets": [{"name": "db", "namespace": "apps", "data": {"password": "s3cr3t-value-1"}}]})
    )
    sealed = bk.cli("secrets.seal")
    assert sealed.code == 0, sealed.output
    assert "s3cr3t-value-1" not in (bk.tmp / "sealed" / "apps-db.yaml").read_text()
    assert bk.cli("backup.run").code == 0
    assert bk.cli("backup.verify").code == 0
    renewed, new_cert = sealing_key_secret("sealed-secrets-key-test2")
    kube.apply([renewed])
    (bk.tmp / "cert.pem").write_text(new_cert)
    bk.write_plaintext(
        yaml.safe_dump({"secrets": [{"name": "db", "namespace": "apps", "data": {"password": "s3cr3t-value-2"}}]})
    )
    assert bk.cli("secrets.seal").code == 0
    stale = bk.cli("backup.verify")
    assert stale.code == 12 and "does not decrypt with the backed-up keys" in stale.stdout
    assert "BEGIN" not in stale.output  # no key material in any output
    assert bk.cli("secrets.backup-key").code == 0
    fresh = bk.cli("backup.verify")
    assert fresh.code == 0, fresh.output


def test_prune_refuses_empty_listing_and_keeps_the_last_verified_runs(bk: BackupEnv) -> None:
    created = bk.restic("init")  # a repository that exists and lists nothing: the guard, not restic, must refuse
    assert created.returncode == 0, created.stderr
    before = sorted(str(p) for p in bk.repo.rglob("*"))
    empty = bk.cli("backup.prune", "--yes")
    assert empty.code == 1, empty.output
    assert "prune refused: the repository lists no snapshots" in empty.stderr, empty.output
    assert sorted(str(p) for p in bk.repo.rglob("*")) == before
    for _ in range(4):
        assert bk.cli("backup.run").code == 0
        assert bk.cli("backup.verify").code == 0
    bk.data["backup"]["retention"] = {"daily": 0, "weekly": 0, "monthly": 0}
    bk.save()
    result = bk.cli("backup.prune", "--yes")
    assert result.code == 0, result.output
    assert len(snapshots(bk)) == 3


def test_round_trip_of_objects_a_sealed_secret_and_its_key_then_drill(
    bk: BackupEnv, kube: Kube, namespace: str, sealing_key: str
) -> None:
    from homelab.gitops import deploy

    deploy.install_crds(
        kube, [c for c in deploy.component_crds() if c["metadata"]["name"] == "sealedsecrets.bitnami.com"]
    )
    (bk.tmp / "cert.pem").write_text(sealing_key)
    bk.write_plaintext(
        yaml.safe_dump({"secrets": [{"name": "db", "namespace": namespace, "data": {"password": "round-trip-value"}}]})
    )
    assert bk.cli("secrets.seal", "--name", "db").code == 0  # only this one: the config's are not the point here
    sealed = yaml.safe_load((bk.tmp / "sealed" / f"{namespace}-db.yaml").read_text())
    kube.apply(
        [
            sealed,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "keep-me", "namespace": namespace},
                "data": {"answer": "42"},
            },
        ]
    )
    assert bk.cli("backup.run").code == 0
    drill = bk.cli("backup.drill")
    assert drill.code == 0 and "1/1 SealedSecrets decrypt" in drill.stdout, drill.output

    kube.delete("v1", "Namespace", namespace)
    kube.delete("v1", "Secret", "sealed-secrets-key-test1", "kube-system")
    kube.wait_for(
        "namespace deletion",
        lambda: None if kube.get("v1", "Namespace", namespace) is None else "terminating",
        timeout=60,
    )
    restored = bk.cli("backup.restore", "--component", "cluster", "--component", "sealed-keys", "--yes")
    assert restored.code == 0, restored.output
    assert kube.get("v1", "ConfigMap", "keep-me", namespace)["data"] == {"answer": "42"}
    back = kube.get("bitnami.com/v1alpha1", "SealedSecret", "db", namespace)
    assert back["spec"]["encryptedData"] == sealed["spec"]["encryptedData"]
    secret = unseal_with_live_key(kube, bk.tmp, {**back, "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret"})
    assert base64.b64decode(secret["data"]["password"]).decode() == "round-trip-value"
    to_dir = bk.cli("backup.restore", "--to", str(bk.tmp / "out"))
    assert to_dir.code == 0 and (bk.tmp / "out" / "manifest.json").is_file()


def test_fetch_cert_pins_the_controller_certificate_and_rotate_reseals(
    bk: BackupEnv, kube: Kube, sealing_key: str
) -> None:

    first = bk.cli("secrets.fetch-cert")
    assert first.code == 0 and "pinned" in first.stdout, first.output
    assert (bk.tmp / "cert.pem").read_text() == sealing_key
    assert "nothing to do" in bk.cli("secrets.fetch-cert").stdout
    bk.write_plaintext(
        yaml.safe_dump({"secrets": [{"name": "api", "namespace": "apps", "data": {"token": "old-value-123"}}]})
    )
    assert bk.cli("secrets.seal").code == 0
    rotated = run_cli(
        ["secrets.rotate", "--name", "api", "--key", "token", "--value-env", "NEW_TOKEN"],
        {**bk.env(), "NEW_TOKEN": "new-value-456"},
    )
    assert rotated.code == 0, rotated.output
    assert "new-value-456" not in rotated.output
    assert (bk.tmp / "secrets.local.yaml").stat().st_mode & 0o777 == 0o600
    sealed = yaml.safe_load((bk.tmp / "sealed" / "apps-api.yaml").read_text())
    secret = unseal_with_live_key(kube, bk.tmp, sealed)
    assert base64.b64decode(secret["data"]["token"]).decode() == "new-value-456"


def repository_picture(repo: Path) -> dict[str, str]:
    """Every file of the repository (locks included: a dry run takes none) with its content hash."""
    import hashlib

    if not repo.exists():
        return {}
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def rendered_app(kube: Kube, sandbox_session: Session) -> Iterator[tuple[str, list[dict]]]:
    """A config app rendered under a fresh name (namespace, claim, Deployment, Service, HTTPRoute,
    NetworkPolicies, PDB: every kind the renderer makes), applied, its claim bound, its Deployment Available."""
    import uuid

    from homelab.apps.render import priority_class, render_app
    from homelab.gitops import deploy

    deploy.install_crds(
        kube, [c for c in deploy.component_crds() if c["metadata"]["name"] == "httproutes.gateway.networking.k8s.io"]
    )
    cfg = sandbox_session.cfg
    name = f"vw-{uuid.uuid4().hex[:6]}"
    # Two replicas: a critical app gets its PDB only when it has a pod to spare.
    objects, _ = render_app(name, cfg.apps["vaultwarden"].model_copy(update={"replicas": 2}), cfg)
    assert {o["kind"] for o in objects} >= {
        "Namespace",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "HTTPRoute",
        "NetworkPolicy",
        "PodDisruptionBudget",
    }
    kube.apply([priority_class()])  # the platform's, which its pods name
    kube.apply(objects + sandbox.volumes_for([o for o in objects if o["kind"] == "PersistentVolumeClaim"]))
    kube.wait_deployments([(name, name)], timeout=120)
    yield name, objects
    kube.delete("v1", "Namespace", name)


def claim_cluster_ip(kube: Kube, namespace: str, ip: str) -> bool:
    """Create a Service in ``namespace`` asking for ``ip``; False while the API server still holds it."""
    from homelab.core.kube import KubeError

    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "took-the-old-ip", "namespace": namespace},
        "spec": {"clusterIP": ip, "ports": [{"port": 80}]},
    }
    try:
        kube.apply([service])
    except KubeError:
        return False
    return True


def test_a_deleted_app_namespace_is_restored_whole_and_without_what_came_after(
    bk: BackupEnv, kube: Kube, rendered_app: tuple[str, list[dict]], namespace: str
) -> None:
    name, objects = rendered_app
    old_ip = kube.get("v1", "Service", name, name)["spec"]["clusterIP"]
    assert bk.cli("backup.run").code == 0
    marker = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "written-after-backup", "namespace": name}}
    kube.apply([marker])
    kube.delete("v1", "Namespace", name)
    kube.wait_for(
        "namespace deletion", lambda: None if kube.get("v1", "Namespace", name) is None else "terminating", timeout=120
    )
    # Meanwhile another Service is given the cluster IP the deleted one had.
    kube.wait_for(
        "the old cluster IP to be free",
        lambda: None if claim_cluster_ip(kube, namespace, old_ip) else "still allocated",
        timeout=60,
    )
    repository = repository_picture(bk.repo)
    volume = kube.get("v1", "PersistentVolume", f"sandbox-{name}-{name}-data")

    planned = bk.cli("backup.restore", "--component", "cluster", "--dry-run")
    assert planned.code == 0, planned.output
    assert f"apply Namespace {name}" in planned.stdout
    assert f"Deployment {name}/{name}" in planned.stdout and f"Service {name}/{name}" in planned.stdout
    assert f"patch PersistentVolume sandbox-{name}-{name}-data: free it for the restored claim" in planned.stdout
    assert kube.get("v1", "Namespace", name) is None
    assert kube.get("v1", "PersistentVolume", f"sandbox-{name}-{name}-data")["spec"] == volume["spec"]
    to_dir = bk.cli("backup.restore", "--to", str(bk.tmp / "out"), "--dry-run")
    assert to_dir.code == 0 and "restore snapshot" in to_dir.stdout, to_dir.output
    assert not (bk.tmp / "out").exists()
    assert repository_picture(bk.repo) == repository

    restored = bk.cli("backup.restore", "--component", "cluster", "--yes")
    assert restored.code == 0, restored.output
    assert "converged" in restored.stdout
    for obj in objects:
        meta = obj["metadata"]
        assert kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")) is not None, meta
    service = kube.get("v1", "Service", name, name)
    assert service["spec"]["clusterIP"] not in (None, "", "None", old_ip)
    assert kube.get("v1", "PersistentVolumeClaim", f"{name}-data", name)["status"]["phase"] == "Bound"
    assert kube.deployment_waiting(name, name) is None
    assert kube.get("v1", "ConfigMap", "written-after-backup", name) is None
    again = bk.cli("backup.restore", "--component", "cluster", "--dry-run")
    assert again.code == 0 and "nothing to do" in again.stdout, again.output


def test_backup_run_dry_run_prints_its_plan_and_writes_no_repository_and_no_state(bk: BackupEnv) -> None:
    state_before = sorted(str(p) for p in bk.state.rglob("*")) if bk.state.exists() else []
    planned = bk.cli("backup.run", "--dry-run")
    assert planned.code == 0, planned.output
    assert "run: " in planned.stdout and " init" in planned.stdout and " backup --json" in planned.stdout
    assert not bk.repo.exists()
    assert (sorted(str(p) for p in bk.state.rglob("*")) if bk.state.exists() else []) == state_before
    assert bk.receiver.pings() == [] and bk.receiver.messages() == []
    assert bk.cli("backup.run").code == 0
    repository = repository_picture(bk.repo)
    again = bk.cli("backup.run", "--dry-run")
    assert again.code == 0 and " init" not in again.stdout, again.output
    assert repository_picture(bk.repo) == repository


def test_a_complete_run_renews_the_clusters_backup_heartbeat_and_a_partial_one_does_not(
    bk: BackupEnv, kube: Kube
) -> None:
    """Prometheus alerts on the Lease (kube-state-metrics exports its renew time); backup.prom on the Mac is unseen."""
    from datetime import UTC, datetime

    from homelab.gitops.platform import BACKUP_LEASE

    kube.delete("coordination.k8s.io/v1", "Lease", BACKUP_LEASE, "monitoring")
    no_namespace = bk.cli("backup.run")
    assert no_namespace.code == 0, no_namespace.output
    assert "heartbeat was not renewed (no monitoring namespace yet" in no_namespace.stderr
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}])
    before = time.time()
    assert bk.cli("backup.run").code == 0
    lease = kube.get("coordination.k8s.io/v1", "Lease", BACKUP_LEASE, "monitoring")
    assert lease is not None
    renewed = datetime.strptime(lease["spec"]["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    assert before - 1 <= renewed <= time.time() + 1
    dead = yaml.safe_load(Path(bk.data["kubeconfig"]).read_text())
    dead["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    (bk.tmp / "dead-kubeconfig").write_text(yaml.safe_dump(dead))
    live_kubeconfig = bk.data["kubeconfig"]
    bk.data["kubeconfig"] = str(bk.tmp / "dead-kubeconfig")
    bk.save()
    assert bk.cli("backup.run").code == 3  # partial: the cluster component is missing
    bk.data["kubeconfig"] = live_kubeconfig
    bk.save()
    after = kube.get("coordination.k8s.io/v1", "Lease", BACKUP_LEASE, "monitoring")
    assert after is not None and after["spec"]["renewTime"] == lease["spec"]["renewTime"]
