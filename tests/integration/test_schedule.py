"""backup.schedule against a fake crontab and a fake launchctl: the user's other entries survive, a
failing read aborts, secrets a scheduled run could not read are refused, the launchd agent runs a backup.

No test here reads or writes the real crontab or launchd: ``tests/fakes/crontab`` keeps the table
in a temp file, ``tests/fakes/launchctl`` keeps its loaded agents in a temp directory, HOME is a temp
directory, and both record every call. ``test_cron_daemon.py`` fires the entry with Debian's real cron.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from backup_support import Receiver, make_backup_env

from helpers import FAKES, LOOPBACK_CONFIG, CliResult, run_cli
from homelab.core.session import Session
from homelab.sandbox import cluster as sandbox

pytestmark = pytest.mark.integration
MARK = "# homelab backup.run"
# A user's crontab, with what the toolkit must keep byte for byte: variables, comments, blank lines.
THEIRS = "MAILTO=me@example.org\n# nightly sync\n15 1 * * * /usr/bin/rsync -a /a /b\n\n@reboot /usr/bin/true\n"


@dataclass
class FakeCron:
    """The environment that puts the fake crontab first on PATH, and what it recorded."""

    table: Path
    record: Path
    state: Path
    env: dict[str, str]

    def cli(self, *args: str, **env: str) -> CliResult:
        return run_cli(["backup.schedule", *args], {**self.env, **env})

    def configure(self, **backup: object) -> None:
        """Change keys of the config's ``backup`` section (``monitoring`` via ``telegram=``)."""
        data = yaml.safe_load(self.config.read_text())
        telegram = backup.pop("telegram", None)
        if telegram is not None:
            data["monitoring"]["telegram"]["bot_token"] = telegram
        data["backup"].update(backup)
        self.config.write_text(yaml.safe_dump(data))

    @property
    def config(self) -> Path:
        return Path(self.env["HOMELAB_CONFIG"])

    def calls(self) -> list[list[str]]:
        if not self.record.exists():
            return []
        return [json.loads(line)["argv"] for line in self.record.read_text().splitlines()]

    def writes(self) -> list[list[str]]:
        return [argv for argv in self.calls() if argv != ["-l"]]

    def text(self) -> str | None:
        return self.table.read_text() if self.table.exists() else None


def secret_file(path: Path, value: str) -> dict[str, str]:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return {"file": str(path)}


def schedulable_config(tmp: Path, state: Path) -> Path:
    """The loopback config with the state directory in the file and every secret a scheduled run reads
    in a ``file:`` reference (its defaults: a password file that does not exist, an ``env:`` bot token)."""
    data = yaml.safe_load(LOOPBACK_CONFIG.read_text())
    data["state_dir"] = str(state)
    data["backup"]["password"] = secret_file(tmp / "restic-password", "correct horse battery staple")
    token = secret_file(tmp / "bot-token", "123456789" + ":" + "Cd" * 17 + "e")
    data.setdefault("monitoring", {}).setdefault("telegram", {})["bot_token"] = token
    config = tmp / "homelab.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


@pytest.fixture
def cron(tmp_path: Path) -> FakeCron:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crontab").symlink_to(FAKES / "crontab")
    fake = FakeCron(tmp_path / "crontab.table", tmp_path / "calls.jsonl", tmp_path / "state", {})
    fake.env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_CRONTAB": str(fake.table),
        "FAKE_RECORD": str(fake.record),
        "HOMELAB_CONFIG": str(schedulable_config(tmp_path, fake.state)),
        "HOMELAB_SCHEDULER": "cron",
    }
    return fake


def ours(text: str | None) -> list[str]:
    return [line for line in (text or "").splitlines() if line.endswith(MARK)]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (1, "crontab: cannot open /var/spool/cron/crontabs/tester: Permission denied"),
        (2, "crontab: your UID isn't in the passwd file"),
    ],
)
@pytest.mark.parametrize("remove", [False, True])
def test_a_failing_crontab_listing_aborts_naming_the_error_and_writes_nothing(
    cron: FakeCron, code: int, error: str, remove: bool
) -> None:
    cron.table.write_text(THEIRS)
    result = cron.cli(
        *(["--remove"] if remove else []),
        FAKE_CRONTAB_LIST_ERROR=error,
        FAKE_CRONTAB_LIST_CODE=str(code),
    )
    assert result.code == 1, result.output
    assert error in result.stderr and "crontab -l" in result.stderr
    assert "Traceback" not in result.output
    assert cron.writes() == []
    assert cron.text() == THEIRS
    assert not cron.state.exists()


def test_no_crontab_yet_installs_the_entry_alone(cron: FakeCron) -> None:
    result = cron.cli()
    assert result.code == 0, result.output
    assert "installed; converged" in result.stdout
    [line] = ours(cron.text())
    assert cron.text() == line + "\n"
    assert line.startswith("0 3 * * * ") and str(cron.state / "backup.log") in line
    assert cron.writes() == [["-"]]
    assert cron.state.is_dir()  # the entry appends its log there


def test_existing_entries_are_kept_and_a_second_run_changes_nothing(cron: FakeCron) -> None:
    cron.table.write_text(THEIRS)
    assert cron.cli().code == 0
    [line] = ours(cron.text())
    assert cron.text() == THEIRS + line + "\n"

    again = cron.cli()
    assert again.code == 0 and "nothing to do" in again.stdout, again.output
    assert cron.writes() == [["-"]]
    assert cron.text() == THEIRS + line + "\n"


def test_a_changed_schedule_replaces_the_entry_in_place_of_adding_one(cron: FakeCron) -> None:
    cron.table.write_text(THEIRS)
    assert cron.cli().code == 0
    moved = cron.cli(HOMELAB__BACKUP__SCHEDULE="30 4 * * *")
    assert moved.code == 0, moved.output
    assert "HOMELAB__BACKUP__SCHEDULE set here only: the scheduled run reads the config files alone" in moved.stdout
    [line] = ours(cron.text())
    assert line.startswith("30 4 * * * ")
    assert cron.text() == THEIRS + line + "\n"


@pytest.mark.parametrize("remove", [False, True])
def test_dry_run_prints_the_change_and_changes_nothing(cron: FakeCron, remove: bool) -> None:
    cron.table.write_text(THEIRS)
    if remove:
        assert cron.cli().code == 0
    before, writes_before = cron.text(), cron.writes()
    result = cron.cli("--dry-run", *(["--remove"] if remove else []))
    assert result.code == 0, result.output
    assert "plan: backup.schedule" in result.stdout
    assert ("crontab: drop " if remove else "crontab: add ") in result.stdout
    assert "run: " in result.stdout and "crontab -" in result.stdout
    assert "MAILTO" not in result.stdout  # the user's other lines are never shown
    assert cron.text() == before and cron.writes() == writes_before
    assert cron.state.exists() == remove  # not even the log directory


def test_remove_drops_only_our_entry_and_then_has_nothing_to_do(cron: FakeCron) -> None:
    cron.table.write_text(THEIRS)
    assert cron.cli().code == 0
    removed = cron.cli("--remove")
    assert removed.code == 0 and "entry removed" in removed.stdout, removed.output
    assert cron.text() == THEIRS
    again = cron.cli("--remove")
    assert again.code == 0 and "nothing to do" in again.stdout
    assert len(cron.writes()) == 2


def test_remove_without_any_crontab_writes_nothing(cron: FakeCron) -> None:
    result = cron.cli("--remove")
    assert result.code == 0 and "nothing to do" in result.stdout, result.output
    assert cron.writes() == [] and cron.text() is None


def test_the_installed_line_runs_a_backup_under_crons_minimal_environment(
    cron: FakeCron, tmp_path: Path, sandbox_session: Session, receiver: Receiver
) -> None:
    receiver.requests.clear()
    kubeconfig = sandbox.paths_for(sandbox_session.cfg, sandbox_session.state_dir).kubeconfig
    bk = make_backup_env(tmp_path / "bk", kubeconfig, receiver)
    bk.data["monitoring"]["telegram"]["bot_token"] = secret_file(bk.tmp / "bot-token", bk.bot_token)  # not env:
    bk.data["backup"]["notify_on_success"] = True
    bk.save()
    fake = {k: v for k, v in cron.env.items() if k != "HOMELAB_CONFIG"}
    installed = run_cli(["backup.schedule"], {**fake, **bk.env()})
    assert installed.code == 0, installed.output
    [line] = ours(cron.text())
    assert line.startswith("0 3 * * * ")
    minimal = {
        "HOME": os.environ["HOME"],
        "LOGNAME": "root",
        "SHELL": "/bin/sh",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(["/bin/sh", "-c", line[len("0 3 * * * ") :]], env=minimal, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backup ok" in (bk.state / "backup.log").read_text()
    assert any("backup+ok" in message for message in receiver.messages())  # the token was read without env


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_env_secret_is_refused_with_exit_2_and_a_dry_run_says_where_the_real_run_stops(
    cron: FakeCron, dry_run: bool
) -> None:
    cron.table.write_text(THEIRS)
    cron.configure(telegram={"env": "TELEGRAM_BOT_TOKEN"})
    result = cron.cli(*(["--dry-run"] if dry_run else []), TELEGRAM_BOT_TOKEN="123456789" + ":" + "Ef" * 17 + "g")
    problem = "monitoring.telegram.bot_token: env: TELEGRAM_BOT_TOKEN is an environment variable cron never sets"
    if dry_run:
        assert result.code == 0, result.output
        assert f"the real run stops here: {problem}" in result.stdout
        assert "crontab: add " in result.stdout  # and what it would do once fixed
    else:
        assert result.code == 2, result.output
        assert f"config error: {problem}" in result.stderr and "use a file: reference" in result.stderr
        assert "Traceback" not in result.output
    assert cron.writes() == [] and cron.text() == THEIRS
    assert not cron.state.exists()


def test_a_password_file_the_run_could_not_read_is_refused(cron: FakeCron) -> None:
    missing = cron.config.parent / "no-such-password"
    cron.configure(password={"file": str(missing)})
    result = cron.cli()
    assert result.code == 2, result.output
    assert (
        f"backup.password: the scheduled run could not read it: secret file {missing} does not exist" in result.stderr
    )
    assert cron.writes() == []
