"""Every task that changes something, run with ``--dry-run``, changes nothing and shows its plan.

One walk over the whole task collection, so a task added later cannot slip
through: it either takes ``--dry-run`` or is listed below as read-only, with the
reason. Each dry run goes against live parts (the sandbox API server, three sshd
test nodes with K3S "installed" by the recording installer, a real restic
repository holding one backup, a fake ``crontab``) and everything they hold is
compared before and after: cluster objects, node files, the state dir, the
crontab and the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from backup_support import Receiver, sealing_key_secret
from git_server import git_server
from k3s_nodes import Lab

from helpers import CliResult, run_cli, settled_objects
from homelab.cli import namespace
from homelab.core.kube import Kube
from homelab.gitops import deploy

pytestmark = pytest.mark.integration

# Tasks that never change anything, and why. Every other task must take --dry-run.
READ_ONLY = {
    "status": "reads every layer",
    "doctor": "reads every layer",
    "apps.list": "prints the catalog",
    "apps.status": "reads Deployments",
    "apps.url": "prints a URL",
    "backup.list": "lists snapshots",
    "backup.verify": "reads the repository; records only its verdict",
    "backup.drill": "restores into a scratch directory and dry-runs against the cluster",
    "config.schema": "prints the JSON Schema of the config model",
    "config.show": "prints the config",
    "config.validate": "validates the config",
    "gitops.diff": "server-side dry run",
    "gitops.status": "reads Applications",
    "k3s.preflight": "reads the nodes",
    "k3s.status": "reads the nodes and the cluster",
    "net.status": "reads the cluster",
    "sandbox.status": "reads the sandbox",
    "secrets.check": "scans the Git tree",
    "tls.status": "reads Certificates",
    "versions.check": "asks upstream; writes only its cache of a passing run",
    "vm.ip": "prints an address",
    "vm.plan": "terraform plan (read-only)",
    "vm.shell": "an interactive shell on a node",
    "vm.status": "reads limactl",
    "host.check": "reads the host's memory and CPUs",
    "host.after-boot": "waits for the nodes and Applications, then reports once (one Telegram message)",
    "net.forward": "runs the LAN relay in the foreground (the launchd agent's program); writes nothing",
    "secrets.grafana": "prints where Grafana's password is, never the password",
}

# Positional arguments (and extra flags) each dry run needs.
ARGS: dict[str, list[str]] = {
    # Restore creates only what is missing (nothing in the cluster here); the datastore always has work.
    "backup.restore": ["--component", "cluster", "--component", "datastore"],
    "gitops.sync": ["app-homepage"],
    "secrets.rotate": ["homepage", "API_KEY", "ROTATED_VALUE"],
    "secrets.seal": ["homepage"],
    "vm.adopt": ["k3s-server"],
    "vm.create": ["k3s-server"],
    "vm.delete": ["k3s-worker-2"],
    "vm.forget": ["k3s-worker-2"],
    "vm.start": ["k3s-server"],
    "vm.stop": ["k3s-server"],
}

# Tasks for which the prepared state leaves work to do: their dry run must print a non-empty plan.
WORK_EXPECTED = {
    "gitops.publish",
    "k3s.upgrade",
    "k3s.snapshot",
    "k3s.uninstall",
    "k3s.kubeconfig",
    "gitops.apply",
    "backup.run",
    "backup.restore",
    "backup.schedule",
    "secrets.rotate",
    "down",
}

HOMEPAGE_APP = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Application",
    "metadata": {"name": "app-homepage", "namespace": "argocd"},
    "spec": {
        "project": "default",
        "source": {"repoURL": "https://git.example.invalid/homelab.git", "path": "k8s/apps", "targetRevision": "main"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
    },
}

ACTION_LINE = re.compile(r"^\s+\[[\w.-]+\] \S", re.M)


def task_names() -> list[str]:
    return sorted(namespace.task_names)


def takes_dry_run(name: str) -> bool:
    return any("dry-run" in arg.names or "dry_run" in arg.names for arg in namespace[name].get_arguments())


def test_every_task_is_read_only_or_takes_dry_run() -> None:
    unknown = set(READ_ONLY) - set(task_names())
    assert not unknown, f"READ_ONLY names tasks that do not exist: {sorted(unknown)}"
    missing = [name for name in task_names() if name not in READ_ONLY and not takes_dry_run(name)]
    assert not missing, f"these tasks change something but have no --dry-run: {missing}"


def tree_digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under ``root``: its mode and content hash (a symlink: its target)."""
    found: dict[str, str] = {}
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if any(part in skip for part in path.parts):
            continue
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            found[rel] = f"link:{os.readlink(path)}"
        elif stat.S_ISREG(info.st_mode):
            found[rel] = f"{stat.S_IMODE(info.st_mode):o}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
        elif stat.S_ISDIR(info.st_mode):
            found[rel] = f"dir:{stat.S_IMODE(info.st_mode):o}"
    return found


KINDS = [
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.k8s.io/v1", "Ingress"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("argoproj.io/v1alpha1", "Application"),
    ("bitnami.com/v1alpha1", "SealedSecret"),
]


def cluster_digest(kube: Kube) -> dict[str, Any]:
    """Desired state of every object of the kinds a task may write, plus each node's schedulability."""
    found: dict[str, Any] = {}
    for kind, obj in settled_objects(kube, KINDS):
        meta = obj["metadata"]
        found[f"{kind} {meta.get('namespace', '')}/{meta['name']}"] = {
            "generation": meta.get("generation"),
            "labels": meta.get("labels"),
            "annotations": {
                k: v for k, v in (meta.get("annotations") or {}).items() if "leader" not in k and "kwok" not in k
            },
            "body": {k: v for k, v in obj.items() if k not in ("metadata", "status")},
        }
    for node in kube.list_objects("v1", "Node"):
        found[f"Node {node['metadata']['name']}"] = {
            "unschedulable": (node.get("spec") or {}).get("unschedulable"),
            # node.kubernetes.io/* taints are the node lifecycle controller's (a late kwok heartbeat), not ours.
            "taints": [t for t in (node.get("spec") or {}).get("taints") or [] if not _lifecycle_taint(t)],
        }
    return found


def _lifecycle_taint(taint: dict[str, Any]) -> bool:
    return str(taint.get("key", "")).startswith("node.kubernetes.io/")


class World:
    """Everything a dry run could change, and a way to take its picture."""

    def __init__(self, lab: Lab, kube: Kube, crontab_file: Path, repo: Path) -> None:
        self.lab, self.kube, self.crontab_file, self.repo = lab, kube, crontab_file, repo

    def picture(self) -> dict[str, Any]:
        return {
            "cluster": cluster_digest(self.kube),
            "nodes": {name: tree_digest(node.root, skip=("sshd.pid",)) for name, node in self.lab.nodes.items()},
            "state": tree_digest(self.lab.tmp / "state"),
            "crontab": self.crontab_file.read_text() if self.crontab_file.exists() else None,
            "repository": tree_digest(self.repo, skip=("locks",)),
            "tree": tree_digest(self.lab.tmp / "sealed"),
            "plaintext": tree_digest(
                self.lab.tmp, skip=("state", "repo", "sealed", "k3s-server", "k3s-worker-1", "k3s-worker-2", "bin")
            ),
        }

    def cli(self, *args: str) -> CliResult:
        return run_cli(list(args), self.env())

    def env(self) -> dict[str, str]:
        return {
            "HOMELAB_CONFIG": str(self.lab.config),
            "PATH": f"{self.lab.tmp / 'bin'}:{os.environ['PATH']}",
            "FAKE_CRONTAB_FILE": str(self.crontab_file),
            "HOMELAB_SCHEDULER": "cron",  # the fake crontab, on a Mac too
            "ROTATED_VALUE": "a-new-value-for-the-walk",
        }


def fake_crontab(bin_dir: Path) -> None:
    """A ``crontab`` that keeps the table in $FAKE_CRONTAB_FILE: no test touches the real one."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "crontab"
    script.write_text(
        "#!/bin/sh\n"
        'f="$FAKE_CRONTAB_FILE"\n'
        'if [ "$1" = "-l" ]; then [ -f "$f" ] && exec cat "$f"; echo "no crontab for $(id -un)" >&2; exit 1; fi\n'
        'if [ "$1" = "-" ]; then cat > "$f"; exit 0; fi\n'
        'if [ "$1" = "-r" ]; then rm -f "$f"; exit 0; fi\n'
        'cat "$1" > "$f"\n'
    )
    script.chmod(0o755)


@pytest.fixture
def world(lab: Lab, kube: Kube, receiver: Receiver) -> Iterator[World]:
    """The lab with K3S installed, a first backup taken, an app added and a K3S upgrade pending."""
    with ExitStack() as stack:
        yield from _world(lab, kube, receiver, stack)


def _world(lab: Lab, kube: Kube, receiver: Receiver, stack: ExitStack) -> Iterator[World]:
    tmp = lab.tmp
    fake_crontab(tmp / "bin")
    (tmp / "pw").write_text("correct horse battery staple\n")
    (tmp / "pw").chmod(0o600)
    lab.data["backup"] = {
        "repository": str(tmp / "repo"),
        "password": {"file": str(tmp / "pw")},
        "notify_api": receiver.url,
        "deadman_url": f"{receiver.url}/ping",
        # The apps' volumes are not bound on this lab (nothing provisions them): back up the rest.
        "components": ["config", "cluster", "sealed-keys", "datastore"],
    }
    # backup.schedule refuses an env: reference (cron never has the variable): the bot token is in a file.
    (tmp / "bot-token").write_text("123456789" + ":" + "Ab" * 17 + "c\n")
    (tmp / "bot-token").chmod(0o600)
    lab.data.setdefault("monitoring", {}).setdefault("telegram", {})["bot_token"] = {"file": str(tmp / "bot-token")}
    # The repository Argo CD would sync: a real Git server on 127.0.0.1, empty, so gitops.publish has work.
    server = stack.enter_context(git_server(tmp / "git"))
    lab.data["gitops"] = {**(lab.data.get("gitops") or {}), "repo_url": server.create()}
    lab.data["secrets"] = {
        "sealed_dir": str(tmp / "sealed"),
        "plaintext_file": str(tmp / "secrets.local.yaml"),
        "cert_file": str(tmp / "cert.pem"),
    }
    lab.save()
    # A plaintext secret to rotate and a pinned certificate to seal it with (offline, as on the Mac).
    _, cert_pem = sealing_key_secret("walk-key")
    (tmp / "cert.pem").write_text(cert_pem)
    plaintext = {"secrets": [{"name": "homepage", "namespace": "homepage", "data": {"API_KEY": "old-value"}}]}
    (tmp / "secrets.local.yaml").write_text(yaml.safe_dump(plaintext))
    (tmp / "secrets.local.yaml").chmod(0o600)
    # An Application for gitops.sync to ask about (no Argo CD runs here: only the object a sync patches).
    app_crd = [c for c in deploy.component_crds() if c["metadata"]["name"] == "applications.argoproj.io"]
    deploy.install_crds(kube, app_crd)
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}, HOMEPAGE_APP])
    world = World(lab, kube, tmp / "crontab.txt", tmp / "repo")
    for step in (["k3s.install"], ["backup.run"]):
        done = world.cli(*step)
        assert done.code == 0, f"preparing the walk: inv {' '.join(step)} failed:\n{done.output}"
    # Work for the dry runs: a new app to apply, a K3S version to roll to.
    walk_app = {"image": "traefik/whoami:v1.11", "port": 80, "hostname": "walk"}
    lab.data["apps"] = {**(lab.data.get("apps") or {}), "walk": walk_app}
    lab.data["k3s"]["version"] = "v1.34.9+k3s1"
    lab.save()
    yield world


def test_every_dry_run_changes_nothing_and_shows_its_plan(world: World) -> None:
    failures: list[str] = []
    for name in task_names():
        if name in READ_ONLY or not takes_dry_run(name):
            continue  # the test above names tasks without --dry-run
        before = world.picture()
        result = world.cli(name, "--dry-run", *ARGS.get(name, []))
        after = world.picture()
        changed = sorted(f"{area}: {key}" for area in before for key in _changed_keys(before[area], after[area]))
        if changed:
            failures.append(f"inv {name} --dry-run changed {changed[:5]}")
        if result.code not in (0, 1):
            failures.append(f"inv {name} --dry-run exited {result.code}: {result.output.strip()[-400:]}")
        if name in WORK_EXPECTED and not ACTION_LINE.search(result.stdout):
            failures.append(f"inv {name} --dry-run printed no action although there is work:\n{result.output[-400:]}")
    assert not failures, "\n".join(failures)


def _changed_keys(before: Any, after: Any) -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        keys = set(before) | set(after)
        return [
            str(k)
            for k in keys
            if json.dumps(before.get(k), sort_keys=True) != json.dumps(after.get(k), sort_keys=True)
        ]
    return [] if before == after else ["(whole)"]


def test_the_walk_sees_a_change_when_a_task_really_acts(world: World) -> None:
    """The pictures are sharp enough: real (not dry) runs and a direct cluster write are seen as changes."""
    before = world.picture()
    assert world.cli("backup.schedule").code == 0
    assert world.cli("secrets.rotate", "homepage", "API_KEY", "ROTATED_VALUE").code == 0
    world.kube.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "walk", "namespace": "default"}}])
    after = world.picture()
    assert _changed_keys(before["crontab"], after["crontab"])
    assert _changed_keys(before["plaintext"], after["plaintext"])
    assert _changed_keys(before["tree"], after["tree"])
    assert "ConfigMap default/walk" in _changed_keys(before["cluster"], after["cluster"])


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
