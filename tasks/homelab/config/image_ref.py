"""Container image references, by the grammar of distribution/reference (OCI).

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component [ "/" path-component ]*
    domain     := host [ ":" port ]          (a DNS name, an IPv4 address or [IPv6])
    path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex          (sha256: 64 hex digits, sha384: 96, sha512: 128)

The first component is the registry only if it has a ``.`` or a ``:``, is
``localhost``, or has an upper-case letter, exactly as ``docker pull`` decides;
the name is at most 255 characters. The homelab also asks for a tag or a digest:
an untagged image means ``:latest``, which changes under a running app.
"""

from __future__ import annotations

import ipaddress
import re

PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
DOMAIN_COMPONENT = re.compile(r"^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$")
TAG = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
MAX_NAME = 255


REGISTRY = re.compile(r"^(?:\[(?P<ipv6>[^\]]*)\]|(?P<host>[^:\[\]]+))(?::(?P<port>.*))?$")


def _registry_problem(registry: str) -> str | None:
    match = REGISTRY.match(registry)
    if not match:
        return f"registry {registry!r} is not host[:port]"
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            return f"registry {registry!r} is not [IPv6 address]:port"
    elif not all(DOMAIN_COMPONENT.match(part) for part in match["host"].split(".")):
        return f"registry host {match['host']!r} is not a DNS name or an IPv4 address"
    port = match["port"]
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        return f"registry port {port!r} is not a number in 1-65535"
    return None


def _digest_problem(digest: str) -> str | None:
    algorithm, _, encoded = digest.partition(":")
    if algorithm not in DIGEST_LENGTHS:
        known = ", ".join(DIGEST_LENGTHS)
        return f"digest algorithm {algorithm!r} is not one of {known}"
    if not re.fullmatch(rf"[0-9a-f]{{{DIGEST_LENGTHS[algorithm]}}}", encoded):
        return f"a {algorithm} digest is {DIGEST_LENGTHS[algorithm]} lowercase hex digits"
    return None


def problem(reference: str) -> str | None:
    """Why ``reference`` is not a pinned image reference, or None when it is one."""
    if not reference or reference != reference.strip() or any(ch.isspace() for ch in reference):
        return "an image reference has no spaces and is not empty"
    rest, at, digest = reference.partition("@")
    if at and (problem_text := _digest_problem(digest)):
        return problem_text
    name, tag = rest, ""
    last = rest.rfind(":")
    if last > rest.rfind("/"):  # a ':' after the last '/' starts the tag, not a registry port
        name, tag = rest[:last], rest[last + 1 :]
        if not TAG.match(tag):
            return f"tag {tag!r} is not 1-128 of letters, digits, '_', '.', '-' (not starting with '.' or '-')"
    if not tag and not digest:
        return "has no tag or digest; pin one (name:1.2.3 or name@sha256:...), an untagged image is :latest"
    if len(name) > MAX_NAME:
        return f"the name is longer than {MAX_NAME} characters"
    components = name.split("/")
    first = components[0]
    if len(components) > 1 and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        if registry_problem := _registry_problem(first):
            return registry_problem
        components = components[1:]
    for component in components:
        if not PATH_COMPONENT.match(component):
            return f"path component {component!r} is not lowercase letters and digits joined by '.', '_', '__' or '-'"
    return None


def repository(reference: str) -> str:
    """The image's name without tag or digest (``ghcr.io/org/app:1.2`` -> ``ghcr.io/org/app``)."""
    rest = reference.partition("@")[0]
    last = rest.rfind(":")
    return rest[:last] if last > rest.rfind("/") else rest


def check(reference: str) -> str:
    """``reference`` if it is a pinned image reference; ``ValueError`` naming it and the reason otherwise."""
    reason = problem(reference)
    if reason:
        raise ValueError(f"{reference!r} is not a container image reference: {reason}")
    return reference
