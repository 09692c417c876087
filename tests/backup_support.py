"""Support for backup tests: a config on the shared sandbox, a fake Telegram/dead-man receiver,
and a Sealed Secrets controller key made with the cryptography package."""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers import CliResult, loopback_data, run_cli, start_inv

KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"


@dataclass
class Receiver:
    """Records every HTTP request made to it (Telegram sendMessage, dead-man pings)."""

    url: str
    requests: list[tuple[str, str]] = field(default_factory=list)

    def messages(self) -> list[str]:
        return [body for path, body in self.requests if "sendMessage" in path]

    def pings(self) -> list[str]:
        return [path for path, _ in self.requests if path.startswith("/ping")]


def start_receiver() -> tuple[Receiver, http.server.ThreadingHTTPServer]:
    receiver = Receiver("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            receiver.requests.append((self.path, body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        do_GET = do_POST = _record

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@dataclass
class BackupEnv:
    """A homelab config whose backups go to a temp restic repository."""

    tmp: Path
    data: dict[str, Any]
    receiver: Receiver
    # Built at run time so that no token-shaped literal is tracked by Git (secrets.check would flag it).
    bot_token: str = field(default_factory=lambda: "123456789" + ":" + "Ab" * 17 + "c")

    @property
    def config(self) -> Path:
        return self.tmp / "homelab.yaml"

    @property
    def repo(self) -> Path:
        return Path(self.data["backup"]["repository"])

    @property
    def state(self) -> Path:
        return Path(self.data["state_dir"])

    def save(self) -> None:
        self.config.write_text(yaml.safe_dump(self.data))

    def env(self) -> dict[str, str]:
        return {"HOMELAB_CONFIG": str(self.config)}

    def cli(self, *args: str) -> CliResult:
        return run_cli(list(args), self.env())

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start ``inv ARGS`` in its own process group (so a kill reaches restic too)."""
        return start_inv(list(args), self.env())

    def write_plaintext(self, text: str) -> None:
        """The git-ignored plaintext secrets file, 0600 as the config requires."""
        path = self.tmp / "secrets.local.yaml"
        path.write_text(text)
        path.chmod(0o600)

    def restic(self, *args: str) -> subprocess.CompletedProcess[str]:
        from homelab.core.tools import require

        env = {**os.environ, "RESTIC_REPOSITORY": str(self.repo), "RESTIC_PASSWORD_FILE": str(self.tmp / "pw")}
        return subprocess.run([require("restic"), *args], env=env, capture_output=True, text=True)


def make_backup_env(tmp: Path, kubeconfig: Path, receiver: Receiver, name: str = "itest") -> BackupEnv:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "pw").write_text("correct horse battery staple\n")
    (tmp / "pw").chmod(0o600)
    data = loopback_data()
    data.update({"name": name, "state_dir": str(tmp / "state"), "kubeconfig": str(kubeconfig)})
    data["backup"] = {
        "repository": str(tmp / "repo"),
        "password": {"file": str(tmp / "pw")},
        "verify_read_percent": 100,
        # This sandbox runs none of the config's apps, so their claims do not exist: a run that read volumes
        # would be partial ("claim missing or not bound"). Volumes are tested where apps run (the drill, nodes).
        "components": ["config", "cluster", "sealed-keys"],
        "notify_api": receiver.url,
        "deadman_url": f"{receiver.url}/ping",
    }
    data["secrets"] = {
        "sealed_dir": str(tmp / "sealed"),
        "plaintext_file": str(tmp / "secrets.local.yaml"),
        "cert_file": str(tmp / "cert.pem"),
    }
    env = BackupEnv(tmp, data, receiver)
    # In a file, as the reference config has it; never the reference's ~/.config/homelab/telegram-bot-token.
    (tmp / "bot-token").write_text(env.bot_token + "\n")
    (tmp / "bot-token").chmod(0o600)
    data["monitoring"]["telegram"]["bot_token"] = {"file": str(tmp / "bot-token")}
    env.save()
    return env


def app_deployment(name: str, replicas: int) -> dict[str, Any]:
    """App ``name``'s Deployment of ``replicas`` pods mounting its claim ``<name>-data``."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "app", "image": "registry.home.arpa/notes:1"}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"{name}-data"}}],
                },
            },
        },
    }


def kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def sealing_key_secret(name: str, namespace: str = "kube-system") -> tuple[dict[str, Any], str]:
    """A controller key Secret like the one Sealed Secrets generates, and its certificate PEM."""
    from certs import self_signed
    from cryptography.hazmat.primitives import serialization

    key, cert = self_signed("sealed-secret", valid_days=3650)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace, "labels": {KEY_LABEL: "active"}},
        "data": {
            "tls.crt": base64.b64encode(cert_pem.encode()).decode(),
            "tls.key": base64.b64encode(key_pem.encode()).decode(),
        },
    }
    return secret, cert_pem


def local_path_claim(kube: Any, name: str, node: str) -> str:
    """App ``name``'s bound local-path volume on ``node``, as K3S's provisioner makes one; its path there."""
    inside = f"/var/lib/rancher/k3s/storage/pvc-{name}"
    on_node = {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
    kube.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"pv-{name}"},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "local-path",
                    "hostPath": {"path": inside},
                    "claimRef": {"namespace": name, "name": f"{name}-data"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [on_node]}]}},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"{name}-data", "namespace": name},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "local-path",
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ]
    )

    def bound() -> str | None:
        claim = kube.get("v1", "PersistentVolumeClaim", f"{name}-data", name) or {}
        return None if claim.get("status", {}).get("phase") == "Bound" else "pending"

    kube.wait_for("claim", bound, timeout=60)
    return inside
