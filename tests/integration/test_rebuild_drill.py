"""The disaster drill: the homelab rebuilt by ``inv up --restore`` from its offsite copy alone.

One project of its own (``HOMELAB_ROOT``) on the sandbox, brought up by ``inv up``:
marker files in every app volume and a sealed secret whose value only the backup's
Sealed Secrets key can decrypt (its plaintext is deleted with the rest). One backup,
copied to a local S3 server (versitygw on 127.0.0.1). Then the sandbox goes, and with
it every local file of the homelab: the state directory, the local repository, the
plaintext secrets. What is left is what an owner keeps elsewhere: the project in Git
(its sealed files), the config, the restic password and the offsite credentials.

The rebuild is stopped with SIGKILL while it fills the volumes (no Application may exist
then: Argo CD syncs an app only once its data is back) and run again, which finishes it.
Every marker comes back byte for byte, the secret unsealed, every Application Synced and
Healthy. A second ``up --restore`` on the rebuilt target is refused, as is an unknown snapshot.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from backup_support import kill_group
from invoke import Context
from s3_server import S3Server

from helpers import loopback_data, run_cli, start_inv
from homelab.core.kube import Kube
from homelab.core.session import Session
from homelab.gitops import hold, local, tree
from homelab.root import rebuild
from homelab.sandbox import cluster, controllers

pytestmark = pytest.mark.integration

REFERENCED = {
    "CLOUDFLARE_API_TOKEN": "cf-token-" + uuid.uuid4().hex,
    "VAULTWARDEN_ADMIN_TOKEN": "admin-" + uuid.uuid4().hex,
}
MARKER_SECRET = ("homepage", "drill-marker")
REBUILD = ["up", "--restore", "--restore-from", "offsite"]


@dataclass
class Drill:
    root: Path
    env: dict[str, str]
    state: Path
    repository: Path
    plaintext: Path
    markers: dict[Path, bytes] = field(repr=False)  # a file in an app volume, as seen from here -> its bytes
    secret_value: str = field(repr=False)

    def session(self) -> Session:
        return Session(Context(), config_path=Path(self.env["HOMELAB_CONFIG"]), out=lambda _: None)

    def kube(self) -> Kube:
        s = self.session()
        paths = cluster.paths_for(s.cfg, s.state_dir)
        return Kube(paths.kubeconfig, paths.context)


def volume_dir(state: Path, app: str) -> Path:
    return cluster.volumes_dir(state) / app / f"{app}-data"


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    """The sandbox up with markers and a sealed secret, one backup copied offsite; then everything local gone."""
    root = tmp_path_factory.mktemp("drill-project")
    keep = tmp_path_factory.mktemp("drill-kept-elsewhere")  # the password manager, so to speak
    server = S3Server(keep / "s3").start()
    (root / "config").mkdir()
    state, repository = root / "state", root / "backups" / "restic"
    (keep / "pw").write_text("correct horse battery staple\n")
    (keep / "pw").chmod(0o600)
    data = loopback_data()
    data.update({"name": "drill", "state_dir": str(state), "target": "sandbox"})
    plaintext = root / "config" / "secrets.local.yaml"
    data["secrets"] = {"sealed_dir": "k8s/sealed", "plaintext_file": "config/secrets.local.yaml"}
    (keep / "tunnel.json").write_text(json.dumps({"TunnelID": "not-a-real-tunnel", "TunnelSecret": uuid.uuid4().hex}))
    (keep / "tunnel.json").chmod(0o600)
    data["cloudflare"] = {**data.get("cloudflare", {}), "tunnel_credentials": {"file": str(keep / "tunnel.json")}}
    (keep / "telegram-bot-token").write_text("123456789:" + uuid.uuid4().hex + "\n")
    (keep / "telegram-bot-token").chmod(0o600)
    data["monitoring"]["telegram"]["bot_token"] = {"file": str(keep / "telegram-bot-token")}
    data["backup"] = {
        **data["backup"],
        "repository": str(repository),
        "password": {"file": str(keep / "pw")},
        "notify_api": "http://127.0.0.1:9",  # nothing listens: a notification fails quietly, never the backup
        "offsite": {"repository": server.repository("offsite"), "credentials": server.credential_files(keep)},
    }
    (root / "config" / "homelab.yaml").write_text(yaml.safe_dump(data))
    value = secrets.token_urlsafe(24)
    namespace, name = MARKER_SECRET
    plaintext.write_text(yaml.safe_dump({"secrets": [{"name": name, "namespace": namespace, "data": {"v": value}}]}))
    plaintext.chmod(0o600)
    env = {"HOMELAB_CONFIG": str(root / "config" / "homelab.yaml"), "HOMELAB_ROOT": str(root), **REFERENCED}
    made = Drill(root, env, state, repository, plaintext, {}, value)
    try:
        first = run_cli(["up"], env, timeout=900)
        assert first.code == 0, first.output
        sealed = run_cli(["secrets.seal", "--name", name], env, timeout=300)
        assert sealed.code == 0, sealed.output
        published = run_cli(["up"], env, timeout=900)  # Argo CD syncs the new SealedSecret; the controller unseals it
        assert published.code == 0, published.output
        apps = sorted(n for n, a in made.session().cfg.deployed_apps.items() if a.storage)
        assert len(apps) >= 2, apps
        for app in apps:
            where = volume_dir(state, app)
            for rel in ("drill/marker.bin", f"drill/nested/{app}.bin"):
                (where / rel).parent.mkdir(parents=True, exist_ok=True)
                (where / rel).write_bytes(os.urandom(4096) + app.encode())
                made.markers[where / rel] = (where / rel).read_bytes()
        assert made.kube().get("v1", "Secret", name, namespace) is not None, "the marker secret was never unsealed"
        backed_up = run_cli(["backup.run"], env, timeout=900)
        assert backed_up.code == 0 and "1 snapshot(s) copied" in backed_up.stdout, backed_up.output

        down = run_cli(["sandbox.down"], env, timeout=300)
        assert down.code == 0, down.output
        shutil.rmtree(state)
        shutil.rmtree(repository)
        plaintext.unlink()
        assert not any(path.exists() for path in made.markers)
        yield made
    finally:
        run_cli(["sandbox.down"], env, timeout=300)
        server.stop()


def test_the_dry_run_prints_the_rebuild_and_changes_nothing(drill: Drill) -> None:
    dry = run_cli([*REBUILD, "--dry-run"], drill.env, timeout=300)
    assert dry.code == 0, dry.output
    steps = [line.strip() for line in dry.stdout.splitlines() if ". " in line]
    said = "\n".join(steps)
    assert "restore the Sealed Secrets controller keys" in said, dry.output
    assert "fill vaultwarden's volume" in said and "bring up layer gitops" in said, dry.output
    fills = [i for i, line in enumerate(steps) if "fill " in line]
    gitops = next(i for i, line in enumerate(steps) if "layer gitops" in line)
    assert fills and max(fills) < gitops, said
    assert not (drill.state / "kwok").exists() and not (drill.state / rebuild.MARKER).exists()


def test_the_offsite_copy_alone_rebuilds_every_volume_byte_for_byte_and_the_sealed_secret(drill: Drill) -> None:
    # Stopped while it fills the volumes: no Application may exist yet.
    process = start_inv(REBUILD, drill.env, merge_stderr=True)
    seen = ""
    try:
        assert process.stdout is not None
        for line in process.stdout:
            seen += line
            if line.startswith("[") and "] fill " in line:
                break
        applications = drill.kube().list_objects(*hold.APPLICATION)
    finally:
        kill_group(process)
    assert "] fill " in seen, seen
    assert applications == [], [a["metadata"]["name"] for a in applications]
    assert (drill.state / rebuild.MARKER).is_file()

    again = run_cli(REBUILD, drill.env, timeout=1200)
    assert again.code == 0, again.output
    assert "an interrupted rebuild finished sealed-keys, cluster" in again.stdout, again.output
    assert "rebuilt from snapshot" in again.stdout, again.output
    assert not (drill.state / rebuild.MARKER).exists()

    for path, data in drill.markers.items():
        assert path.read_bytes() == data, path
    namespace, name = MARKER_SECRET
    unsealed = drill.kube().get("v1", "Secret", name, namespace)
    assert unsealed is not None
    assert base64.b64decode(unsealed["data"]["v"]).decode() == drill.secret_value
    s = drill.session()
    url = controllers.repo_url(s)
    names = sorted(tree.applications(tree.render(local.sandbox_config(s.cfg, url), local_controllers=True)))
    commit = local.pushed_commit(controllers.layout(s).repository)
    assert local.applications_pending(drill.kube(), names, lambda: commit) is None


def test_a_rebuild_on_a_populated_target_or_of_an_unknown_snapshot_is_refused(drill: Drill) -> None:
    refused = run_cli(REBUILD, drill.env, timeout=300)
    assert refused.code == 2, refused.output
    assert "already holds" in refused.output and "inv backup.restore" in refused.output, refused.output
    unknown = run_cli([*REBUILD[:2], "0badc0de", *REBUILD[2:]], drill.env, timeout=300)
    assert unknown.code == 2 and "no homelab snapshot '0badc0de'" in unknown.output, unknown.output
