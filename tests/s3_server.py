"""A real S3 server on 127.0.0.1 for the offsite tests: versitygw over a directory.

versitygw (github.com/versity/versitygw, built by ``scripts/get-binaries.sh versitygw``)
serves the S3 API from a plain directory (its ``posix`` backend: one directory per
bucket), with one root key pair. The tests start, stop and freeze it to play a
provider that is down, slow or refusing a key.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from homelab.core.tools import require


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    root: Path
    port: int = field(default_factory=free_port)
    access: str = field(default_factory=lambda: "AK" + secrets.token_hex(8).upper())
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repository(self, bucket: str) -> str:
        return f"s3:{self.endpoint}/{bucket}/homelab"

    def start(self) -> S3Server:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        log = (self.root / "versitygw.log").open("ab")
        env = {**os.environ, "ROOT_ACCESS_KEY_ID": self.access, "ROOT_SECRET_ACCESS_KEY": self.secret}
        self.process = subprocess.Popen(
            [require("versitygw"), "--port", f"127.0.0.1:{self.port}", "posix", str(self.root / "data")],
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.process.poll() is not None:
                raise RuntimeError(f"versitygw exited: {(self.root / 'versitygw.log').read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("versitygw did not listen within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def credential_files(
        self, where: Path, access: str | None = None, secret: str | None = None
    ) -> dict[str, dict[str, str]]:
        """The config's ``credentials`` with each key in a 0600 file under ``where``."""
        refs: dict[str, dict[str, str]] = {}
        for name, value in (
            ("AWS_ACCESS_KEY_ID", access or self.access),
            ("AWS_SECRET_ACCESS_KEY", secret or self.secret),
        ):
            path = where / f"offsite-{name.lower()}"
            path.write_text(value + "\n")
            path.chmod(0o600)
            refs[name] = {"file": str(path)}
        return refs
