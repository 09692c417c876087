"""The launchd agent as a value: its calendar fires when cron would, its plist holds launchd's documented keys.

The keys and their meaning are launchd.plist(5)'s
(https://keith.github.io/xcode-man-pages/launchd.plist.5.html): ``Label`` (required),
``ProgramArguments``, ``WorkingDirectory``, ``EnvironmentVariables``, ``StandardOutPath``,
``StandardErrorPath``, ``RunAtLoad`` and ``StartCalendarInterval``, "a dictionary of integers or
array of dictionaries of integers" with the keys Minute, Hour, Day, Weekday (0 and 7 are Sunday)
and Month; "missing arguments are considered to be wildcard", and when both Day and Weekday
are given "the job will be started if either one matches".
"""

from __future__ import annotations

import datetime
import plistlib
from pathlib import Path
from typing import Any

import pytest

from homelab.backup import launchd
from homelab.config import cron
from homelab.core.errors import EXIT_USAGE, ConfigError

# Each calendar key's documented range; Weekday 7 is Sunday too.
CALENDAR_RANGES = {
    "Minute": range(60),
    "Hour": range(24),
    "Day": range(1, 32),
    "Weekday": range(8),
    "Month": range(1, 13),
}


def agent(schedule: str = "0 3 * * *", machine: str = "arm64") -> dict[str, Any]:
    program_dir = Path("/Users/me/homelab/.venv/bin")
    path = launchd.search_path(program_dir, Path("/Users/me/.cache/homelab/bin"), machine, [])
    return launchd.agent(
        program=program_dir / "homelab",
        workdir=Path("/Users/me/homelab"),
        config=Path("/Users/me/homelab/config/homelab.yaml"),
        path=path,
        log=Path("/Users/me/homelab/.homelab/backup.log"),
        schedule=schedule,
    )


def test_the_plist_round_trips_through_plistlib_with_only_documented_keys_of_their_documented_types() -> None:
    value = agent()
    data = launchd.render(value)
    assert data.startswith(b"<?xml") and b"<!DOCTYPE plist" in data
    read = plistlib.loads(data)
    assert read == value
    assert set(read) <= launchd.DOCUMENTED_KEYS
    assert read["Label"] == launchd.LABEL and isinstance(read["Label"], str)
    assert read["ProgramArguments"] == ["/Users/me/homelab/.venv/bin/homelab", "backup.run"]
    assert all(isinstance(arg, str) for arg in read["ProgramArguments"])
    assert read["WorkingDirectory"] == "/Users/me/homelab"
    assert set(read["EnvironmentVariables"]) == {"PATH", "HOMELAB_CONFIG"}  # nothing of the installer's shell
    assert all(isinstance(v, str) for v in read["EnvironmentVariables"].values())
    assert read["StandardOutPath"] == read["StandardErrorPath"] == "/Users/me/homelab/.homelab/backup.log"
    assert read["RunAtLoad"] is False
    assert isinstance(read["StartCalendarInterval"], list)
    for interval in read["StartCalendarInterval"]:
        for key, number in interval.items():
            assert type(number) is int and number in CALENDAR_RANGES[key], (key, number)


def test_the_same_config_renders_the_same_bytes() -> None:
    assert launchd.render(agent()) == launchd.render(agent())
    assert launchd.render(agent()) != launchd.render(agent("30 4 * * *"))


def test_the_plist_path_is_the_users_launch_agents_named_after_the_label() -> None:
    path = launchd.plist_path(Path("/Users/me"))
    assert path == Path("/Users/me/Library/LaunchAgents") / f"{launchd.LABEL}.plist"


@pytest.mark.parametrize(
    ("machine", "brew", "not_there"),
    [("arm64", "/opt/homebrew/bin", None), ("x86_64", "/usr/local/bin", "/opt/homebrew/bin")],
)
def test_path_holds_homebrews_prefix_for_the_hosts_architecture(machine: str, brew: str, not_there: str | None) -> None:
    entries = agent(machine=machine)["EnvironmentVariables"]["PATH"].split(":")
    assert entries[:2] == ["/Users/me/homelab/.venv/bin", "/Users/me/.cache/homelab/bin"]
    assert brew in entries and "/usr/bin" in entries and "/bin" in entries
    assert not_there is None or not_there not in entries
    assert len(entries) == len(set(entries))


def test_path_holds_where_restic_is_found_now() -> None:
    path = launchd.search_path(Path("/v/bin"), Path("/c/bin"), "arm64", [Path("/nix/profile/bin")])
    assert path.split(":")[2] == "/nix/profile/bin"


@pytest.mark.parametrize(
    ("schedule", "intervals"),
    [
        ("0 3 * * *", [{"Minute": 0, "Hour": 3}]),
        ("* * * * *", [{}]),
        ("15 1 * * 7", [{"Minute": 15, "Hour": 1, "Weekday": 0}]),
        ("0 3 * * 0-6", [{"Minute": 0, "Hour": 3}]),
        ("0 */12 * * *", [{"Minute": 0, "Hour": 0}, {"Minute": 0, "Hour": 12}]),
        ("0 3 1 * 1", [{"Minute": 0, "Hour": 3, "Day": 1}, {"Minute": 0, "Hour": 3, "Weekday": 1}]),
        ("0 3 1-31 * 1", [{"Minute": 0, "Hour": 3}]),  # cron: either day field matches, and every day does
        (
            "0 3 1 jan,jul *",
            [{"Minute": 0, "Hour": 3, "Day": 1, "Month": 1}, {"Minute": 0, "Hour": 3, "Day": 1, "Month": 7}],
        ),
        ("@daily", [{"Minute": 0, "Hour": 0}]),
        ("@weekly", [{"Minute": 0, "Hour": 0, "Weekday": 0}]),
    ],
)
def test_cron_schedules_become_calendar_intervals(schedule: str, intervals: list[dict[str, int]]) -> None:
    assert launchd.calendar(schedule) == intervals


def cron_fires(schedule: str, at: datetime.datetime) -> bool:
    """Vixie cron's rule (Debian's and macOS's cron): both day fields must match when either starts with '*'."""
    sets = cron.parse(schedule)
    assert sets is not None
    minute, hour, day, month, weekday = sets
    fields = schedule.split()
    dow = at.isoweekday() % 7
    day_ok, weekday_ok = at.day in day, dow in weekday or (dow == 0 and 7 in weekday)
    days = day_ok and weekday_ok if fields[2].startswith("*") or fields[4].startswith("*") else day_ok or weekday_ok
    return at.minute in minute and at.hour in hour and at.month in month and days


def launchd_fires(intervals: list[dict[str, int]], at: datetime.datetime) -> bool:
    """launchd.plist(5)'s rule: any interval matches; missing keys are wildcards; Day or Weekday suffices."""
    dow = at.isoweekday() % 7
    for interval in intervals:
        times = all(interval.get(k, v) == v for k, v in (("Minute", at.minute), ("Hour", at.hour), ("Month", at.month)))
        day_keys = [k for k in ("Day", "Weekday") if k in interval]
        matches = {"Day": interval.get("Day") == at.day, "Weekday": interval.get("Weekday", -1) % 7 == dow}
        if times and (not day_keys or any(matches[k] for k in day_keys)):
            return True
    return False


@pytest.mark.parametrize(
    "schedule",
    ["0 3 * * *", "*/20 2-4 * * *", "30 1 1,15 * *", "0 3 13 * 5", "0 0 * 2 mon-fri", "45 23 31 * *", "0 4 * * 7"],
)
def test_the_agent_fires_exactly_when_cron_would_through_a_leap_year(schedule: str) -> None:
    intervals = launchd.calendar(schedule)
    start = datetime.datetime(2028, 1, 1)
    # Every day, at each minute either scheduler could care about (cron's chosen minutes of its chosen hours).
    sets = cron.parse(schedule)
    assert sets is not None
    for day in range(366):
        for hour in range(24):
            for minute in (*sorted(sets[0]), 59 if 59 not in sets[0] else 58):
                at = start + datetime.timedelta(days=day, hours=hour, minutes=minute)
                assert launchd_fires(intervals, at) == cron_fires(schedule, at), (schedule, at)


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("0 3 */2 * 1", "must both match"),  # cron ANDs the day fields here; launchd ORs them
        ("0 3 1 * */2", "must both match"),
        ("*/2 */2 * * *", "more than 200"),
    ],
)
def test_a_schedule_launchd_cannot_state_is_refused_naming_backup_schedule(schedule: str, reason: str) -> None:
    with pytest.raises(launchd.Unexpressible, match=reason):
        launchd.calendar(schedule)
    with pytest.raises(ConfigError) as refused:
        launchd.calendar_for(schedule)
    assert refused.value.exit_code == EXIT_USAGE
    assert str(refused.value).startswith("config error: backup.schedule: ")
    assert schedule in str(refused.value) and "launchd" in str(refused.value)
