"""The kinds of value the config holds, each with the one validator for its kind.

Every field of the schema is typed with a kind from here (or from ``urls``,
``cron`` and ``image_ref``), so a bad value is refused when the config is
loaded, with its key path and the value, instead of failing later inside a
tool with a traceback. Messages quote the value; kinds that may hold a secret
raise ``urls.hidden`` errors instead, which the loader never echoes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator

from homelab.config import cron, image_ref
from homelab.config.urls import hidden, shown

LABEL = re.compile(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
RFC1035_LABEL = re.compile(r"\A[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z")
SIZE = re.compile(r"\A[1-9][0-9]{0,5}(MiB|GiB|TiB)\Z")
SIZE_MIB = {"MiB": 1, "GiB": 1024, "TiB": 1024 * 1024}
CPU = re.compile(r"\A(?:(?P<milli>[1-9][0-9]{0,5})m|(?P<cores>[0-9]{1,3}(?:\.[0-9]{1,3})?))\Z")
PROMETHEUS_DURATION = re.compile(
    r"\A(?:[0-9]+y)?(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?(?:[0-9]+ms)?\Z"
)
SEMVER = re.compile(
    r"\Av?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?\Z"
)
K3S_VERSION = re.compile(r"\Av[0-9]+\.[0-9]+\.[0-9]+(?:-rc[0-9]+)?\+k3s[0-9]+\Z")
POSIX_USER = re.compile(r"\A[a-z_][a-z0-9_-]{0,31}\Z")
SHELL_ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
CONTAINER_ENV_NAME = re.compile(r"\A[-._a-zA-Z][-._a-zA-Z0-9]*\Z")
INTERFACE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")
TUNNEL_NAME = re.compile(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z")
K3S_OPTION = re.compile(r"\A[a-z][a-z0-9-]*\Z")
LABEL_NAME = re.compile(r"\A([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)\Z")
EMAIL_LOCAL = re.compile(r"\A[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}\Z")
SQLITE_FILE = re.compile(r"\A[A-Za-z0-9._-]+\Z")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _kind(check: Callable[[Any], Any]) -> Any:
    def checked(value: Any) -> Any:
        if isinstance(value, str):
            _one_line(value)
        return check(value)

    return AfterValidator(checked)


def _one_line(value: str) -> None:
    """No string kind holds a control character: a newline, tab, NUL, escape or DEL."""
    bad = next((ch for ch in value if ord(ch) < 32 or 127 <= ord(ch) < 160), None)
    if bad is not None:
        raise ValueError(f"{shown(value)} holds a control character ({bad!r}); write it on one line, without it")


# --- names ----------------------------------------------------------------------------


def dns_label(value: str) -> str:
    if not LABEL.match(value):
        raise ValueError(
            f"{shown(value)} is not a DNS label (1-63 lowercase letters, digits and '-', no '-' at either end)"
        )
    return value


def _service_name(value: str) -> str:
    if not RFC1035_LABEL.match(value):
        raise ValueError(
            f"{shown(value)} is not a Kubernetes name (1-63 lowercase letters, digits and '-', starting with a letter)"
        )
    return value


def fqdn(value: str) -> str:
    """A plain fully qualified domain name: lowercase labels, two or more, no trailing dot."""
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(
            f"{shown(value)} is not a plain domain name like home.example.com "
            "(lowercase DNS labels joined by dots; no scheme, port, wildcard, IP address or trailing dot)"
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not all(LABEL.match(label) for label in value.split(".")):
        raise ValueError(f"{shown(value)} is not a Kubernetes object name (lowercase DNS labels joined by dots)")
    return value


def _posix_user(value: str) -> str:
    if not POSIX_USER.match(value):
        raise ValueError(f"{shown(value)} is not a user name (lowercase letters, digits, '_' and '-', at most 32)")
    return value


def _interface(value: str) -> str:
    if not INTERFACE.match(value):
        raise ValueError(f"{shown(value)} is not a network interface name (1-15 letters, digits, '_', '.', '-')")
    return value


def _tunnel_name(value: str) -> str:
    if not TUNNEL_NAME.match(value):
        raise ValueError(f"{shown(value)} is not a tunnel name (1-63 letters, digits, '.', '_', '-')")
    return value


def _k3s_option(value: str) -> str:
    if not K3S_OPTION.match(value):
        raise ValueError(
            f"{shown(value)} is not a K3S config option name (lowercase words joined by '-', like node-ip)"
        )
    return value


def _context_name(value: str) -> str:
    if not value or value != value.strip() or any(ord(ch) < 32 for ch in value):
        raise ValueError(f"{shown(value)} is not a kubeconfig context name (non-empty, no surrounding space)")
    return value


def _container_env_name(value: str) -> str:
    if not CONTAINER_ENV_NAME.match(value):
        raise ValueError(f"{shown(value)} is not an environment variable name (letters, digits, '_', '.', '-')")
    return value


def _email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    try:
        fqdn(domain.lower())
    except ValueError:
        at = ""
    if not at or not EMAIL_LOCAL.match(local):
        raise ValueError(f"{shown(value)} is not an email address like admin@example.com")
    return value


# --- numbers, sizes, durations, versions ------------------------------------------------


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"{shown(value)} is a yes/no value, not a number (YAML reads yes, no, on, off as booleans)")
    return value


def _size(value: str) -> str:
    if not SIZE.match(value):
        raise ValueError(
            f"{shown(value)} is not a size like 512MiB, 6GiB or 1TiB (a whole number, then MiB, GiB or TiB)"
        )
    return value


def size_mib(size: str) -> int:
    """``6GiB`` -> 6144."""
    match = SIZE.match(size)
    if not match:
        raise ValueError(f"{shown(size)} is not a size")
    return int(size[: -len(match[1])]) * SIZE_MIB[match[1]]


def _cpu(value: str) -> str:
    if not CPU.match(value) or cpu_millicores(value) == 0:
        raise ValueError(f"{shown(value)} is not a CPU amount like 500m, 0.5 or 2 (more than zero, at most 3 decimals)")
    return value


def cpu_millicores(value: str) -> int:
    """``500m`` -> 500, ``1.5`` -> 1500."""
    match = CPU.match(value)
    if not match:
        raise ValueError(f"{shown(value)} is not a CPU amount")
    if match["milli"]:
        return int(match["milli"])
    whole, _, fraction = match["cores"].partition(".")
    return int(whole) * 1000 + int((fraction + "000")[:3])


def _prometheus_duration(value: str) -> str:
    if not value or not PROMETHEUS_DURATION.match(value) or not any(ch in "123456789" for ch in value):
        raise ValueError(
            f"{shown(value)} is not a duration like 15d, 12h or 1w2d (units y w d h m s ms, largest first)"
        )
    return value


def _semver(value: str) -> str:
    if not SEMVER.match(value):
        raise ValueError(f"{shown(value)} is not a version like 1.2.3 or v1.2.3 (semantic versioning)")
    return value


def _tag_version(value: str) -> str:
    if not value.startswith("v") or not SEMVER.match(value):
        raise ValueError(f"{shown(value)} is not a release tag like v3.1.8")
    return value


def _k3s_version(value: str) -> str:
    if not K3S_VERSION.match(value):
        raise ValueError(f"{shown(value)} is not a K3S version like v1.34.2+k3s1")
    return value


# --- addresses --------------------------------------------------------------------------


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IPv4 address") from None
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IPv4 network in CIDR form like 192.168.105.0/24") from None
    return value


# --- paths ------------------------------------------------------------------------------


def _path(value: str) -> str:
    if not value or value != value.strip() or any(ord(ch) < 32 for ch in value):
        raise ValueError(f"{shown(value)} is not a path (non-empty, no surrounding space or control characters)")
    return value


def _absolute_path(value: str) -> str:
    _path(value)
    if not Path(value).expanduser().is_absolute():
        raise ValueError(f"{shown(value)} is not an absolute path")
    return value


def _container_path(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute() or path == PurePosixPath("/") or ".." in path.parts or ":" in value:
        raise ValueError(f"{shown(value)} is not a directory in the container (absolute, not '/', no '..' or ':')")
    return _path(value)


def _repo_path(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ValueError(f"{shown(value)} is not a path inside the Git repository (relative, no '..')")
    return _path(value)


def _volume_sub_path(value: str) -> str:
    """A directory inside an app's volume; empty means the volume's top."""
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value or ":" in value:
        raise ValueError(f"{shown(value)} is not a directory inside the volume (relative, no '..'; '' for its top)")
    return "" if value in ("", ".") else _path(value)


def _sqlite_file(value: str) -> str:
    if not SQLITE_FILE.match(value) or value in (".", ".."):
        raise ValueError(f"{shown(value)} is not a database file name (letters, digits, '.', '_', '-'; no directories)")
    return value


# --- Git, Kubernetes, commands ----------------------------------------------------------


def _git_ref(value: str) -> str:
    """A branch, tag or commit as ``git check-ref-format`` allows it."""
    bad = (
        not value
        or value == "@"
        or any(ord(ch) < 32 or ord(ch) == 127 or ch in " ~^:?*[\\" for ch in value)
        or ".." in value
        or "@{" in value
        or "//" in value
        or value.startswith(("/", "-"))
        or value.endswith(("/", ".", ".lock"))
        or any(part.startswith(".") or part.endswith(".lock") for part in value.split("/"))
    )
    if bad:
        raise ValueError(f"{shown(value)} is not a Git branch, tag or commit")
    return value


def _label_key(value: str) -> str:
    prefix, slash, name = value.rpartition("/")
    if (slash and not prefix) or (prefix and not _is_subdomain(prefix)) or not LABEL_NAME.match(name):
        raise ValueError(f"{shown(value)} is not a Kubernetes label key ([prefix/]name, name 1-63 characters)")
    return value


def _is_subdomain(text: str) -> bool:
    return len(text) <= 253 and all(LABEL.match(label) for label in text.split("."))


def _label_value(value: str) -> str:
    if value and not LABEL_NAME.match(value):
        raise ValueError(f"{shown(value)} is not a Kubernetes label value (0-63 letters, digits, '-', '_', '.')")
    return value


def _taint(value: str) -> str:
    rest, colon, effect = value.rpartition(":")
    key, _, taint_value = rest.partition("=")
    try:
        _label_key(key)
        _label_value(taint_value)
        ok = bool(colon) and effect in TAINT_EFFECTS
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{shown(value)} is not a taint like key=value:NoSchedule (effects: {', '.join(TAINT_EFFECTS)})"
        )
    return value


def _text(value: str) -> str:
    if "\0" in value:
        raise ValueError(f"{shown(value)} holds a NUL character, which no environment variable or file can carry")
    return value


def _command(value: str) -> str:
    if not value.strip() or any(ch in value for ch in "\n\r\0"):
        raise ValueError(f"{shown(value)} is not a one-line command")
    return value


# --- secret references: the value may be a secret pasted in the wrong place --------------


def _secret_env(value: object) -> str:
    if not isinstance(value, str) or not SHELL_ENV_NAME.match(value):
        raise hidden("env must name an environment variable (letters, digits and '_'), not hold a value")
    return value


def _secret_file(value: object) -> str:
    if not isinstance(value, str) or not value or any(ord(ch) < 32 for ch in value):
        raise hidden("file must be a path to the file holding the secret")
    return value


def _secret_keychain(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or any(ord(ch) < 32 for ch in value):
        raise hidden("keychain must name a keychain item")
    return value


def cron_schedule(value: str) -> str:
    return cron.check(value)


def image_reference(value: str) -> str:
    return image_ref.check(value)


Int = Annotated[int, BeforeValidator(_not_bool)]
Port = Annotated[Int, Field(ge=1, le=65535)]
Size = Annotated[str, _kind(_size)]
CpuAmount = Annotated[str, _kind(_cpu)]
PrometheusDuration = Annotated[str, _kind(_prometheus_duration)]
ChartVersion = Annotated[str, _kind(_semver)]
ReleaseTag = Annotated[str, _kind(_tag_version)]
K3sVersion = Annotated[str, _kind(_k3s_version)]
IPv4 = Annotated[str, _kind(_ipv4)]
CIDR = Annotated[str, _kind(_cidr)]
DnsLabel = Annotated[str, _kind(dns_label)]
KubeName = Annotated[str, _kind(_service_name)]
Fqdn = Annotated[str, _kind(fqdn)]
KubeSubdomain = Annotated[str, _kind(_dns_subdomain)]
PosixUser = Annotated[str, _kind(_posix_user)]
InterfaceName = Annotated[str, _kind(_interface)]
TunnelName = Annotated[str, _kind(_tunnel_name)]
K3sOption = Annotated[str, _kind(_k3s_option)]
ContextName = Annotated[str, _kind(_context_name)]
ContainerEnvName = Annotated[str, _kind(_container_env_name)]
Email = Annotated[str, _kind(_email)]
PathText = Annotated[str, _kind(_path)]
AbsolutePath = Annotated[str, _kind(_absolute_path)]
ContainerPath = Annotated[str, _kind(_container_path)]
RepoPath = Annotated[str, _kind(_repo_path)]
SqliteFile = Annotated[str, _kind(_sqlite_file)]
VolumeSubPath = Annotated[str, _kind(_volume_sub_path)]
GitRef = Annotated[str, _kind(_git_ref)]
LabelKey = Annotated[str, _kind(_label_key)]
LabelValue = Annotated[str, _kind(_label_value)]
Taint = Annotated[str, _kind(_taint)]
Command = Annotated[str, _kind(_command)]
Text = Annotated[str, _kind(_text)]
CronSchedule = Annotated[str, _kind(cron_schedule)]
ImageReference = Annotated[str, _kind(image_reference)]
SecretEnv = Annotated[str, PlainValidator(_secret_env)]
SecretFile = Annotated[str, PlainValidator(_secret_file)]
SecretKeychain = Annotated[str, PlainValidator(_secret_keychain)]
