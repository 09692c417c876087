"""Cron schedules as crontab(5) reads them, checked before they reach a crontab.

``backup.schedule`` is written verbatim in front of the command of a crontab
line, so anything cron would refuse, or read as part of the command, must be
rejected here: exactly five fields (or one of the ``@`` shorthands), each a
comma-separated list of ``*``, values, ranges ``a-b`` and steps ``*/n`` or
``a-b/n``, with month and weekday names. A schedule that can never fire
(``0 3 30 2 *``) is rejected too: a backup that never runs is worse than an error.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass

SHORTHANDS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
ITEM = re.compile(r"^(?P<start>\*|[0-9A-Za-z]+)(?:-(?P<end>[0-9A-Za-z]+))?(?:/(?P<step>[0-9]+))?$")


@dataclass(frozen=True)
class Field:
    """One of the five positions: its name, its bounds and the names it accepts."""

    name: str
    low: int
    high: int
    names: dict[str, int]


FIELDS = (
    Field("minute", 0, 59, {}),
    Field("hour", 0, 23, {}),
    Field("day of month", 1, 31, {}),
    Field("month", 1, 12, MONTHS),
    Field("day of week", 0, 7, WEEKDAYS),  # 0 and 7 are both Sunday
)
# The longest each month can be; February 29 does come round.
MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


class CronError(ValueError):
    """Why a schedule is not one cron accepts (the message names the field)."""


def _number(text: str, field: Field) -> int:
    if text.isdigit():
        value = int(text)
    elif text.lower() in field.names:
        value = field.names[text.lower()]
    else:
        known = f" or a name like {next(iter(field.names))}" if field.names else ""
        raise CronError(f"{field.name} {text!r} is not a number{known}")
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name} {value} is outside {field.low}-{field.high}")
    return value


def _values(text: str, field: Field) -> set[int]:
    """The values one field selects; raises ``CronError`` for anything cron would refuse."""
    selected: set[int] = set()
    for item in text.split(","):
        match = ITEM.match(item)
        if not match:
            raise CronError(f"{field.name} {item!r} is not a value, range a-b or step */n")
        start, end, step = match["start"], match["end"], match["step"]
        if start == "*":
            if end is not None:
                raise CronError(f"{field.name} {item!r}: '*' cannot start a range")
            low, high = field.low, field.high
        else:
            low = _number(start, field)
            if end is None and step is not None:
                raise CronError(f"{field.name} {item!r}: a step needs '*' or a range before it (*/n or a-b/n)")
            high = low if end is None else _number(end, field)
            if high < low:
                raise CronError(f"{field.name} range {item!r} runs backwards")
        stride = 1 if step is None else int(step)
        if not 1 <= stride <= field.high:
            raise CronError(f"{field.name} step {stride} is outside 1-{field.high}")
        selected.update(range(low, high + 1, stride))
    return selected


def parse(expression: str) -> tuple[set[int], ...] | None:
    """The five value sets of ``expression`` (None for an ``@`` shorthand); raises ``CronError``."""
    if expression in SHORTHANDS:
        return None
    if expression != expression.strip() or any(ch in expression for ch in "\n\r\0%"):
        raise CronError("a schedule is one line of five fields, without leading or trailing space")
    if expression.startswith("@"):
        raise CronError(f"the only @ shorthands that repeat are {', '.join(SHORTHANDS)}")
    fields = expression.split()
    if len(fields) != len(FIELDS):
        shorthands = ", ".join(SHORTHANDS)
        raise CronError(
            f"has {len(fields)} fields; cron needs 5 (minute hour day month weekday) or one of {shorthands}"
        )
    sets = tuple(_values(text, field) for text, field in zip(fields, FIELDS, strict=True))
    day_restricted, weekday_restricted = fields[2] != "*", fields[4] != "*"
    # Cron runs when either day field matches if both are restricted; only when the
    # weekday is '*' can the day of month alone rule out every month.
    if day_restricted and not weekday_restricted:
        days, months = sets[2], sets[3]
        if not any(day <= MONTH_DAYS[month] for month in months for day in days):
            raise CronError("never fires: no chosen month has the chosen day of month")
    return sets


def check(expression: str) -> str:
    """``expression`` if cron accepts it; ``ValueError`` naming the schedule and the reason otherwise."""
    try:
        parse(expression)
    except CronError as err:
        raise ValueError(f"{expression!r} is not a cron schedule: {err}") from None
    return expression
