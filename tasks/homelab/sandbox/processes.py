"""Long-running local programs: started in the background, found again by pid file, probed, stopped.

What the sandbox needs to run its controllers as processes rather than pods. A
process is found through the pid file its launcher wrote (``launch.py``) and
counted as ours only while it is alive, not a zombie, and its command line still
holds a marker word: a pid reused by an unrelated program after a reboot or a
crash is not taken for it. Every probe talks to 127.0.0.1 only, through no proxy.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from homelab.core import state_files
from homelab.core.plan import Run


def read_pid(path: Path) -> int | None:
    try:
        return int((state_files.read_text(path, state_files.SANDBOX_RECORD) or "").strip())
    except ValueError:
        return None


def running(pid: int, marker: str) -> bool:
    """True when ``pid`` is a live process (not a zombie) whose command line holds ``marker``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no /proc (macOS): the signal probe is all there is
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state != "Z" and marker in cmdline


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n    ".join(text[-lines:]) or "(empty log)"


def free_ports(names: Iterable[str]) -> dict[str, int]:
    """A port on 127.0.0.1 for each name, each one the kernel just handed out; never two the same.

    Every socket stays bound until all are chosen, so the kernel cannot hand one port out twice.
    """
    with contextlib.ExitStack() as stack:
        bound = {}
        for name in names:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            bound[name] = int(sock.getsockname()[1])
        return bound


@dataclass(frozen=True)
class Probe:
    """How to tell a process serves: an HTTP GET answering 200, a git fetch's first reply, or a redis PING."""

    kind: str  # "http", "git" or "redis"
    port: int
    path: str = ""  # http: the URL path; git: the repository under the daemon's base path
    password_file: Path | None = None

    def describe(self) -> str:
        where = f"127.0.0.1:{self.port}"
        return f"http://{where}{self.path}" if self.kind == "http" else f"{self.kind} {where}"

    def check(self) -> str | None:
        """None when it serves, else what is wrong (one line)."""
        try:
            if self.kind == "http":
                return self._http()
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                return self._redis(sock) if self.kind == "redis" else self._git(sock)
        except OSError as err:
            return f"{self.describe()}: {err.strerror or err}"

    def _http(self) -> str | None:
        # No proxy handler: the probe must reach 127.0.0.1 even where HTTP_PROXY is set.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}{self.path}", timeout=3) as response:
            return None if response.status == 200 else f"{self.describe()}: HTTP {response.status}"

    def _git(self, sock: socket.socket) -> str | None:
        """Ask for the repository's refs as a fetch would, then end the session cleanly (a bare close is logged)."""
        request = f"git-upload-pack /{self.path}\0host=127.0.0.1\0".encode()
        sock.sendall(f"{len(request) + 4:04x}".encode() + request)
        reply = sock.recv(4096)
        sock.sendall(b"0000")
        if len(reply) < 4 or b"ERR " in reply[:64]:
            return f"{self.describe()}: {reply[:120].decode(errors='replace') or 'no reply'}"
        return None

    def _redis(self, sock: socket.socket) -> str | None:
        password = self.password_file.read_text().strip() if self.password_file else ""
        sock.sendall(f"AUTH {password}\r\nPING\r\n".encode() if password else b"PING\r\n")
        reply = b""
        while b"PONG" not in reply and not reply.startswith(b"-"):
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
        return None if b"+PONG" in reply else f"{self.describe()}: {reply.decode(errors='replace').strip()}"


@dataclass(frozen=True)
class Daemon:
    """One background process: its argv, environment, and how to tell it serves."""

    name: str
    argv: tuple[str, ...]
    probe: Probe
    why: str
    env: tuple[tuple[str, str], ...] = ()
    env_from: tuple[tuple[str, str], ...] = ()  # NAME, file: values the launcher reads (kept out of argv and plans)

    def launch(self, pid_file: Path, log: Path) -> Run:
        """The command that starts it in the background, writing ``pid_file`` and appending to ``log``."""
        argv = [sys.executable, "-m", "homelab.sandbox.launch"]
        argv += ["--pid-file", str(pid_file), "--log", str(log)]
        for name, path in self.env_from:
            argv += ["--env-from", f"{name}={path}"]
        return Run((*argv, "--", *self.argv), env=self.env, why=self.why)
