"""Read a small text file the user wrote, refusing anything that is not one.

One reading path for files whose text the toolkit parses (the config layers;
later secret files): a regular file, not a directory or a FIFO (which would
block the run forever), within a size bound, and UTF-8 with or without a BOM.
Anything else is a ``ReadProblem`` whose message names the file and the fix.
"""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path

UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class ReadProblem(ValueError):
    """The file cannot be read as text; ``str()`` says why and how to fix it."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def read_text(path: Path, what: str, max_bytes: int) -> str:
    """The text of ``path`` (a ``what``, e.g. "config file"), or ``ReadProblem``.

    The file is checked with ``stat`` before it is opened, and opened non-blocking,
    so a FIFO or device put in its place is refused, never waited on.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ReadProblem(path, f"{what} not found") from None
    except OSError as err:
        raise ReadProblem(path, f"cannot read the {what}: {err.strerror}") from None
    _check_kind(path, what, info.st_mode)
    if info.st_size > max_bytes:
        raise ReadProblem(path, f"the {what} is {info.st_size} bytes; at most {max_bytes} are read")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise ReadProblem(path, f"cannot read the {what}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        _check_kind(path, what, os.fstat(handle.fileno()).st_mode)  # replaced after the first stat?
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ReadProblem(path, f"the {what} is larger than {max_bytes} bytes")
    return decode(raw, path, what)


def _check_kind(path: Path, what: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise ReadProblem(path, f"is a directory, not a {what}")
    if not stat.S_ISREG(mode):
        raise ReadProblem(path, f"is not a regular file (a FIFO, socket or device), so it cannot be the {what}")


def decode(raw: bytes, path: Path, what: str) -> str:
    """UTF-8 text, a leading BOM dropped; other encodings and binary data refused."""
    fix = "save it as UTF-8"
    if raw.startswith(UTF16_BOMS):
        raise ReadProblem(path, f"the {what} is UTF-16 text (as some editors save it); {fix}")
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ReadProblem(
            path, f"line {line}: byte 0x{raw[err.start]:02x} is not UTF-8 (Latin-1 or another encoding?); {fix}"
        ) from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise ReadProblem(path, f"line {line}: NUL byte; the {what} is binary or UTF-16 without a BOM; {fix} text")
    return text
