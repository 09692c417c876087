"""How long each external tool may take, in one place, and the message when a bound runs out.

Several tools wait or retry on their own for far longer than an owner or a
scheduler would: restic retries a failing backend operation for up to 15 minutes
(restic/restic#4784, "always use a limit of 15 minutes") and waits on a stale lock;
a hung SSH peer or a VM that never boots keeps limactl or terraform waiting. A
scheduled backup that waits holds its lock, and every later run exits 11. So each
call gets the bound of its kind below, and running out of it is an error that says
which bound it was, so the owner knows what took too long.
"""

from __future__ import annotations

RESTIC_METADATA = 10 * 60  # snapshots, cat, unlock, init, forget: a few small files
RESTIC_DATA = 6 * 3600  # backup, check --read-data, restore: the whole repository over a home uplink
LIMACTL = 20 * 60  # create/start/stop/edit of one VM, image download included
TERRAFORM = 2 * 3600  # an apply creating every VM
SSH_COMMAND = 3600  # one command on a node (an app volume copied, a K3S snapshot)

RESTIC_DATA_VERBS = frozenset({"backup", "check", "restore", "prune", "copy"})


def restic(args: tuple[str, ...]) -> float:
    """The bound of one restic call, by its verb (the first argument that is not a flag)."""
    verb = next((a for a in args if not a.startswith("-")), "")
    return RESTIC_DATA if verb in RESTIC_DATA_VERBS else RESTIC_METADATA


def default_for(tool: str, remote: bool) -> float | None:
    """The bound of a call that set none itself: by tool, and any command on a node over SSH."""
    if tool == "limactl":
        return LIMACTL
    if tool in ("terraform", "tofu"):
        return TERRAFORM
    return SSH_COMMAND if remote else None


def shown(seconds: float) -> str:
    return (
        f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
    )


def ran_out(tool: str, seconds: float, why: str = "", last: str = "") -> str:
    """The message for a call stopped at its bound; ``last``: the error it kept retrying, when it said one."""
    what = f" ({why})" if why else ""
    cause = f"; it kept retrying: {last}" if last else "; the service it talks to did not answer"
    stopped = f"{tool}{what} did not finish within its bound of {shown(seconds)} and was stopped"
    return f"{stopped}{cause} (see homelab.core.bounds)"


def last_error(stderr: str) -> str:
    """The last line of ``stderr`` that reports an error (a wrong key retried until the bound), at most 240 chars.

    restic retries even a refused signature for 15 minutes, so the bound is what ends
    it; the line it printed before each retry is what tells the owner why.
    """
    lines = [line.strip() for line in stderr.splitlines() if "error" in line.lower()]
    if not lines:
        return ""
    text = lines[-1]
    marker = "retrying after "
    if marker in text:  # "Stat(<config/>) returned error, retrying after 26s: Stat: <the cause>"
        text = text.split(marker, 1)[1].split(": ", 1)[-1]
    return text[:240]
