#!/usr/bin/env python3
"""Run a command in an empty network namespace: loopback only, so a stray connection fails at once.

The reference config names real machines (192.168.105.x). Tests, benchmarks and
CI steps that run tasks with it go through this wrapper, so a mistake that would
send traffic gets ENETUNREACH instead of reaching whatever answers on the
developer's network. Loopback is up inside, so a server the command starts on
127.0.0.1 still works; servers running outside are out of reach too.

As root the namespace is made directly; otherwise inside a new user namespace
that maps the caller's own uid and gid (no root inside). If neither is allowed,
the command is not run at all: an unisolated run is never the fallback.

Usage: scripts/no_network.py COMMAND [ARG...]
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sH22x"  # struct ifreq: interface name, then ifr_flags in the union
EXIT_CANNOT_ISOLATE = 125  # like env(1) and timeout(1) when they fail themselves


class CannotIsolate(Exception):
    """The kernel refused a step; the command must not run."""


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        code = ctypes.get_errno()
        raise CannotIsolate(f"unshare: {os.strerror(code)} ({errno.errorcode.get(code, code)})")


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def enter_empty_network() -> None:
    """Move this process into a new network namespace whose only interface, lo, is up."""
    if os.geteuid() == 0:
        _unshare(CLONE_NEWNET)
    else:
        uid, gid = os.getuid(), os.getgid()
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
            _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
        except OSError as err:
            raise CannotIsolate(f"user namespace id maps: {err}") from None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            current = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0))
            flags = struct.unpack(IFREQ, current)[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))
    except OSError as err:
        raise CannotIsolate(f"bringing up lo: {err}") from None


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        enter_empty_network()
    except CannotIsolate as err:
        print(
            f"no_network: cannot make an empty network namespace ({err}); not running {argv[0]}. "
            "Run as root, or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "or kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu).",
            file=sys.stderr,
        )
        return EXIT_CANNOT_ISOLATE
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        print(f"no_network: cannot run {argv[0]}: {err}", file=sys.stderr)
        return 127
    return 0  # not reached: execvp replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
