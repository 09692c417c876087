"""Secret values as they arrive from files: never a hang, never an empty value handed to a tool.

A whitespace-only password makes restic prompt; a FIFO or device in a secret's place
blocks a plain read forever. Each is refused with the file named, under a timeout
far below any bound a scheduled run has. The executor gives every command a stdin
that ends, so a tool that prompts anyway gets end-of-file instead of waiting.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from invoke import Context

from homelab.core.errors import SecretError
from homelab.core.executor import Executor
from homelab.core.plan import Run
from homelab.core.secret_refs import SecretLocation


def secret_file(tmp_path: Path, raw: bytes) -> SecretLocation:
    path = tmp_path / "secret"
    path.write_bytes(raw)
    path.chmod(0o600)
    return SecretLocation(file=str(path))


def within(seconds: float, call: object) -> object:
    """``call()``'s result or exception; the test fails if it does not return in time (a blocked read)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = call()  # type: ignore[operator]
        except BaseException as err:  # handed back to the test
            box["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


@pytest.mark.parametrize("raw", [b"", b"\n", b"   \n", b"\t \r\n", b"\r\n\r\n"], ids=repr)
def test_an_empty_or_whitespace_only_secret_is_refused_naming_the_file(tmp_path: Path, raw: bytes) -> None:
    with pytest.raises(SecretError) as caught:
        secret_file(tmp_path, raw).resolve()
    assert str(tmp_path / "secret") in str(caught.value) and "empty or only whitespace" in str(caught.value)


def test_the_line_ending_is_dropped_but_inner_and_leading_spaces_are_kept(tmp_path: Path) -> None:
    assert secret_file(tmp_path, b"correct horse\r\n").resolve().reveal() == "correct horse"
    assert secret_file(tmp_path, b" pass phrase \n").resolve().reveal() == " pass phrase "


def test_a_fifo_in_place_of_a_secret_file_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path, 0o600)
    with pytest.raises(SecretError) as caught:
        within(5, SecretLocation(file=str(path)).resolve)
    assert str(path) in str(caught.value) and "not a regular file" in str(caught.value)


def test_a_directory_or_a_non_utf8_secret_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(SecretError, match="is a directory"):
        SecretLocation(file=str(folder)).resolve()
    with pytest.raises(SecretError, match="not UTF-8"):
        secret_file(tmp_path, "pässword".encode("latin-1")).resolve()


def test_an_oversized_secret_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="at most 65536 are read"):
        secret_file(tmp_path, b"x" * 70_000).resolve()


def test_a_command_that_reads_stdin_gets_end_of_file_instead_of_waiting() -> None:
    """``cat`` waits on an open stdin: it must end at once, with nothing read."""
    executor = Executor(Context(), out=lambda _: None)
    done = within(10, lambda: executor.run(Run(("sh", "-c", "cat; echo ended"))))
    assert done.stdout == "ended\n"  # type: ignore[attr-defined]


def test_a_command_past_its_bound_is_stopped_naming_the_bound() -> None:
    from homelab.core.errors import HomelabError

    executor = Executor(Context(), out=lambda _: None)
    with pytest.raises(HomelabError) as caught:
        within(20, lambda: executor.run(Run(("sleep", "30"), timeout=1, why="a stand-in for a hung backend")))
    assert "sleep on local (a stand-in for a hung backend) did not finish within its bound of 1 s" in str(caught.value)


def plaintext_session(path: Path) -> object:
    from types import SimpleNamespace

    return SimpleNamespace(cfg=SimpleNamespace(secrets=SimpleNamespace(plaintext_file=str(path))))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: os.mkfifo(p, 0o600), "not a regular file"),
        (lambda p: p.write_bytes("secrets: [{name: café}]\n".encode("latin-1")), "not UTF-8"),
        (lambda p: p.write_text("- just\n- a list\n"), "top level must be a mapping"),
        (lambda p: p.write_text("a: &a [*a]\n"), "invalid YAML"),
    ],
    ids=["fifo", "latin-1", "list", "recursive-alias"],
)
def test_the_plaintext_secrets_file_is_read_through_the_checked_path(tmp_path: Path, make: object, words: str) -> None:
    from homelab.core.errors import HomelabError
    from homelab.secrets import sealing

    path = tmp_path / "secrets.local.yaml"
    make(path)  # type: ignore[operator]
    with pytest.raises(HomelabError) as caught:
        within(5, lambda: sealing.read_plaintext(plaintext_session(path)))
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_a_pinned_certificate_that_is_not_a_file_is_named_with_the_fix(tmp_path: Path) -> None:
    from homelab.core.errors import HomelabError
    from homelab.secrets import sealing

    assert sealing.pinned_certificate(tmp_path / "absent.pem") is None
    (tmp_path / "cert.pem").mkdir()
    with pytest.raises(HomelabError, match=r"is a directory.*inv secrets\.fetch-cert"):
        sealing.pinned_certificate(tmp_path / "cert.pem")
