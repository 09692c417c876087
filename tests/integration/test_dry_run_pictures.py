"""gitops.sync, secrets.rotate, vm.forget and vm.adopt: a dry run leaves the whole picture as it was.

Each test takes a picture of everything the task could reach, not only the one thing
it means to change: every file the homelab owns (Terraform state, the stand-in
Lima's VMs, known_hosts, the plaintext and sealed trees, the config), the limactl
calls made, and, for the cluster task, every object of the kinds a task may write
(``helpers.settled_objects``). The dry run must print its plan's action lines and
leave the picture unchanged; the same command without ``--dry-run`` must then change
it, which shows the picture is sharp enough to see the write.

Real parts: terraform with the recording limactl (tests/fakes/limactl), a real sshd,
the real kubeseal, the sandbox API server with Argo CD's Application CRD.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from backup_support import sealing_key_secret

from helpers import CliResult, loopback_data, run_cli, sample_application, settled_objects, stand_in_lima_env
from homelab.core.kube import Kube
from homelab.core.session import Session
from homelab.gitops import deploy
from sshd import SshHost, start_sshd

pytestmark = pytest.mark.integration

ACTION_LINE = re.compile(r"^\s+\[[\w.-]+\] (.*)$", re.M)


def actions(result: CliResult) -> list[str]:
    """The plan's action lines the command printed, without the host prefix."""
    return ACTION_LINE.findall(result.stdout)


def files(*roots: Path) -> dict[str, str]:
    """Every file under ``roots``: its mode and content hash (locks left out: a read takes them too)."""
    found: dict[str, str] = {}
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file() and not path.is_symlink() and path.name not in ("lock", "sshd.pid"):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path)] = f"{stat.S_IMODE(path.stat().st_mode):o}:{digest}"
    return found


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The keys whose value differs between two pictures (added and removed ones included)."""

    def dump(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    return sorted(k for k in set(before) | set(after) if dump(before.get(k)) != dump(after.get(k)))


# vm.forget and vm.adopt on VMs Terraform made (stand-in limactl), one of them answering on a real sshd.


@pytest.fixture
def vms(tmp_path: Path) -> Iterator[tuple[dict[str, str], SshHost]]:
    """Three VMs created by ``vm.apply`` (Terraform state, keys pinned); k3s-worker-2's SSH is a real sshd."""
    binary = "terraform" if shutil.which("terraform") else "tofu" if shutil.which("tofu") else None
    if binary is None:
        pytest.fail("terraform or tofu must be installed (scripts/get-binaries.sh tofu)")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    host = start_sshd("127.0.0.13", tmp_path / "sshd", key)
    data = loopback_data()
    data["target"] = "lima"
    data["terraform"] = {"binary": binary}
    data["nodes"][2]["ssh_port"] = host.port  # k3s-worker-2 at 127.0.0.13
    (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
    env = stand_in_lima_env(tmp_path, tmp_path / "homelab.yaml", key)
    made = run_cli(["vm.apply"], env)
    assert made.code == 0, made.output
    yield env, host
    host.stop()


def vm_picture(env: dict[str, str]) -> dict[str, Any]:
    """Every file of the test's directory: the state dir (Terraform state, templates, inventory, known_hosts),
    the stand-in Lima's VMs, LIMA_HOME, the config, and the record of every limactl call."""
    return files(Path(env["HOMELAB_CONFIG"]).parent)


def sshd_fingerprint(host: SshHost) -> str:
    listed = subprocess.run(["ssh-keygen", "-lf", str(host.host_public_key)], capture_output=True, text=True)
    return listed.stdout.split()[1]


def test_forget_and_adopt_dry_runs_leave_terraform_state_vms_and_keys_then_the_real_runs_change_only_the_keys(
    vms: tuple[dict[str, str], SshHost],
) -> None:
    env, host = vms
    state = Path(env["HOMELAB__STATE_DIR"])
    known_hosts, tfstate = state / "known_hosts", str(state / "terraform" / "terraform.tfstate")
    assert f"[127.0.0.13]:{host.port} " in known_hosts.read_text(), "vm.apply pinned the VM's key"

    before = vm_picture(env)
    dry = run_cli(["vm.forget", "k3s-worker-2", "--dry-run"], env)  # no --yes: a dry run asks nothing
    assert dry.code == 0, dry.output
    assert [line.split(" (")[0] for line in actions(dry)] == [f"write {known_hosts}"]
    assert changed(before, vm_picture(env)) == []

    forgot = run_cli(["vm.forget", "k3s-worker-2", "--yes"], env)
    assert forgot.code == 0 and "host key forgotten" in forgot.stdout, forgot.output
    after = vm_picture(env)
    assert changed(before, after) == [str(known_hosts)], "forgetting a key touches neither Terraform nor the VM"
    assert f"[127.0.0.13]:{host.port} " not in known_hosts.read_text()
    assert tfstate in after

    seen = sshd_fingerprint(host)
    dry = run_cli(["vm.adopt", "k3s-worker-2", "--dry-run"], env)  # no --fingerprint, no --yes: nothing asked
    assert dry.code == 0, dry.output
    assert actions(dry) == [f"k3s-worker-2 ([127.0.0.13]:{host.port}) presents {seen}", actions(dry)[1]]
    assert actions(dry)[1].startswith(f"write {known_hosts} (mode 0600, ")
    assert changed(after, vm_picture(env)) == []

    pinned = run_cli(["vm.adopt", "k3s-worker-2", "--fingerprint", seen], env)
    assert pinned.code == 0 and f"host key {seen} pinned" in pinned.stdout, pinned.output
    assert changed(after, vm_picture(env)) == [str(known_hosts)]
    assert run_cli(["vm.adopt", "k3s-worker-2", "--fingerprint", seen, "--dry-run"], env).stdout.count("write") == 0


# secrets.rotate: the plaintext file and the SealedSecret, sealed offline by the real kubeseal.

OLD, NEW = "old-value-71c0de", "rotated-value-2b9e55"


@pytest.fixture
def secrets_home(tmp_path: Path) -> dict[str, str]:
    """A homelab with a pinned certificate (offline, as on the Mac), one plaintext secret and its SealedSecret."""
    data = loopback_data()
    data["state_dir"] = str(tmp_path / "state")
    data["secrets"] = {
        "sealed_dir": str(tmp_path / "sealed"),
        "plaintext_file": str(tmp_path / "secrets.local.yaml"),
        "cert_file": str(tmp_path / "cert.pem"),
    }
    (tmp_path / "homelab.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "cert.pem").write_text(sealing_key_secret("rotate-key")[1])
    plaintext = {"secrets": [{"name": "api", "namespace": "apps", "data": {"token": OLD}}]}
    (tmp_path / "secrets.local.yaml").write_text(yaml.safe_dump(plaintext))
    (tmp_path / "secrets.local.yaml").chmod(0o600)
    env = {"HOMELAB_CONFIG": str(tmp_path / "homelab.yaml"), "NEW_TOKEN": NEW}
    sealed = run_cli(["secrets.seal"], env)
    assert sealed.code == 0, sealed.output
    return env


def test_rotate_dry_run_leaves_every_file_then_rotate_rewrites_the_plaintext_and_the_sealed_secret(
    secrets_home: dict[str, str],
) -> None:
    home = Path(secrets_home["HOMELAB_CONFIG"]).parent
    plaintext, sealed = home / "secrets.local.yaml", home / "sealed" / "apps-api.yaml"
    rotate = ["secrets.rotate", "--name", "api", "--key", "token", "--value-env", "NEW_TOKEN"]
    before = files(home)

    dry = run_cli([*rotate, "--dry-run"], secrets_home)
    assert dry.code == 0, dry.output
    assert [line.split(" (")[0] for line in actions(dry)] == [f"write {plaintext}", f"write {sealed}"]
    assert actions(dry)[0].startswith(f"write {plaintext} (secret, mode 0600, ")
    assert NEW not in dry.output and OLD not in dry.output
    assert changed(before, files(home)) == []

    done = run_cli(rotate, secrets_home)
    assert done.code == 0 and NEW not in done.output, done.output
    assert changed(before, files(home)) == sorted([str(plaintext), str(sealed)])
    assert yaml.safe_load(plaintext.read_text())["secrets"][0]["data"]["token"] == NEW


# gitops.sync: one merge patch of an Application in the sandbox cluster.

APP = "dry-run-picture"
KINDS = [
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("argoproj.io/v1alpha1", "Application"),
    ("argoproj.io/v1alpha1", "AppProject"),
]


def cluster_picture(kube: Kube) -> dict[str, Any]:
    """Every object of the kinds a task may write: what was asked for and how often it changed."""
    found = {}
    for kind, obj in settled_objects(kube, KINDS):
        meta = obj["metadata"]
        found[f"{kind} {meta.get('namespace', '')}/{meta['name']}"] = {
            "generation": meta.get("generation"),
            "labels": meta.get("labels"),
            "annotations": {k: v for k, v in (meta.get("annotations") or {}).items() if "leader" not in k},
            "body": {k: v for k, v in obj.items() if k not in ("metadata", "status")},
        }
    return found


@pytest.fixture
def application(kube: Kube) -> Iterator[str]:
    """An Application for the sync to patch (no Argo CD controller runs: only the object a sync request writes)."""
    crds = [c for c in deploy.component_crds() if c["metadata"]["name"] == "applications.argoproj.io"]
    assert crds, "scripts/get-binaries.sh crds provides Argo CD's CRDs"
    deploy.install_crds(kube, crds)
    app = sample_application(APP)
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}, app])
    yield APP
    kube.delete("argoproj.io/v1alpha1", "Application", APP, "argocd")


def test_sync_dry_run_leaves_every_object_then_sync_patches_only_the_application(
    kube: Kube, sandbox_session: Session, application: str
) -> None:
    env = {"HOMELAB_CONFIG": str(sandbox_session.loaded.files[0])}
    before = cluster_picture(kube)

    dry = run_cli(["gitops.sync", application, "--dry-run"], env)
    assert dry.code == 0, dry.output
    assert actions(dry) == [f"patch Application argocd/{application}: sync now, with prune"]
    assert changed(before, cluster_picture(kube)) == []

    sent = run_cli(["gitops.sync", application], env)
    assert sent.code == 0 and f"sync of {application} requested" in sent.stdout, sent.output
    assert changed(before, cluster_picture(kube)) == [f"Application argocd/{application}"]
