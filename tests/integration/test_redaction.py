"""No secret reaches a terminal or backup.log: not through a failed notification, not through a bug.

The bug is injected into the real CLI by a ``sitecustomize`` module on PYTHONPATH that
replaces ``backup.run``'s collect step with one raising an exception whose text holds the
restic password (a resolved secret), a Telegram Bot API URL with the bot token in it,
and URLs with credentials in their userinfo and query.
"""

from __future__ import annotations

import os
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import BackupEnv, Receiver, make_backup_env

from helpers import FAKES, CliResult, run_cli

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery staple"  # what make_backup_env writes to the password file
QUERY_TOKEN = "q-" + "9f" * 12
USERINFO_PASSWORD = "hunter2-" + "7e" * 6
INJECTED = f"""
from pathlib import Path

import homelab.backup.run as backup_run


def collect(session, staging, report):
    password = session.cfg.backup.password.location().resolve().reveal()
    token = Path(session.cfg.monitoring.telegram.bot_token.file).read_text().strip()  # read past the redactor
    raise RuntimeError(
        f"injected bug: password {{password!r}} while posting to https://api.telegram.org/bot{{token}}/sendMessage"
        f" via https://admin:{USERINFO_PASSWORD}@relay.invalid/hook?access_token={QUERY_TOKEN}&chat=1"
    )


assert hasattr(backup_run, "collect"), "the injected bug no longer reaches backup.run"
backup_run.collect = collect
"""


@pytest.fixture
def bk(tmp_path: Path, receiver: Receiver) -> BackupEnv:
    receiver.requests.clear()
    return make_backup_env(tmp_path, tmp_path / "no-kubeconfig", receiver)


@pytest.fixture
def bug(tmp_path: Path) -> dict[str, str]:
    """Env that makes every Python process of the CLI load the injected bug."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(INJECTED)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def garbage() -> Iterator[str]:
    """A loopback server that answers every request with a line that is not HTTP."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            self.request.sendall(b"garbage\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def secrets_of(bk: BackupEnv) -> list[str]:
    token_key = bk.bot_token.split(":", 1)[1]
    return [PASSWORD, bk.bot_token, token_key, QUERY_TOKEN, USERINFO_PASSWORD]


def assert_nowhere(secrets: list[str], *texts: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked into: {text}"


def cron_run(bk: BackupEnv, tmp_path: Path, extra: dict[str, str]) -> str:
    """Install the schedule (fake crontab), run its line as cron would, return backup.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "crontab").symlink_to(FAKES / "crontab")
    table = tmp_path / "crontab.table"
    fake = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_CRONTAB": str(table), "FAKE_RECORD": str(tmp_path / "r")}
    token = bk.tmp / "bot-token"  # backup.schedule refuses an env: reference, which cron never has
    token.write_text(bk.bot_token + "\n")
    token.chmod(0o600)
    bk.data["monitoring"]["telegram"]["bot_token"] = {"file": str(token)}
    bk.save()
    installed = run_cli(["backup.schedule"], {**bk.env(), **fake, "HOMELAB_SCHEDULER": "cron"})
    assert installed.code == 0, installed.output
    [line] = [entry for entry in table.read_text().splitlines() if entry.endswith("# homelab backup.run")]
    command = line.split(" ", 5)[5]
    cron_env = {"HOME": os.environ["HOME"], "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", **bk.env(), **extra}
    done = subprocess.run(["/bin/sh", "-c", command], env=cron_env, capture_output=True, text=True)
    assert done.stdout == done.stderr == ""  # everything went to the log
    return (bk.state / "backup.log").read_text()


def test_a_bug_quoting_secrets_exits_1_with_a_redacted_line_on_the_terminal_and_in_backup_log(
    bk: BackupEnv, bug: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli(["backup.run"], {**bk.env(), **bug})
    assert result.code == 1, result.output
    assert "backup.run failed: unexpected RuntimeError: injected bug" in result.stderr
    assert "https://api.telegram.org/bot<redacted>/sendMessage" in result.stderr
    assert "HOMELAB_DEBUG=1" in result.stderr and "Traceback" not in result.output
    log = cron_run(bk, tmp_path, bug)
    assert "unexpected RuntimeError: injected bug" in log
    assert_nowhere(secrets_of(bk), result.stdout, result.stderr, log)


def test_homelab_debug_adds_the_traceback_redacted_too(bk: BackupEnv, bug: dict[str, str], tmp_path: Path) -> None:
    debug = {**bug, "HOMELAB_DEBUG": "1"}
    result = run_cli(["backup.run"], {**bk.env(), **debug})
    assert result.code == 1, result.output
    assert "Traceback (most recent call last)" in result.stderr and "in collect" in result.stderr
    log = cron_run(bk, tmp_path, debug)
    assert "Traceback (most recent call last)" in log
    assert_nowhere(secrets_of(bk), result.stdout, result.stderr, log)


@pytest.mark.parametrize("fault", ["reply is not HTTP", "token makes the URL invalid"])
def test_a_failing_notification_is_one_redacted_warning_and_the_run_keeps_its_own_result(
    bk: BackupEnv, garbage: str, fault: str
) -> None:
    token = bk.bot_token
    if fault == "reply is not HTTP":  # http.client.BadStatusLine: neither OSError nor ValueError
        bk.data["backup"].update(notify_api=garbage, deadman_url=f"{garbage}/ping")
        bk.save()
    else:  # a pasted token with a space: http.client.InvalidURL quotes the whole URL
        token = bk.bot_token[:20] + " " + bk.bot_token[20:]
        (bk.tmp / "bot-token").write_text(token + "\n")
    (bk.tmp / "pw").unlink()  # the run fails (exit 12) and so notifies
    result: CliResult = run_cli(["backup.run"], bk.env())
    assert result.code == 12, result.output
    assert "does not exist" in result.stderr  # the run's own failure, not hidden by the notification's
    assert "notify: Telegram message not sent (" in result.stderr
    if fault == "reply is not HTTP":
        assert "notify: dead-man's-switch ping /start not sent (BadStatusLine)" in result.stderr
        assert "notify: dead-man's-switch ping /fail not sent (BadStatusLine)" in result.stderr
    else:
        assert "(InvalidURL)" in result.stderr
    assert "Traceback" not in result.output
    assert_nowhere([*secrets_of(bk), token, f"{garbage}/ping"], result.stdout, result.stderr)
