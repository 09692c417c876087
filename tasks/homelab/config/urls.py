"""URL-shaped config values, checked at load time and never echoed in errors.

A URL in the config can carry a secret: the dead-man's-switch URL is itself
the credential, a repository URL may embed a password, and the Telegram bot
token is appended to ``backup.notify_api``. So a malformed URL must fail here,
naming its key path, rather than at run time inside urllib, whose exceptions
quote the whole URL. Errors are raised with ``hidden``: the message says what
is wrong and the loader does not add the value. Passwords embedded in URLs are
refused outright; they belong in secret references.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AnyUrl, PlainValidator, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from homelab.core.secret_refs import MASK

HIDDEN = "value_hidden"
LABEL = re.compile(r"\A(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]{0,61}[a-zA-Z0-9])\Z")
SCP_LIKE = re.compile(r"\A(?:[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*|/.+)\Z")
RESTIC_BACKENDS = ("local", "sftp", "rest", "s3", "b2", "azure", "gs", "swift", "rclone")


@functools.cache
def _any_url() -> TypeAdapter[AnyUrl]:
    return TypeAdapter(AnyUrl)  # built on first use: most loads have no URL to check beyond defaults


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a megabyte value is never echoed whole."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def hidden(message: str) -> PydanticCustomError:
    """A validation error whose value is never shown (its type tells the loader so).

    The message is passed as is: pydantic fills in only placeholders named in an
    error's context (there is none), so ``{version}`` reaches the user unchanged.
    """
    return PydanticCustomError(HIDDEN, message)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise hidden(f"must be {what}: a string")
    if not value or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise hidden(f"must be {what}: no spaces or control characters")
    return value


def _host_ok(host: str) -> bool:
    if host.startswith("["):
        return True  # the URL parser has validated the IPv6 literal
    return all(LABEL.match(label) for label in host.rstrip(".").split("."))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_url(value: str, what: str, schemes: tuple[str, ...]) -> AnyUrl:
    """``value`` parsed, with a host, a scheme from ``schemes`` and no password; ``hidden`` errors."""
    try:
        url = _any_url().validate_python(value)
    except ValidationError as err:
        reason = str((err.errors(include_input=False)[0].get("ctx") or {}).get("error", "unparsable"))
        raise hidden(f"must be {what}: {reason}") from None
    if url.scheme not in schemes:
        raise hidden(f"must be {what}: the scheme must be {' or '.join(schemes)}")
    if url.scheme != "file" and (not url.host or not _host_ok(url.host)):
        raise hidden(f"must be {what}: the host is not a DNS name or an IP address")
    if url.password:
        raise hidden(
            f"must be {what}: no password in it (credentials go in secret references or the tool's environment)"
        )
    return url


def _https_unless_loopback(url: AnyUrl, what: str) -> None:
    if url.scheme == "http" and not _is_loopback(url.host or ""):
        raise hidden(f"must be {what}: https, since it carries credentials (plain http only to a loopback address)")


def _notify_api(value: object) -> str:
    what = "the Telegram Bot API base URL, like https://api.telegram.org"
    url = parse_url(_text(value, what), what, ("https", "http"))
    _https_unless_loopback(url, what)
    if url.username or url.query is not None or url.fragment is not None:
        raise hidden(f"must be {what}: no user, query or fragment (the bot token path is appended to it)")
    return str(value).rstrip("/")


def _ping_url(value: object) -> str:
    what = "a dead-man's-switch ping URL, like https://hc-ping.com/<uuid>"
    url = parse_url(_text(value, what), what, ("https", "http"))
    if url.username or url.query is not None or url.fragment is not None:
        raise hidden(f"must be {what}: no user, query or fragment (/start and /fail are appended to it)")
    return str(value)


def _download_url(value: object) -> str:
    what = "an https URL to download from"
    url = parse_url(_text(value, what), what, ("https", "http"))
    _https_unless_loopback(url, what)
    return str(value)


def _api_endpoint(value: object) -> str:
    what = "the Kubernetes API URL, like https://192.168.105.10:6443"
    url = parse_url(_text(value, what), what, ("https",))
    if url.username or url.path not in (None, "", "/") or url.query is not None or url.fragment is not None:
        raise hidden(f"must be {what}: scheme, host and port only")
    return str(value)


def _git_url(value: object) -> str:
    what = "a Git repository URL (https://, ssh://, git:// or user@host:path)"
    text = _text(value, what)
    if "://" in text:
        parse_url(text, what, ("https", "http", "ssh", "git"))
        return text
    match = SCP_LIKE.match(text)
    if not match or not _host_ok(match["host"]):
        raise hidden(f"must be {what}")
    return text


def _local_or_url(value: object, what: str, schemes: tuple[str, ...]) -> str:
    text = _text(value, what)
    if "://" in text:
        url = parse_url(text, what, schemes)
        if url.scheme != "file":
            _https_unless_loopback(url, what)
        return text
    if not text.startswith(("/", "~")):
        raise hidden(f"must be {what}: a URL or an absolute path")
    return text


def _vm_image(value: object) -> str:
    return _local_or_url(value, "a VM image location (https:// or file:// URL, or an absolute path)", ("https", "file"))


def _manifest_source(value: object) -> str:
    what = "a manifest URL or absolute path, where {version} stands for gitops.argocd_version"
    text = _text(value, what)
    try:
        filled = text.format(version="v0.0.0")
    except (KeyError, IndexError, ValueError):
        raise hidden(f"must be {what}; the only placeholder allowed is {{version}}") from None
    _local_or_url(filled, what, ("https", "http", "file"))
    return text


def _restic_repository(value: object) -> str:
    what = "a restic repository: an absolute path, or backend:location (sftp:, rest:, s3:, b2:, ...)"
    text = _text(value, what)
    if text.startswith(("/", "~")):
        return text
    backend, colon, location = text.partition(":")
    if not colon:
        raise ValueError(f"{shown(text)} is relative; use an absolute path (or backend:location)")
    if backend not in RESTIC_BACKENDS:
        raise hidden(f"must be {what}: unknown backend (restic knows {', '.join(RESTIC_BACKENDS)})")
    if not location:
        raise hidden(f"must be {what}: {backend}: needs a location")
    if backend == "rest":
        parse_url(location, "a restic REST server URL", ("https", "http"))
    if backend == "local" and not Path(location).expanduser().is_absolute():
        raise hidden(f"must be {what}: local: needs an absolute path")
    return text


def _kind(check: Callable[[object], str]) -> Any:
    return PlainValidator(check)


class CredentialPath:
    """Marks a URL kind whose path is the credential (a ping URL's UUID): shown as its host only."""


CREDENTIAL_PATH = CredentialPath()


def host_only(url: str) -> str:
    """A credential-path URL safe to print: its scheme and host, the rest masked."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/{MASK}"


NotifyApi = Annotated[str, _kind(_notify_api)]
PingUrl = Annotated[str, _kind(_ping_url), CREDENTIAL_PATH]
DownloadUrl = Annotated[str, _kind(_download_url)]
ApiEndpoint = Annotated[str, _kind(_api_endpoint)]
GitUrl = Annotated[str, _kind(_git_url)]
VmImage = Annotated[str, _kind(_vm_image)]
ManifestSource = Annotated[str, _kind(_manifest_source)]
ResticRepository = Annotated[str, _kind(_restic_repository)]
