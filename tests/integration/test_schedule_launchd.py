"""backup.schedule's macOS branch on this Linux host: a launchd agent, loaded through a fake launchctl.

``HOMELAB_SCHEDULER=launchd`` picks the branch ``platform.system() == "Darwin"`` picks on a Mac;
``tests/fakes/launchctl`` keeps what it loaded in a temp directory (refusing a plist that does
not parse) and HOME is a temp directory, so no test touches launchd or the real home. The
agent's property list is then run the way launchd runs it: its ProgramArguments in its
WorkingDirectory with only its EnvironmentVariables (and launchd's HOME, USER, SHELL), output
appended to StandardOutPath/StandardErrorPath.
"""

from __future__ import annotations

import json
import plistlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from backup_support import Receiver, make_backup_env

from helpers import FAKES, CliResult, run_cli
from homelab.core.tools import require

pytestmark = pytest.mark.integration
LABEL = "org.homelab.backup-run"


@dataclass
class FakeLaunchd:
    home: Path
    loaded: Path
    record: Path
    env: dict[str, str]
    config: Path

    def cli(self, *args: str, **env: str) -> CliResult:
        return run_cli(["backup.schedule", *args], {**self.env, **env})

    @property
    def plist(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    def agent(self) -> dict[str, Any]:
        return plistlib.loads(self.plist.read_bytes())

    def is_loaded(self) -> bool:
        return (self.loaded / f"{LABEL}.plist").exists()

    def calls(self) -> list[list[str]]:
        lines = self.record.read_text().splitlines() if self.record.exists() else []
        return [json.loads(line)["argv"] for line in lines]

    def changes(self) -> list[str]:
        return [argv[0] for argv in self.calls() if argv[0] != "print"]

    def edit(self, change: Any) -> None:
        data = yaml.safe_load(self.config.read_text())
        change(data)
        self.config.write_text(yaml.safe_dump(data))


@pytest.fixture
def launchd(tmp_path: Path, receiver: Receiver) -> FakeLaunchd:
    bin_dir, brew = tmp_path / "bin", tmp_path / "homebrew" / "bin"
    bin_dir.mkdir()
    brew.mkdir(parents=True)
    (bin_dir / "launchctl").symlink_to(FAKES / "launchctl")
    (brew / "restic").symlink_to(require("restic"))  # where Homebrew puts it: on the terminal's PATH only
    home = tmp_path / "home"
    home.mkdir()
    bk = make_backup_env(tmp_path / "lab", tmp_path / "no-kubeconfig", receiver)
    token = tmp_path / "lab" / "bot-token"
    token.write_text(bk.bot_token + "\n")
    token.chmod(0o600)
    bk.data["backup"].update(components=["config"], notify_on_success=True)
    bk.data["monitoring"]["telegram"] = {"bot_token": {"file": str(token)}, "chat_id": 4242}
    bk.save()
    fake = FakeLaunchd(home, tmp_path / "launchd", tmp_path / "calls.jsonl", {}, bk.config)
    fake.env = {
        "PATH": f"{bin_dir}:{brew}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "HOMELAB_SCHEDULER": "launchd",
        "HOMELAB_CONFIG": str(bk.config),
        "FAKE_LAUNCHD": str(fake.loaded),
        "FAKE_RECORD": str(fake.record),
    }
    return fake


def run_like_launchd(agent: dict[str, Any], home: Path) -> int:
    """The agent's program as launchd starts it: its argv, its directory, its variables, its log files."""
    env = {"HOME": str(home), "USER": "tester", "LOGNAME": "tester", "SHELL": "/bin/zsh", "TMPDIR": "/tmp"}
    env.update(agent["EnvironmentVariables"])
    with open(agent["StandardOutPath"], "a") as out, open(agent["StandardErrorPath"], "a") as err:
        done = subprocess.run(agent["ProgramArguments"], cwd=agent["WorkingDirectory"], env=env, stdout=out, stderr=err)
    return done.returncode


def test_the_agent_is_written_loaded_and_a_second_run_has_nothing_to_do(launchd: FakeLaunchd) -> None:
    first = launchd.cli()
    assert first.code == 0 and "installed; converged" in first.stdout, first.output
    assert launchd.is_loaded() and launchd.changes() == ["bootstrap"]
    agent = launchd.agent()
    assert agent["Label"] == LABEL and agent["ProgramArguments"][1:] == ["backup.run"]
    assert agent["StartCalendarInterval"] == [{"Minute": 0, "Hour": 3}]

    again = launchd.cli()
    assert again.code == 0 and "nothing to do" in again.stdout, again.output
    assert launchd.changes() == ["bootstrap"]


def test_the_loaded_agent_runs_a_backup_with_launchds_environment_alone(
    launchd: FakeLaunchd, receiver: Receiver
) -> None:
    receiver.requests.clear()
    assert launchd.cli().code == 0
    agent = launchd.agent()
    assert set(agent["EnvironmentVariables"]) == {"PATH", "HOMELAB_CONFIG"}
    assert run_like_launchd(agent, launchd.home) == 0, Path(agent["StandardOutPath"]).read_text()
    assert "backup ok" in Path(agent["StandardOutPath"]).read_text()
    [message] = receiver.messages()
    assert "backup+ok" in message or "backup ok" in message


def test_a_changed_schedule_reloads_the_agent(launchd: FakeLaunchd) -> None:
    assert launchd.cli().code == 0
    moved = launchd.cli(HOMELAB__BACKUP__SCHEDULE="30 4 * * 1,5")
    assert moved.code == 0 and "installed; converged" in moved.stdout, moved.output
    assert launchd.changes() == ["bootstrap", "bootout", "bootstrap"]  # launchd keeps the copy it loaded
    assert launchd.agent()["StartCalendarInterval"] == [
        {"Minute": 30, "Hour": 4, "Weekday": 1},
        {"Minute": 30, "Hour": 4, "Weekday": 5},
    ]


def test_a_plist_someone_edited_is_rewritten_and_reloaded(launchd: FakeLaunchd) -> None:
    assert launchd.cli().code == 0
    launchd.plist.write_bytes(launchd.plist.read_bytes().replace(b"backup.run", b"backup.list"))
    fixed = launchd.cli()
    assert fixed.code == 0 and "installed; converged" in fixed.stdout, fixed.output
    assert launchd.agent()["ProgramArguments"][1:] == ["backup.run"]
    assert launchd.changes() == ["bootstrap", "bootout", "bootstrap"]


@pytest.mark.parametrize("remove", [False, True])
def test_dry_run_prints_the_plan_and_changes_nothing(launchd: FakeLaunchd, remove: bool) -> None:
    if remove:
        assert launchd.cli().code == 0
    before = (launchd.plist.read_bytes() if launchd.plist.exists() else None, launchd.changes())
    result = launchd.cli("--dry-run", *(["--remove"] if remove else []))
    assert result.code == 0, result.output
    assert "plan: backup.schedule" in result.stdout and "launchd agent" in result.stdout
    if remove:
        assert "launchctl bootout gui/" in result.stdout and f"rm -f {launchd.plist}" in result.stdout
    else:
        assert f"write {launchd.plist}" in result.stdout and "launchctl bootstrap gui/" in result.stdout
    assert (launchd.plist.read_bytes() if launchd.plist.exists() else None, launchd.changes()) == before


def test_remove_boots_the_agent_out_deletes_it_and_then_has_nothing_to_do(launchd: FakeLaunchd) -> None:
    assert launchd.cli().code == 0
    removed = launchd.cli("--remove")
    assert removed.code == 0 and "entry removed" in removed.stdout, removed.output
    assert not launchd.plist.exists() and not launchd.is_loaded()
    again = launchd.cli("--remove")
    assert again.code == 0 and "nothing to do" in again.stdout, again.output
    assert launchd.changes() == ["bootstrap", "bootout"]


def test_an_env_secret_is_refused_before_launchd_is_asked_anything(launchd: FakeLaunchd) -> None:
    launchd.edit(lambda data: data["backup"].update(password={"env": "RESTIC_PASSWORD"}))
    refused = launchd.cli(RESTIC_PASSWORD="set in this shell only")
    assert refused.code == 2, refused.output
    assert "backup.password: env: RESTIC_PASSWORD" in refused.stderr
    assert "file:" in refused.stderr and "keychain:" in refused.stderr
    assert launchd.calls() == [] and not launchd.plist.exists()


def test_a_schedule_launchd_cannot_state_is_refused_naming_backup_schedule(launchd: FakeLaunchd) -> None:
    refused = launchd.cli(HOMELAB__BACKUP__SCHEDULE="0 3 */2 * 1")
    assert refused.code == 2, refused.output
    assert "backup.schedule" in refused.stderr and "launchd" in refused.stderr
    assert launchd.changes() == [] and not launchd.plist.exists()
