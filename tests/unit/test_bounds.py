"""Each external call gets the bound of its kind, from one table."""

from __future__ import annotations

from homelab.core import bounds


def test_restic_calls_are_bounded_by_what_they_read() -> None:
    assert bounds.restic(("--no-lock", "snapshots", "--json")) == bounds.RESTIC_METADATA
    assert bounds.restic(("backup", "--json", ".")) == bounds.RESTIC_DATA
    assert bounds.restic(("check", "--read-data-subset=10%")) == bounds.RESTIC_DATA
    assert bounds.RESTIC_METADATA < 15 * 60, "below restic's own 15 minutes of backend retries"


def test_tools_without_a_bound_of_their_own_get_their_kinds() -> None:
    assert bounds.default_for("limactl", remote=False) == bounds.LIMACTL
    assert bounds.default_for("tofu", remote=False) == bounds.TERRAFORM
    assert bounds.default_for("tar", remote=True) == bounds.SSH_COMMAND
    assert bounds.default_for("git", remote=False) is None
    assert bounds.ran_out("restic on local", 600, "verify").startswith(
        "restic on local (verify) did not finish within its bound of 10 min"
    )


def test_a_call_stopped_at_its_bound_says_the_error_it_kept_retrying() -> None:
    stderr = (
        "repository abc opened\n"
        "Stat(<config/>) returned error, retrying after 1.2s: Stat: The request signature we calculated "
        "does not match the signature you provided. Check your key and signing method.\n"
    )
    last = bounds.last_error(stderr)
    assert last.startswith("Stat: The request signature") and last.endswith("signing method.")
    message = bounds.ran_out("restic on local", 10, "copy", last)
    assert "bound of 10 s" in message and "it kept retrying: Stat: The request signature" in message
    assert bounds.last_error("no trouble here\n") == ""
    assert len(bounds.last_error("error: " + "x" * 1000)) == 240
