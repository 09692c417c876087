"""The files runs leave behind, read back the way an owner's mistakes and a crash leave them.

A record (what was verified, what a stopped run paused, the pinned host keys, a
kubeconfig) that is cut short, edited, binary or replaced by a FIFO stops the task
with the file and the fix named, never a hang or a traceback; a cache in the same
state is ignored and rebuilt, so it never stops a backup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_secret_files import within

from helpers import REPO, run_cli
from homelab.backup.run import hashes
from homelab.backup.verify import load_verified
from homelab.core import state_files
from homelab.core.kubeconfig import merge_action, remove_action
from homelab.core.ssh import KnownHosts
from homelab.gitops.hold import read_marker
from homelab.versions.check import cached

BROKEN = {
    "cut short": b'{"abc": 17',
    "binary": b"\x00\x01\x02\xff",
    "latin-1": b'{"caf\xe9": 1}',
    "utf-16": '{"a": 1}'.encode("utf-16"),
    "wrong shape": b"[1, 2, 3]",
}


def make(path: Path, kind: str) -> Path:
    """``path`` as ``kind``: one of BROKEN's contents, a FIFO or a directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(BROKEN[kind])
    return path


KINDS = [*BROKEN, "fifo", "directory"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_broken_record_names_the_file_and_the_fix_without_blocking(tmp_path: Path, kind: str) -> None:
    path = make(tmp_path / "backup-verified.json", kind)
    with pytest.raises(state_files.StateFileError) as caught:
        within(5, lambda: state_files.read_json(path, state_files.VERIFIED))
    message = str(caught.value)
    assert message.startswith(f"{path}: the backup verification record cannot be read")
    assert "inv backup.verify" in message  # the fix
    assert state_files.StateFileError.exit_code == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_broken_cache_is_ignored_without_blocking(tmp_path: Path, kind: str) -> None:
    path = make(tmp_path / "versions-check.json", kind)
    assert within(5, lambda: state_files.read_json(path, state_files.VERSIONS_CACHE)) is None


def test_absent_files_are_none_and_good_ones_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "backup-verified.json"
    assert state_files.read_json(path, state_files.VERIFIED) is None
    path.write_text(json.dumps({"abc": 1.5}))
    assert state_files.read_json(path, state_files.VERIFIED) == {"abc": 1.5}


def test_an_oversized_record_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "argocd-paused.json"
    path.write_bytes(b" " * (state_files.ARGOCD_PAUSE.max_bytes + 1))
    with pytest.raises(state_files.StateFileError, match="at most"):
        state_files.read_json(path, state_files.ARGOCD_PAUSE)


def session_in(state: Path) -> object:
    return type("S", (), {"state_dir": state})()


def test_the_verification_record_must_map_snapshots_to_times(tmp_path: Path) -> None:
    (tmp_path / "backup-verified.json").write_text(json.dumps({"abc": "yesterday"}))
    with pytest.raises(state_files.StateFileError, match="not snapshot IDs with times"):
        load_verified(session_in(tmp_path))
    (tmp_path / "backup-verified.json").write_text(json.dumps({"abc": 7}))
    assert load_verified(session_in(tmp_path)) == {"abc": 7.0}


@pytest.mark.parametrize("text", ['{"task": "backup.restore"}', '{"applications": [{"name": "x"}]}', "[]"])
def test_a_pause_marker_that_names_no_application_stops_instead_of_guessing(tmp_path: Path, text: str) -> None:
    marker = tmp_path / "argocd-paused.json"
    marker.write_text(text)
    with pytest.raises(state_files.StateFileError) as caught:
        read_marker(marker)
    assert str(marker) in str(caught.value) and "inv gitops.apply" in str(caught.value)


def test_a_broken_hash_cache_only_costs_the_hashing(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "a").write_bytes(b"data")
    cache = make(tmp_path / "backup-hashes.json", "fifo")
    result = within(10, lambda: hashes(staging, cache))
    assert result == {"a": "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"}


def test_a_broken_versions_cache_means_checking_again(tmp_path: Path) -> None:
    assert within(5, lambda: cached(make(tmp_path / "v.json", "fifo"), "digest", [], 0.0)) is None
    assert cached(make(tmp_path / "w.json", "wrong shape"), "digest", [], 0.0) is None


SOURCE = {
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
}


@pytest.mark.parametrize("content", [b"clusters: [oops", b"just a string\n", b"clusters: {a: 1}\n", b"\xff\xfe"])
def test_a_broken_kubeconfig_is_named_before_anything_is_merged_into_it(tmp_path: Path, content: bytes) -> None:
    target = tmp_path / "kubeconfig"
    target.write_bytes(content)
    for call in (lambda: merge_action(target, SOURCE, "homelab"), lambda: remove_action(target, "homelab")):
        with pytest.raises(state_files.StateFileError) as caught:
            call()
        assert str(target) in str(caught.value) and "move it away" in str(caught.value)
    assert target.read_bytes() == content  # nothing written


def test_a_kubeconfig_fifo_does_not_block_the_merge(tmp_path: Path) -> None:
    target = make(tmp_path / "kubeconfig", "fifo")
    with pytest.raises(state_files.StateFileError, match="not a regular file"):
        within(5, lambda: merge_action(target, SOURCE, "homelab"))


@pytest.mark.parametrize("kind", ["fifo", "directory", "binary"])
def test_broken_pinned_host_keys_are_named(tmp_path: Path, kind: str) -> None:
    hosts = KnownHosts(make(tmp_path / "known_hosts", kind))
    with pytest.raises(state_files.StateFileError) as caught:
        within(5, hosts.text)
    assert "pinned SSH host keys" in str(caught.value) and "inv vm.apply" in str(caught.value)


def test_backup_list_with_a_broken_record_exits_1_naming_it_before_restic_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    make(state / "backup-verified.json", "cut short")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ran = tmp_path / "restic-ran"
    (bin_dir / "restic").write_text(f"#!/bin/sh\ntouch {ran}\nexit 1\n")
    (bin_dir / "restic").chmod(0o755)
    env = {
        "HOMELAB_CONFIG": str(REPO / "tests" / "configs" / "loopback.yaml"),
        "HOMELAB__STATE_DIR": str(state),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    result = run_cli(["backup.list"], env)
    assert result.code == 1, result.output
    assert f"{state / 'backup-verified.json'}: the backup verification record cannot be read" in result.stderr
    assert "Traceback" not in result.output and not ran.exists()
