"""Behaviours the mutation run found no unit test held (``nox -s mutation``, docs/development/mutation.md).

Each test names, in a comment, the surviving mutants of the 2026-11-26 run it kills:
forms the config rules allow, every rejection branch reaching a ConfigError that
names its key, and values kept exactly as written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import pytest
from invoke import MockContext, Result
from test_config_checks_rules import problems_at
from test_config_kinds import config_with

from homelab.config import cron, image_ref, kinds, loader, urls
from homelab.core.errors import CommandFailed, ConfigError
from homelab.core.executor import Executor
from homelab.core.plan import Download

DIGEST = "sha256:" + "0" * 64


def rejected_at(path: str, value: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loader.validate(config_with(path, value))
    return [p.path for p in caught.value.problems]


# --- G1: a URL value is returned as given (urls: _api_endpoint_27, _download_url_24, _ping_url_25)


def test_url_values_are_kept_as_written() -> None:
    cfg = loader.validate(
        {
            **config_with("k3s.api_endpoint", "https://192.168.105.10:6443"),
            "backup": {"deadman_url": "https://hc-ping.com/5f3e-uuid"},
        }
        | {"k3s": {"api_endpoint": "https://192.168.105.10:6443", "installer_url": "https://get.k3s.io"}}
    )
    assert cfg.k3s.api_endpoint == "https://192.168.105.10:6443"
    assert cfg.k3s.installer_url == "https://get.k3s.io"
    assert cfg.backup.deadman_url == "https://hc-ping.com/5f3e-uuid"


# --- G2: each rejection branch of urls.py is reached once (hidden(None) -> AttributeError, and/or flips)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("k3s.installer_url", "ftp://example.com/install.sh"),  # parse_url_22, _23: scheme not allowed
        ("k3s.installer_url", "https://bad_host.example/install.sh"),  # parse_url_30, _34: host not DNS
        ("k3s.installer_url", 5),  # _text_2: not a string
        ("backup.repository", "/srv/a\x01b"),  # _text_6: control character
        ("backup.repository", "/srv/restic\x7f"),  # _text_13: DEL
        ("backup.repository", "sftp:"),  # _restic_repository_23: backend without location
        ("backup.repository", "local:srv/restic"),  # _restic_repository_42, _43, _46: local: relative
        ("backup.deadman_url", "https://hc-ping.com/uuid?x=1"),  # _ping_url_20, _21, _24: query
        ("k3s.api_endpoint", "https://192.168.105.10:6443?x=1"),  # _api_endpoint_18: query
        ("gitops.install_manifest", "http://example.com/{version}/install.yaml"),  # _local_or_url_15
    ],
)
def test_each_url_rule_rejects_with_a_config_error(path: str, value: Any) -> None:
    assert rejected_at(path, value) == [path]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("gitops.repo_url", "git://git.home/homelab.git"),  # _git_url_24, _25
        ("gitops.repo_url", "http://git.home/homelab.git"),  # _git_url_20, _21
        ("gitops.repo_url", "git@X:me/homelab.git"),  # _host_ok_9 (rstrip also strips 'X')
        ("backup.repository", "rest:http://nas.home:8000/homelab"),  # _restic_repository_38, _39
        ("k3s.installer_url", "http://localhost:8080/install.sh"),  # _is_loopback_2, _3, _4
        ("k3s.installer_url", "http://[::1]:8080/install.sh"),  # _is_loopback_6
        ("k3s.installer_url", "https://get.k3s.io./"),  # _host_ok_7, _8 (trailing dot)
        ("k3s.api_endpoint", "https://[fd00::10]:6443"),  # _host_ok_2, _3 (IPv6 literal)
        ("gitops.install_manifest", "http://127.0.0.1:8000/{version}/install.yaml"),  # _manifest_source_23, _24
        ("gitops.install_manifest", "file:///srv/argocd/{version}/install.yaml"),  # _manifest_source_25, _26
    ],
)
def test_url_forms_the_rules_allow_pass(path: str, value: Any) -> None:
    loader.validate(config_with(path, value))


def test_notify_api_strips_only_slashes() -> None:  # _notify_api_32
    cfg = loader.validate(config_with("backup.notify_api", "https://proxy.home/X"))
    assert cfg.backup.notify_api == "https://proxy.home/X"


# --- G3: kinds.py edges


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (kinds._label_key, "Bad_Prefix/x"),  # _is_subdomain_1
        (kinds._label_key, "/x"),  # _label_key_6
        (kinds._label_key, ".".join(["a" * 63] * 3 + ["a" * 62]) + "/x"),  # _is_subdomain_3 (254)
        (kinds._path, " /srv"),  # _path_1
        (kinds._repo_path, "a\\b"),  # _repo_path_7
        (kinds._sqlite_file, "."),  # _sqlite_file_5
        (kinds._taint, "key=bad value:NoSchedule"),  # _taint_10
        (kinds._taint, "key=value:NoRun"),  # _taint_12
        (kinds.fqdn, "a.b.9"),  # fqdn_14, _15
        (kinds.fqdn, ".".join(["a" * 63] * 3 + ["a" * 62])),  # fqdn_8 (254)
    ],
)
def test_kind_rejects(check: Any, value: str) -> None:
    with pytest.raises(ValueError):
        check(value)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (kinds._command, "echo X"),  # _command_5
        (kinds._git_ref, "feature/X"),  # _git_ref_23
        (kinds._label_key, ".".join(["a" * 63] * 3 + ["a" * 61]) + "/x"),  # _is_subdomain_2 (253)
        (kinds.fqdn, ".".join(["a" * 63] * 3 + ["a" * 61])),  # fqdn_7 (253)
    ],
)
def test_kind_accepts(check: Any, value: str) -> None:
    assert check(value) == value


def test_cpu_cores_are_thousands_of_millicores() -> None:  # cpu_millicores_19
    assert kinds.cpu_millicores("2") == 2000


@pytest.mark.parametrize(
    "ref",
    [
        {"file": "a\nb"},  # _secret_file_1, _9
        {"file": 5},  # _secret_file_2
        {"keychain": "a\x01b"},  # _secret_keychain_1, _9
        {"keychain": "   "},  # _secret_keychain_2
    ],
)
def test_bad_secret_references_are_config_errors(ref: dict[str, Any]) -> None:
    assert rejected_at("backup.password", ref) == [
        "backup.password.file" if "file" in ref else "backup.password.keychain"
    ]


def test_a_secret_file_path_may_hold_spaces() -> None:  # _secret_file_7, _8
    loader.validate(config_with("backup.password", {"file": "~/My Secrets/restic"}))


# --- G4: cron.py


def test_a_word_in_a_numeric_cron_field_is_a_value_error() -> None:  # _number_9 (StopIteration -> RuntimeError)
    with pytest.raises(ValueError, match="minute 'x' is not a number"):
        cron.check("x 3 * * *")


def test_a_step_may_equal_the_fields_maximum() -> None:  # _values_48
    sets = cron.parse("*/59 * * * *")
    assert sets is not None and sets[0] == {0, 59}


@pytest.mark.parametrize("expression", [" 0 3 * * *", "0 3 * * *\t"])
def test_surrounding_space_is_refused(expression: str) -> None:  # parse_2
    with pytest.raises(ValueError):
        cron.check(expression)


# --- G5: image_ref.py


@pytest.mark.parametrize(
    "reference",
    [
        "registry.home:1/app:1",  # _registry_problem_26, _27
        "registry.home:65535/app:1",  # _registry_problem_29
        f"registry.home:5000/app@{DIGEST}",  # problem_23
        "a" * 255 + ":1",  # problem_34
        "my_org/app:1",  # problem_47, _50, _53
    ],
)
def test_image_references_that_pass(reference: str) -> None:
    assert image_ref.problem(reference) is None


@pytest.mark.parametrize(
    "reference",
    [
        "registry.home:65536/app:1",  # _registry_problem_30
        "nginx",  # problem_20
        "Nginx:1",  # problem_40, _41
        "my_reg.io/app:1",  # problem_46
    ],
)
def test_image_references_that_fail(reference: str) -> None:
    assert image_ref.problem(reference) is not None


# --- G6: checks.py


def test_a_lima_node_after_an_ssh_node_is_still_checked() -> None:  # _node_problems_60
    def change(d: dict[str, Any]) -> None:
        d.update(target="lima")
        d["host"].update(ip="127.0.0.2")
        d["nodes"][0].update(provider="ssh")
        d["nodes"][1].update(ip="127.0.1.12")

    assert problems_at("nodes", change) == ["nodes[1].ip: '127.0.1.12' is outside network.subnet 127.0.0.0/24"]


def test_key_files_with_mode_0600_pass(tmp_path: Path) -> None:  # _private_path_problems_51
    key = tmp_path / "id_ed25519"
    key.write_text("x")
    key.chmod(0o600)
    assert problems_at("ssh", lambda d: d["ssh"].update(private_key=str(key))) == []


def test_a_home_relative_repository_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # _private_path_problems_5
    shared = tmp_path / "shared"
    (shared / "home").mkdir(parents=True)
    shared.chmod(0o777)
    monkeypatch.setenv("HOME", str(shared / "home"))
    found = problems_at("backup", lambda d: d["backup"].update(repository="~/restic"))
    assert len(found) == 1 and "above it is world-writable" in found[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a directory to another user")
def test_uid_1_is_another_user(tmp_path: Path) -> None:  # exposure_3
    from homelab.config import checks

    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "theirs").mkdir(mode=0o700)
    os.chown(sticky / "theirs", 1, 1)
    assert "belongs to another user" in (checks.exposure(sticky / "theirs" / "repo") or "")


# --- G7: executor.py


def test_a_root_only_download_stops_when_mktemp_fails(tmp_path: Path) -> None:  # _download_19, _28
    node = MockContext(run={"mktemp": Result(exited=1, stderr="no space left on device")})
    node.user = "ops"
    node.get = Mock()
    run = Executor(MockContext(), connect={"node-a": node}.__getitem__, out=lambda line: None)
    with pytest.raises(CommandFailed, match="no space left on device"):
        run.apply(Download("/etc/x", str(tmp_path / "x"), "node-a", sudo=True))
    assert node.get.call_args_list == []


# --- G8: import-time code (mutmut cannot see these; _kind_1 in urls.py and kinds.py)


def test_kind_wraps_the_check_it_is_given() -> None:
    assert urls._kind(urls._api_endpoint).func is urls._api_endpoint
    seen: list[str] = []
    validator = kinds._kind(lambda value: seen.append(value) or value)  # the check runs, after the one-line rule
    assert validator.func("ok") == "ok" and seen == ["ok"]
    with pytest.raises(ValueError, match="control character"):
        validator.func("a\nb")
    assert seen == ["ok"]


def test_a_placeholder_in_a_hidden_message_reaches_the_user_as_written() -> None:
    """``{version}`` in the install_manifest rule's message, not ``{{version}}`` (urls.hidden escaped it)."""
    with pytest.raises(ConfigError) as caught:
        loader.validate(config_with("gitops.install_manifest", "https://example.com/{release}/install.yaml"))
    message = str(caught.value)
    assert "{version}" in message and "{{" not in message, message
