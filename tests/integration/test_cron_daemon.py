"""The installed entry, fired by Debian's real cron daemon, takes a complete, verified, notified backup.

What runs: ``/usr/sbin/cron -f`` as PID 1 of its own PID and mount namespaces, so the
machine's crontabs, ``/etc/cron.d`` and ``/run`` are never read or written (a private spool,
an empty system table and a tmpfs are mounted over them there) and the daemon and every job
it started die with the namespace at the end. An unprivileged user made for the test
installs the entry with the toolkit (``homelab backup.schedule``, through the setgid
``crontab`` as cron requires), with ``* * * * *`` so it fires within a minute. The job then
has cron's own environment (HOME, LOGNAME, SHELL, PATH=/usr/bin:/bin), not the installer's.
Its report goes to a Telegram Bot API stand-in on 127.0.0.1.

Inside the namespace ``/root`` is replaced by a view holding only ``/root/.pyenv``, because the
venv's interpreter lives there and the real ``/root`` is closed to other users.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from backup_support import Receiver, make_backup_env

from homelab.core.tools import require

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(t) for t in ("cron", "unshare", "nsenter", "runuser", "useradd")),
        reason="needs root, Debian's cron and util-linux (unshare, nsenter, runuser) to run a real cron daemon",
    ),
]
VENV_BIN = Path(sys.executable).parent
MARK = "# homelab backup.run"
FIRE_TIMEOUT = 150  # the next minute boundary, the daemon's spool check, and the run itself


@dataclass
class Message:
    token: str
    chat_id: str
    text: str


@dataclass
class TelegramStandIn:
    """The Bot API's sendMessage as https://core.telegram.org/bots/api documents it, on 127.0.0.1.

    ``POST /bot<token>/sendMessage`` with ``chat_id`` and ``text`` answers 200
    ``{"ok": true, "result": <Message>}``; a wrong token 401 and an unknown method 404,
    each ``{"ok": false, "error_code": ..., "description": ...}``. ``GET /ping...`` is
    the dead-man's switch.
    """

    token: str
    url: str = ""
    delivered: list[Message] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    pings: list[str] = field(default_factory=list)

    def reply(self, path: str, method: str, fields: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path.startswith("/ping"):
            self.pings.append(path)
            return 200, {"ok": True}
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            self.refused.append(f"{method} {path}")
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if method != "POST" or path[len(prefix) :] != "sendMessage":
            self.refused.append(f"{method} {path}")
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        if not fields.get("chat_id") or not fields.get("text"):
            self.refused.append(f"sendMessage without chat_id or text: {sorted(fields)}")
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
        self.delivered.append(Message(self.token, fields["chat_id"], fields["text"]))
        chat = {"id": int(fields["chat_id"]), "type": "private"}
        message = {"message_id": len(self.delivered), "date": int(time.time()), "chat": chat, "text": fields["text"]}
        return 200, {"ok": True, "result": message}


@contextlib.contextmanager
def telegram_stand_in(token: str) -> Iterator[TelegramStandIn]:
    stand_in = TelegramStandIn(token)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            fields = dict(urllib.parse.parse_qsl(body))
            code, reply = stand_in.reply(self.path, self.command, fields)
            data = json.dumps(reply).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class User:
    """An unprivileged account made for the test, with a home outside pytest's closed temp tree."""

    name: str
    home: Path

    def own(self, *paths: Path) -> None:
        for path in paths:
            subprocess.run(["chown", "-R", f"{self.name}:{self.name}", str(path)], check=True)


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    name = f"hlcron{uuid.uuid4().hex[:8]}"
    parent = Path(tempfile.mkdtemp(prefix="homelab-cron-"))
    parent.chmod(0o755)
    home = parent / "home"
    home.mkdir()
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", name], check=True)
    try:
        subprocess.run(["chown", f"{name}:{name}", str(home)], check=True)
        yield User(name, home)
    finally:
        subprocess.run(["userdel", "--force", name], check=False)
        shutil.rmtree(parent, ignore_errors=True)


@dataclass
class CronDaemon:
    """Debian's cron in private namespaces; ``as_user`` runs a command in them as the test user."""

    process: subprocess.Popen[bytes]
    spool: Path
    user: User

    def as_user(self, argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        enter = ["nsenter", "--target", str(self.process.pid), "--mount", "--"]
        run_as = ["runuser", "-u", self.user.name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items())]
        return subprocess.run(
            [*enter, *run_as, *argv], cwd=self.user.home, capture_output=True, text=True, timeout=timeout
        )

    def table(self) -> str | None:
        path = self.spool / self.user.name
        return path.read_text() if path.exists() else None


NAMESPACE_SETUP = r"""
set -e
spool=$1 view=$2 empty=$3
mount --bind "$spool" /var/spool/cron/crontabs
mount --bind "$empty/cron.d" /etc/cron.d
mount --bind "$empty/crontab" /etc/crontab
mount -t tmpfs tmpfs /run
mkdir -p "$view/.pyenv"
mount --bind /root/.pyenv "$view/.pyenv"
mount --rbind "$view" /root
exec /usr/sbin/cron -f
"""


@pytest.fixture(scope="module")
def daemon(user: User, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CronDaemon]:
    work = tmp_path_factory.mktemp("cron-daemon")
    spool, view, empty = work / "spool", work / "root-view", work / "empty"
    for directory in (spool, view, empty / "cron.d"):
        directory.mkdir(parents=True)
    (empty / "crontab").write_text("")
    shutil.chown(spool, "root", "crontab")
    spool.chmod(0o1730)  # as Debian's /var/spool/cron/crontabs: the setgid crontab writes, cron reads
    view.chmod(0o755)
    argv = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private"]
    process = subprocess.Popen(
        [*argv, "sh", "-c", NAMESPACE_SETUP, "setup", str(spool), str(view), str(empty)], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 20
        while not (Path(f"/proc/{process.pid}/root/root/.pyenv").exists() and cron_running(process.pid)):
            assert process.poll() is None, "the cron daemon's namespace did not start"
            assert time.monotonic() < deadline, "cron did not start within 20 s"
            time.sleep(0.2)
        yield CronDaemon(process, spool, user)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # --kill-child takes the namespace's PID 1 (cron) and its jobs
        process.wait(timeout=30)


def cron_running(unshare_pid: int) -> bool:
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
    pids = children.read_text().split() if children.exists() else []
    return any(Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/usr/sbin/cron") for pid in pids)


@dataclass
class Lab:
    """The test user's config, secrets and repository, all owned by them, and the Telegram stand-in."""

    config: Path
    state: Path
    repo: Path
    password: Path
    telegram: TelegramStandIn
    data: dict[str, Any]
    tools: Path

    def save(self) -> None:
        self.config.write_text(yaml.safe_dump(self.data))

    def installer_env(self, user: User) -> dict[str, str]:
        """A terminal's environment, with what cron never has: a token variable and the venv on PATH."""
        return {
            "HOME": str(user.home),
            "USER": user.name,
            "PATH": f"{VENV_BIN}:{self.tools}:/usr/local/bin:/usr/bin:/bin",
            "HOMELAB_CONFIG": str(self.config),
            "TELEGRAM_BOT_TOKEN": "999999999:" + "Zz" * 17 + "z",  # never the one the job uses
        }


@pytest.fixture
def lab(user: User, daemon: CronDaemon) -> Iterator[Lab]:
    token = "123456789:" + uuid.uuid4().hex + "Ab"
    with telegram_stand_in(token) as telegram:
        root = user.home / f"lab-100%-{uuid.uuid4().hex[:6]}"  # cron reads an unescaped % as the command's end
        env = make_backup_env(root, root / "no-kubeconfig", Receiver(telegram.url))
        token_file = root / "bot-token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        env.data["backup"].update(components=["config"], notify_on_success=True, schedule="* * * * *")
        env.data["monitoring"]["telegram"] = {"bot_token": {"file": str(token_file)}, "chat_id": 4242}
        # restic where a package manager put it, on the terminal's PATH and not on cron's (Homebrew's
        # /opt/homebrew/bin on a Mac): the entry must carry that directory, or every scheduled run fails.
        brew_bin = root / "brew" / "bin"
        brew_bin.mkdir(parents=True)
        shutil.copy2(require("restic"), brew_bin / "restic")
        lab = Lab(env.config, env.state, env.repo, root / "pw", telegram, env.data, brew_bin)
        lab.save()
        user.own(user.home)
        try:
            yield lab
        finally:
            daemon.spool.joinpath(user.name).unlink(missing_ok=True)
            shutil.rmtree(root, ignore_errors=True)


def restic_as_root(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "RESTIC_REPOSITORY": str(lab.repo), "RESTIC_PASSWORD_FILE": str(lab.password)}
    env["RESTIC_CACHE_DIR"] = str(lab.repo.parent / "root-restic-cache")
    return subprocess.run([require("restic"), *args], env=env, capture_output=True, text=True, timeout=300)


def wait_for_run(lab: Lab, user: User) -> str:
    """backup.log once the job has written it and no process of the user is left running."""
    log = lab.state / "backup.log"
    uid = pwd.getpwnam(user.name).pw_uid
    deadline = time.monotonic() + FIRE_TIMEOUT
    while time.monotonic() < deadline:
        if log.exists() and log.stat().st_size and not running_as(uid):
            return log.read_text()
        time.sleep(1)
    raise AssertionError(
        f"cron did not finish the entry within {FIRE_TIMEOUT} s; log: {log.read_text() if log.exists() else '(none)'}"
    )


def running_as(uid: int) -> bool:
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            line = next(row for row in status.read_text().splitlines() if row.startswith("Uid:"))
            if int(line.split()[1]) == uid:
                return True
    return False


def test_the_installed_entry_fired_by_cron_takes_a_complete_verified_and_notified_backup(
    daemon: CronDaemon, user: User, lab: Lab
) -> None:
    machines_spool = sorted(os.listdir("/var/spool/cron/crontabs"))

    installed = daemon.as_user([str(VENV_BIN / "homelab"), "backup.schedule"], lab.installer_env(user))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "installed; converged" in installed.stdout
    [line] = [entry for entry in (daemon.table() or "").splitlines() if entry.endswith(MARK)]
    assert line.startswith("* * * * * ") and "TELEGRAM" not in line  # nothing of the installer's shell

    log = wait_for_run(lab, user)
    assert "backup ok" in log, log

    snapshots = restic_as_root(lab, "snapshots", "--json")
    assert snapshots.returncode == 0, snapshots.stderr
    [snapshot] = json.loads(snapshots.stdout)
    assert "status:complete" in snapshot["tags"] and snapshot["username"] == user.name
    checked = restic_as_root(lab, "check", "--read-data")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    verified = daemon.as_user([str(VENV_BIN / "homelab"), "backup.verify"], lab.installer_env(user))
    assert verified.returncode == 0 and "verified" in verified.stdout, verified.stdout + verified.stderr

    assert lab.telegram.refused == []
    [message] = lab.telegram.delivered
    assert message.chat_id == "4242" and message.text.startswith("backup ok: run ")
    assert snapshot["short_id"] in message.text
    assert lab.telegram.pings == ["/ping/start", "/ping"]

    removed = daemon.as_user([str(VENV_BIN / "homelab"), "backup.schedule", "--remove"], lab.installer_env(user))
    assert removed.returncode == 0 and "entry removed" in removed.stdout, removed.stdout + removed.stderr
    assert MARK not in (daemon.table() or "")
    assert sorted(os.listdir("/var/spool/cron/crontabs")) == machines_spool  # the machine's crontabs untouched


def test_an_env_secret_reference_is_refused_with_exit_2_and_nothing_reaches_the_crontab(
    daemon: CronDaemon, user: User, lab: Lab
) -> None:
    lab.data["monitoring"]["telegram"]["bot_token"] = {"env": "TELEGRAM_BOT_TOKEN"}
    lab.save()
    user.own(lab.config)
    refused = daemon.as_user([str(VENV_BIN / "homelab"), "backup.schedule"], lab.installer_env(user))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    [problem] = [line for line in refused.stderr.splitlines() if "monitoring.telegram.bot_token" in line]
    assert "env: TELEGRAM_BOT_TOKEN" in problem and "file:" in problem
    assert "Traceback" not in refused.stderr
    assert daemon.table() is None
    assert not (lab.state / "backup.log").exists()
