"""An image tag resolved through its registry's HTTP API, as containerd pulls it (OCI distribution spec).

The flow: ``GET /v2/``; a 401 with ``WWW-Authenticate: Bearer realm=...,service=...``
sends us to the realm for an anonymous token (``service`` and
``scope=repository:NAME:pull``); then ``HEAD /v2/NAME/manifests/TAG`` with the OCI
and Docker manifest types in ``Accept``. A registry that answers 200 on ``/v2/``
needs no token. An answer other than 200 to the HEAD is asked again with GET, whose
body carries the registry's error code (``MANIFEST_UNKNOWN``, ``NAME_UNKNOWN``,
``UNAUTHORIZED``); for an unknown manifest, the tag list tells a missing tag (naming a
few that exist) from a missing repository (``NAME_UNKNOWN``). Docker Hub names follow
``docker pull``: ``docker.io`` is served by ``registry-1.docker.io`` and a one-part name
is under ``library/``. A registry on a loopback address is spoken to over plain HTTP,
as Docker treats 127.0.0.0/8.

Parsing is pure; ``resolve`` takes the request function, so tests can drive it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from homelab.versions.fetch import Answer, Unreachable, Verdict

DOCKER_HUB = ("docker.io", "index.docker.io")
DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
TAGS_ASKED = 200  # one page of the tag list, to name a few that exist
Request = Callable[[str, str, Mapping[str, str]], Answer]  # (url, method, headers) -> Answer


@dataclass(frozen=True)
class ImageRef:
    """An image reference split the way a pull uses it."""

    registry: str  # as written (docker.io when none was)
    repository: str  # the name on the registry (library/ added for Docker Hub's one-part names)
    reference: str  # the tag, or the digest when one is given

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry in DOCKER_HUB else self.registry

    @property
    def base_url(self) -> str:
        return f"{'http' if is_loopback(self.api_host) else 'https'}://{self.api_host}"

    @property
    def manifest_url(self) -> str:
        return f"{self.base_url}/v2/{self.repository}/manifests/{self.reference}"


def is_loopback(host: str) -> bool:
    name = host[1 : host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_reference(reference: str) -> ImageRef:
    """``ghcr.io/org/app:1.2`` -> (ghcr.io, org/app, 1.2); ``redis`` -> (docker.io, library/redis, latest)."""
    rest, at, digest = reference.partition("@")
    name, tag = rest, ""
    last = rest.rfind(":")
    if last > rest.rfind("/"):
        name, tag = rest[:last], rest[last + 1 :]
    first, slash, remainder = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, path = first, remainder
    else:
        registry, path = "docker.io", name
    if registry in DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return ImageRef(registry, path, digest if at else tag or "latest")


_PARAM = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s"]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://x/token",service="x"`` -> (``bearer``, {realm: ..., service: ...}).

    Quoted values may hold commas and backslash escapes; names are case-insensitive;
    the first value of a repeated name wins (a second challenge's realm is not ours).
    """
    text = header.strip()
    scheme, _, rest = text.partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
        params.setdefault(match.group(1).lower(), value)
    return scheme.lower(), params


def token_url(params: Mapping[str, str], repository: str) -> str:
    """The realm with ``service`` and the pull scope, as the distribution token spec asks."""
    query = {"scope": f"repository:{repository}:pull"}
    if params.get("service"):
        query = {"service": params["service"], **query}
    realm = params["realm"]
    return f"{realm}{'&' if '?' in realm else '?'}{urllib.parse.urlencode(query)}"


def error_code(body: bytes) -> tuple[str, str]:
    """The first (code, message) of a registry error body (``{"errors": [{"code": ..., "message": ...}]}``)."""
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
    except (ValueError, AttributeError):
        return "", ""
    return str(first.get("code") or ""), str(first.get("message") or "")


def resolve(image: ImageRef, request: Request) -> Verdict:
    """Whether the registry serves ``image``'s manifest to an anonymous client."""
    probe_url = f"{image.base_url}/v2/"
    probe = request(probe_url, "GET", {})
    headers: dict[str, str] = {"Accept": ACCEPT}
    if probe.status == 401:
        scheme, params = parse_challenge(probe.header("www-authenticate"))
        if scheme != "bearer" or not params.get("realm"):
            asked = f"{scheme.capitalize()} credentials" if scheme else "credentials it does not name"
            return Verdict(
                False, probe_url, f"answered 401 asking for {asked}; the cluster pulls anonymously", "address"
            )
        asked_url = token_url(params, image.repository)
        granted = request(asked_url, "GET", {})
        token = _token(granted.body) if granted.status == 200 else ""
        if not token:
            why = f"HTTP {granted.status}" if granted.status != 200 else "200 without a token"
            return Verdict(False, asked_url, f"answered {why}: no anonymous pull token", "address")
        headers["Authorization"] = f"Bearer {token}"
    elif probe.status != 200:
        return Verdict(False, probe_url, f"answered HTTP {probe.status}: not a registry API", "address")
    url = image.manifest_url
    head = request(url, "HEAD", headers)
    if head.status == 200:
        return Verdict(True, url, _found(head))
    answer = request(url, "GET", headers)  # a HEAD answer has no body to carry the error code
    if answer.status == 200:
        return Verdict(True, url, _found(answer))
    code, _ = error_code(answer.body)
    said = f"answered HTTP {answer.status}, {code}" if code else f"answered HTTP {answer.status}"
    if code == "MANIFEST_UNKNOWN" or (not code and answer.status == 404):
        # Many registries say MANIFEST_UNKNOWN for a repository they do not have: its tag list tells them apart.
        try:
            listed = request(f"{image.base_url}/v2/{image.repository}/tags/list?n={TAGS_ASKED}", "GET", headers)
        except Unreachable:
            listed = Answer(url, 0)
        listed_code, _ = error_code(listed.body)
        if listed.status == 404 and listed_code == "NAME_UNKNOWN":
            return Verdict(False, url, f"{said}: no repository {image.repository} on {image.api_host}", "address")
        tags = _tags(listed.body) if listed.status == 200 else []
        some = f" (it has {', '.join(tags)})" if tags else ""
        return Verdict(False, url, f"{said}: no tag {image.reference} in {image.repository}{some}", "version")
    if code == "NAME_UNKNOWN":
        return Verdict(False, url, f"{said}: no repository {image.repository} on {image.api_host}", "address")
    if answer.status in (401, 403):
        return Verdict(False, url, f"{said}: {image.repository} does not exist or is private", "address")
    return Verdict(False, url, said, "version")


def _tags(body: bytes) -> list[str]:
    """The newest few of the tags listed (one page of them: a long list is paged)."""
    from homelab.versions.helm import SHOWN, version_key

    try:
        tags = json.loads(body).get("tags") or []
    except (ValueError, AttributeError):
        return []
    return sorted({str(t) for t in tags}, key=version_key, reverse=True)[:SHOWN]


def _token(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    return str(data.get("token") or data.get("access_token") or "") if isinstance(data, dict) else ""


def _found(answer: Answer) -> str:
    digest = answer.header("docker-content-digest") or "(no digest header)"
    media = answer.header("content-type").split(";")[0].strip()
    return f"manifest {digest}" + (f", {media}" if media else "")
