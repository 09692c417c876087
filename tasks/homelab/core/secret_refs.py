"""Secret references and the redactor that keeps their values out of any output.

The config never holds a secret value, only where to find it: a file, an
environment variable or a macOS keychain item. Values are resolved at the
moment of use and registered with the redactor, so any text the toolkit prints
(plans, logs, error messages) has them masked, even if a command echoes them.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from homelab.core import reading
from homelab.core.errors import SecretError

MASK = "<redacted>"
SECRET_FILE_BYTES = 64 * 1024  # tokens, passwords, a tunnel's JSON credentials: far below this

# Secrets that may reach text before (or without) being resolved here: a token
# typed into a URL, an exception quoting a URL a library built. Each pattern
# keeps the part that says what the text was about and masks the rest.
SECRET_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # The Telegram Bot API takes the bot token as a path segment: /bot<digits>:<key>/method.
    (re.compile(r"(/bot)\d+:[^/\s'\"]+"), rf"\1{MASK}"),
    # A bare bot token: its numeric id, a colon and a long URL-safe key.
    (re.compile(r"(?<![\w-])\d{6,12}:[A-Za-z0-9_-]{30,}"), MASK),
    # URL userinfo (user:password@, or a token used as the user name).
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@'\"]+@"), rf"\1{MASK}@"),
    # Query parameters named like credentials (token, key, secret, password, auth, signature).
    (
        re.compile(r"([?&][^=&#\s]*(?:token|key|secret|pass|pwd|auth|sig|credential)[^=&#\s]*=)[^&#\s'\"]+", re.I),
        rf"\1{MASK}",
    ),
)


class Redactor:
    """Remembers every resolved secret value and masks it, and anything shaped like a credential, in text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def register(self, value: str) -> None:
        """Mask this value (and each of its lines) from now on."""
        candidates = {value, *value.splitlines()}
        with self._lock:
            self._values.update(v for v in candidates if len(v.strip()) >= 4)

    def redact(self, text: str) -> str:
        """Return ``text`` with every registered value and every credential shape replaced by the mask."""
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            text = text.replace(value, MASK)
        for pattern, replacement in SECRET_SHAPES:
            text = pattern.sub(replacement, text)
        return text


REDACTOR = Redactor()


@dataclass(frozen=True)
class Secret:
    """A resolved secret value that refuses to print itself."""

    value: str
    source: str

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({self.source})"

    def reveal(self) -> str:
        """The plaintext, for the one place that must hand it on."""
        return self.value


@dataclass(frozen=True)
class SecretLocation:
    """Where a secret lives; the config's ``{file|env|keychain}`` mapping."""

    file: str | None = None
    env: str | None = None
    keychain: str | None = None

    def describe(self) -> str:
        if self.file:
            return f"file {self.file}"
        if self.env:
            return f"environment variable {self.env}"
        return f"macOS keychain item {self.keychain}"

    def exists(self) -> bool:
        """True when resolving would find something (without reading it)."""
        if self.file:
            return Path(self.file).expanduser().is_file()
        if self.env:
            return bool(os.environ.get(self.env))
        return True  # keychain lookups can only be tried, on macOS

    def resolve(self) -> Secret:
        """Read the value now; raise ``SecretError`` naming where it was looked for."""
        value = self._read()
        value = value.rstrip("\r\n")  # the editor's line ending, LF or CRLF, is not part of the secret
        if not value.strip():
            # restic and others fall back to prompting on an empty value, and a scheduled run then waits forever
            raise SecretError(f"secret in {self.describe()} is empty or only whitespace; put the value there")
        REDACTOR.register(value)
        return Secret(value, self.describe())

    def _read(self) -> str:
        if self.file:
            path = Path(self.file).expanduser()
            try:
                mode = path.stat().st_mode
            except FileNotFoundError:
                raise SecretError(f"secret file {path} does not exist") from None
            except OSError as err:
                raise SecretError(f"secret file {path} cannot be read: {err.strerror}") from None
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise SecretError(f"secret file {path} is readable by others; run: chmod 600 {path}")
            try:  # a regular UTF-8 file of sane size: a FIFO or device here would block the run forever
                return reading.read_text(path, "secret file", SECRET_FILE_BYTES)
            except reading.ReadProblem as problem:
                raise SecretError(str(problem)) from None
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(f"environment variable {self.env} is not set")
            return value
        return _read_keychain(self.keychain or "")


def _read_keychain(item: str) -> str:
    """Read a generic password from the macOS keychain with `security`."""
    try:
        done = subprocess.run(
            ["security", "find-generic-password", "-s", item, "-w"],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=60,  # the keychain may ask the owner to allow access: a minute, not forever
        )
    except FileNotFoundError:
        raise SecretError(f"keychain item {item}: the `security` tool exists only on macOS") from None
    except subprocess.TimeoutExpired:
        raise SecretError(f"keychain item {item}: `security` no answer in 60 s (a locked keychain?)") from None
    if done.returncode != 0:
        raise SecretError(f"keychain item {item} was not found (security exit {done.returncode})")
    return done.stdout
