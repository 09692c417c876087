"""Start one long-running program in the background: ``python -m homelab.sandbox.launch``.

The executor runs commands and waits for them to exit; a controller must outlive
the command that starts it. This launcher starts the program in a session of its
own (so the terminal's Ctrl-C and hang-up do not reach it), appends its output to
a log, writes its pid to a file before returning, and fails if the program dies
within its first moments (a missing binary, a bad flag, a port in use), printing
the end of the log. It exists as a module rather than ``setsid``/``nohup`` so the
same argv works on macOS, and so values such as a password can be handed to the
program from a file (``--env-from NAME=PATH``) instead of appearing in a command
line or a printed plan.

Usage: python -m homelab.sandbox.launch --pid-file P --log L [--env-from NAME=PATH]... -- ARGV...
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SETTLE_SECONDS = 1.0  # a program still running after this has at least parsed its flags and bound its ports


def tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def write_pid(path: Path, pid: int) -> None:
    """Atomically: a reader never sees a half-written pid file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def environment(env_from: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    for item in env_from:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--env-from wants NAME=PATH, got {item!r}")
        env[name] = Path(path).read_text().strip()
    return env


def default_signals() -> None:
    """In the child, before exec: signals as a program expects them (the launcher ignores some)."""
    for sig in INTERRUPTS:
        signal.signal(sig, signal.SIG_DFL)


INTERRUPTS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m homelab.sandbox.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--pid-file", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--env-from", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to start")
    # A Ctrl-C on `inv sandbox.up` must not land between the start and the pid file: the program
    # would run with nothing to find it by (its port taken, sandbox.down unaware of it).
    for sig in INTERRUPTS:
        signal.signal(sig, signal.SIG_IGN)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("ab") as log, open(os.devnull, "rb") as devnull:
        log.write(f"==> {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {command[0]}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            command, stdin=devnull, stdout=log, stderr=subprocess.STDOUT, env=environment(args.env_from),
            start_new_session=True, preexec_fn=default_signals,
        )  # fmt: skip
    write_pid(args.pid_file, proc.pid)
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            print(f"{command[0]} exited with status {code} at start; end of {args.log}:", file=sys.stderr)
            print(tail(args.log), file=sys.stderr)
            return 1
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
