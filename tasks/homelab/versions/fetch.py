"""One bounded HTTP request with urllib, sorted into "it answered" and "it could not be asked".

urllib's default opener honours HTTPS_PROXY/HTTP_PROXY/NO_PROXY and follows redirects,
as Helm, curl (``-L``) and containerd do. Every request has a per-read timeout and a
deadline for the whole body, so a trickling server cannot hold a check for long.

An HTTP status is an answer about the source. A failure to get one (DNS, refused
connection, timeout, TLS, a dropped connection) and a server-side failure (5xx, 429:
the server could not answer now, which says nothing about the source) are ``Unreachable``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from homelab import __version__

REQUEST_TIMEOUT = 10.0  # seconds per connect and per read
MAX_BODY = 64 * 1024 * 1024  # the largest Helm index read (prometheus-community's is a few MiB)
USER_AGENT = f"homelab-versions-check/{__version__}"


@dataclass(frozen=True)
class Answer:
    """What a server answered: status, headers (lower-case names), body, and the URL after redirects."""

    url: str
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class Verdict:
    """What an answer says about a source: it resolves, or not, and whether its version or its address is wrong."""

    ok: bool
    url: str  # what was asked last
    detail: str  # what it answered, without the URL ("answered HTTP 404 (...)")
    blame: str = "version"  # "version" or "address": which key the fix names


class Unreachable(Exception):
    """The source could not be asked: carries the reason, for the 'cannot check' message."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class NotHttp(ValueError):
    """An address this check cannot ask: not http(s) (an ``oci://`` chart repository, a ``file:`` path)."""

    def __init__(self, url: str) -> None:
        super().__init__(f"{url} is not an http(s) address")
        self.url = url


def reason_of(error: BaseException) -> str:
    """A short, human reason for a network failure (``DNS lookup failed``, ``connection refused``)."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return reason_of(error.reason) if isinstance(error.reason, BaseException) else str(error.reason)
    if isinstance(error, socket.gaierror):
        return f"DNS lookup failed ({error.strerror or error})"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, TimeoutError | socket.timeout):
        return f"no answer within {REQUEST_TIMEOUT:.0f} s"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error})"
    if isinstance(error, http.client.HTTPException):
        return f"the connection closed without an answer ({type(error).__name__})"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__


def request(
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    deadline: float | None = None,
    max_body: int = MAX_BODY,
) -> Answer:
    """``method url``; an ``Answer`` for any 1xx-4xx status, ``Unreachable`` otherwise.

    ``deadline`` (a ``time.monotonic()`` value) bounds the whole exchange, body included.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise NotHttp(url)
    sent = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT, **(headers or {})})  # noqa: S310
    try:
        response = urllib.request.urlopen(sent, timeout=REQUEST_TIMEOUT)  # noqa: S310 (http and https only, above)
    except urllib.error.HTTPError as error:
        response = error
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        raise Unreachable(url, reason_of(error)) from None
    try:
        status = int(response.status or response.getcode() or 0)
        found = {k.lower(): v for k, v in response.headers.items()}
        final = response.geturl() or url
        if status >= 500 or status == 429:
            raise Unreachable(url, f"server error HTTP {status}, try again later")
        body, truncated = b"", False
        if method != "HEAD":
            body, truncated = _read(response, url, deadline, max_body)
        return Answer(final, status, found, body, truncated)
    finally:
        response.close()


def _read(response: object, url: str, deadline: float | None, max_body: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    read = response.read  # type: ignore[attr-defined]
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise Unreachable(url, "the answer took too long to arrive (the check's time bound)")
        try:
            chunk = read(256 * 1024)
        except (OSError, http.client.HTTPException) as error:
            raise Unreachable(url, reason_of(error)) from None
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
        if size > max_body:
            return b"".join(chunks)[:max_body], True
