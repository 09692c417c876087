"""Every kind of config value: a rejection quotes the value it rejects, then says what was expected;
and the edges of a few kinds (Git refs, container paths, CPU amounts, lengths) on both sides.
"""

from __future__ import annotations

from typing import Any

import pytest

from homelab.config import kinds

BAD = [
    (kinds.dns_label, "Bad_Label"),
    (kinds._service_name, "Bad"),
    (kinds.fqdn, "not a domain"),
    (kinds._dns_subdomain, "Bad..x"),
    (kinds._posix_user, "Bad User"),
    (kinds._interface, "this-name-is-way-too-long"),
    (kinds._tunnel_name, "bad name"),
    (kinds._k3s_option, "Bad_Option"),
    (kinds._context_name, " x"),
    (kinds._container_env_name, "bad name"),
    (kinds._email, "not-an-email"),
    (kinds._not_bool, True),
    (kinds._size, "5GB"),
    (kinds.size_mib, "5GB"),
    (kinds._cpu, "0"),
    (kinds.cpu_millicores, "x"),
    (kinds._prometheus_duration, "15 days"),
    (kinds._semver, "1.2"),
    (kinds._tag_version, "3.1.8"),
    (kinds._k3s_version, "1.33"),
    (kinds._ipv4, "300.1.1.1"),
    (kinds._cidr, "10.0.0.1/24"),
    (kinds._path, ""),
    (kinds._absolute_path, "rel/path"),
    (kinds._container_path, "/"),
    (kinds._repo_path, "../x"),
    (kinds._sqlite_file, "a/b.db"),
    (kinds._git_ref, "a..b"),
    (kinds._label_key, "-bad"),
    (kinds._label_value, "bad value"),
    (kinds._taint, "key=value"),
    (kinds._text, "a\0b"),
    (kinds._command, "a\nb"),
]


@pytest.mark.parametrize(("check", "value"), BAD, ids=[check.__name__.strip("_") for check, _ in BAD])
def test_a_rejection_quotes_the_value_then_says_what_was_expected(check: Any, value: Any) -> None:
    with pytest.raises(ValueError) as caught:
        check(value)
    message = str(caught.value)
    assert message.startswith(f"{value!r} "), message
    assert len(message.split()) >= 5, f"{message!r} does not say what was expected"


EDGES = {
    kinds._git_ref: (
        ["main", "v1.2.3", "feature/x", "a.b", "0123abc"],
        [
            *("-x", "/x", "x/", "x.", "x.lock", "a/.hidden", "a/b.lock/c", "a//b", "@", "a@{b", "a b", "a~b"),
            *("a^b", "a:b", "a?b", "a*b", "a[b", "a\\b", "a\x7fb", "a\x01b", "a..b"),
        ],
    ),
    kinds._container_path: (["/data", "/app/backend/data"], ["/data/../etc", "/data:/x", "relative", "/"]),
    kinds._context_name: (["my ctx", "admin@lab"], ["", "x ", " x", "a\tb"]),
    kinds._email: (["admin@example.com"], ["admin@", "@example.com", "admin"]),
    kinds._cpu: (["500m", "0.5", "2", "0.001", "1m"], ["0m", "1.0001", "0", "-1"]),
    kinds._dns_subdomain: ([".".join(["a" * 63] * 3 + ["a" * 61])], [".".join(["a" * 63] * 3 + ["a" * 62])]),
    kinds._command: (["sqlite3 /data/db .backup x"], ["", "   ", "a\rb", "a\0b"]),
}


@pytest.mark.parametrize("check", list(EDGES), ids=[check.__name__.strip("_") for check in EDGES])
def test_the_edges_of_a_kind_are_where_its_rules_say(check: Any) -> None:
    accepted, rejected = EDGES[check]
    assert [value for value in accepted if check(value) != value] == []
    wrongly_accepted = []
    for value in rejected:
        try:
            check(value)
        except ValueError:
            continue
        wrongly_accepted.append(value)
    assert wrongly_accepted == []
