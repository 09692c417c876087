"""Every string kind judges the whole value: a good value plus a newline is refused, for every field.

A validator written with ``re.match`` and ``^...$`` accepts ``"main\\n"`` (``$`` matches
before a trailing newline); a newline or escape in a name ends up in a shell line, a
kubeconfig or a manifest. The meta-test below finds every string field of the schema
(and every string key of a mapping field) and checks it with a known-good value.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from helpers import REPO, loopback_data
from homelab.config import loader
from homelab.config.schema import HomelabConfig
from homelab.core.errors import ConfigError

DIGEST = "sha256:" + "0123456789abcdef" * 4
# Fields the reference and loopback configs leave unset: a known-good value for each.
GOOD: dict[str, Any] = {
    "apps": {
        "notes": {
            "image": f"registry.home.arpa/notes:1.0@{DIGEST}",
            "port": 80,
            "hostname": "notes",
            "mount_path": "/data",
            "env": {"SPRING_PROFILE": "home"},
            "sqlite_databases": ["db.sqlite3"],
            "bolt_databases": ["sessions.db"],
            "storage_class": "local-path",
            "quiesce": ["sqlite3 /data/db.sqlite3 .backup"],
            "cpu_request": "50m",
            "memory_request": "64MiB",
        }
    },
    "kube_context": "homelab",
    "kubeconfig": "~/.kube/homelab.yaml",
    "cloudflare": {"zone": "example.com"},
    "network": {"router_dhcp": {"start": "127.0.1.100", "end": "127.0.1.199"}},  # on network.lan
    "lima": {"guest_image": "/srv/images/guest.img", "vm_type": "qemu"},
    "media": {"node": "k3s-worker-1"},
    "secrets": {"cert_file": "k8s/sealing-cert.pem"},
    "backup": {
        "deadman_url": "https://hc-ping.com/5f3e-uuid",
        "offsite": {
            "repository": "s3:https://s3.eu-central-003.backblazeb2.com/homelab",
            "region": "eu-central-003",
            "credentials": {
                "AWS_ACCESS_KEY_ID": {"file": "~/.config/homelab/offsite-key-id"},
                "AWS_SECRET_ACCESS_KEY": {"file": "~/.config/homelab/offsite-key"},
            },
        },
        "velero": {"schedule": "0 1 * * *", "namespaces": ["notes"]},
    },
    "k3s": {
        "api_endpoint": "https://192.168.105.10:6443",
        "extra_server_config": {"node-ip": "192.168.105.10"},
        "installer_file": str(REPO / "pyproject.toml"),
        "airgap_binary": str(REPO / "pyproject.toml"),
        "airgap_images": str(REPO / "pyproject.toml"),
    },
}

Path = tuple[str | int, ...]


def good_data() -> dict[str, Any]:
    from homelab.config.loader import Layer, merge_layers

    merged, _ = merge_layers([Layer("base", loopback_data()), Layer("good", GOOD)])
    merged["nodes"][-1] |= {"labels": {"example.com/tier": "fast"}, "taints": ["gpu=yes:NoSchedule"]}
    merged["nodes"][-1] |= {"provider": "ssh", "ssh_user": "ops"}
    merged["nodes"][0] |= {"reserved_memory": "1GiB"}
    merged["cloudflare"]["api_token"] = {"keychain": "cloudflare token"}
    return loader.validate(merged).model_dump()


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


def string_slots(model: type[BaseModel], data: dict[str, Any], path: Path) -> Iterator[tuple[str, Path, bool]]:
    """(field name, path to it, is a mapping key) for every string the data holds in a string-kind field."""
    for name, info in model.model_fields.items():
        yield from _slots(f"{model.__name__}.{name}", _unwrap(info.annotation), data.get(name), (*path, name))


def _slots(field: str, tp: Any, value: Any, path: Path) -> Iterator[tuple[str, Path, bool]]:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(value, dict):
        yield from string_slots(tp, value, path)
    elif tp is str and isinstance(value, str):
        yield field, path, False
    elif origin is dict and isinstance(value, dict):
        key_tp, value_tp = (_unwrap(a) for a in typing.get_args(tp))
        for key, item in value.items():
            if key_tp is str:
                yield f"{field}[key]", (*path, key), True
            yield from _slots(f"{field}[value]", value_tp, item, (*path, key))
    elif origin is list and isinstance(value, list):
        (item_tp,) = (_unwrap(a) for a in typing.get_args(tp))
        for i, item in enumerate(value):
            yield from _slots(f"{field}[]", item_tp, item, (*path, i))


def schema_string_fields(model: type[BaseModel], seen: set[type] | None = None) -> Iterator[str]:
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    for name, info in model.model_fields.items():
        yield from _fields(f"{model.__name__}.{name}", _unwrap(info.annotation), seen)


def _fields(field: str, tp: Any, seen: set[type]) -> Iterator[str]:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield from schema_string_fields(tp, seen)
    elif tp is str:
        yield field
    elif origin is dict:
        key_tp, value_tp = (_unwrap(a) for a in typing.get_args(tp))
        if key_tp is str:
            yield f"{field}[key]"
        yield from _fields(f"{field}[value]", value_tp, seen)
    elif origin is list:
        yield from _fields(f"{field}[]", _unwrap(typing.get_args(tp)[0]), seen)


def with_newline(data: dict[str, Any], path: Path, is_key: bool) -> dict[str, Any]:
    bad = copy.deepcopy(data)
    target: Any = bad
    for part in path[:-1]:
        target = target[part]
    last = path[-1]
    if is_key:
        target[f"{last}\n"] = target.pop(last)
    else:
        target[last] = f"{target[last]}\n"
    return bad


DATA = good_data()
SLOTS = list(string_slots(HomelabConfig, DATA, ()))


def test_every_string_field_of_the_schema_is_checked_below() -> None:
    """A new string field needs a known-good value here (in GOOD, if the test configs leave it unset)."""
    missing = set(schema_string_fields(HomelabConfig)) - {field for field, _, _ in SLOTS}
    assert not missing, "\n".join(sorted(missing))


@pytest.mark.parametrize(("field", "path", "is_key"), SLOTS, ids=[".".join(map(str, p)) for _, p, _ in SLOTS])
def test_a_good_value_plus_a_newline_is_refused(field: str, path: Path, is_key: bool) -> None:
    with pytest.raises(ConfigError) as caught:
        loader.validate(with_newline(DATA, path, is_key))
    assert str(path[0]) in str(caught.value)


def test_a_huge_bad_value_is_quoted_by_a_short_prefix() -> None:
    data = copy.deepcopy(DATA)
    data["name"] = "x" * 1_000_000 + "!"
    with pytest.raises(ConfigError) as caught:
        loader.validate(data)
    assert len(str(caught.value)) < 400 and "xxxxxx…" in str(caught.value)


@pytest.mark.parametrize("bad", ["main\x1b[31m", "main\t", "ma\x00in", "main\x85"], ids=["escape", "tab", "nul", "c1"])
def test_control_characters_are_refused_in_any_string_kind(bad: str) -> None:
    data = copy.deepcopy(DATA)
    data["gitops"]["revision"] = bad
    with pytest.raises(ConfigError, match=r"gitops\.revision"):
        loader.validate(data)
