"""K3S versions: read them, order them, and walk from what the nodes run to ``k3s.version``.

K3S upgrades one Kubernetes minor at a time: "Ensure that your plan does not skip
intermediate minor versions when upgrading", and servers go first, then agents
(https://docs.k3s.io/upgrades/manual). Kubernetes' version skew policy
(https://kubernetes.io/releases/version-skew-policy/) has no downgrades: a kubelet
must never be newer than the API server it talks to. So a target older than any
node is refused, and a target more than one minor ahead of a node becomes a list
of steps, each a full rolling upgrade to the release ``versions.toml`` names for
the minor in between (``[k3s.upgrade_path]``), then the target itself.

Everything here is pure: versions in, steps or a refusal out.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from homelab.core.errors import UsageError
from homelab.core.pins import Pins

SKEW_POLICY = "https://kubernetes.io/releases/version-skew-policy/"
K3S_UPGRADES = "https://docs.k3s.io/upgrades/manual"
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-rc(\d+))?(?:\+k3s(\d+))?$")


@dataclass(frozen=True, order=True)
class Version:
    """A K3S release such as ``v1.35.5+k3s1``, ordered by its numbers (an rc before its release)."""

    key: tuple[int, int, int, int, int, int]
    text: str = field(compare=False)

    @property
    def major(self) -> int:
        return self.key[0]

    @property
    def minor_number(self) -> int:
        return self.key[1]

    @property
    def minor(self) -> str:
        """``"1.35"``: the Kubernetes minor, as versions.toml keys it."""
        return f"{self.key[0]}.{self.key[1]}"

    def __str__(self) -> str:
        return self.text


def parse(text: str) -> Version:
    """``v1.35.10+k3s2`` as numbers, so that it sorts after ``v1.35.5+k3s1``; ValueError if it is none."""
    found = _VERSION.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a K3S version like v1.35.0+k3s1")
    major, minor, patch, rc, build = found.groups()
    final = 0 if rc else 1  # v1.35.5-rc1+k3s1 comes before v1.35.5+k3s1
    key = (int(major), int(minor), int(patch), final, int(rc or 0), int(build or 0))
    return Version(key, text.strip())


@dataclass(frozen=True)
class Step:
    """One rolling upgrade: ``nodes`` (config order) end on ``version``."""

    version: str
    nodes: tuple[str, ...]


def read_running(running: dict[str, str]) -> dict[str, Version]:
    """What each node reports, parsed; a version that is none names its node."""
    parsed = {}
    for name, text in running.items():
        try:
            parsed[name] = parse(text)
        except ValueError as err:
            raise UsageError(f"{name}: k3s reports {err}; cannot plan an upgrade from it") from None
    return parsed


def release_for(minor: str, pins: Pins) -> Version:
    """The release ``[k3s.upgrade_path]`` names for ``minor``; a clear error when there is none."""
    where = f"{pins.path} [k3s.upgrade_path]"
    text = pins.k3s_upgrade_path.get(minor)
    if text is None:
        raise UsageError(
            f"{where} names no release for Kubernetes {minor}, which K3S has to pass through (one minor at a "
            f'time, {K3S_UPGRADES}); add the newest {minor} release there, e.g. "{minor}" = "v{minor}.N+k3s1"'
        )
    try:
        release = parse(text)
    except ValueError as err:
        raise UsageError(f'{where}: "{minor}" = {err}') from None
    if release.minor != minor:
        raise UsageError(f'{where}: "{minor}" = "{text}" is not a {minor} release; name a v{minor}.N+k3sM one')
    return release


def steps(running: dict[str, str], target: str, pins: Pins) -> list[Step]:
    """Each rolling upgrade on the way to ``target``, one minor at a time; [] when every node runs it.

    A step moves only the nodes still below its minor (a node already on that
    minor, at any patch, waits for the next step); the last step moves every node
    not yet on ``target``. Refuses a target older than any node.
    """
    goal = parse(target)
    have = read_running(running)
    refuse_downgrade(have, goal)
    behind = {name: v for name, v in have.items() if v != goal}
    if not behind:
        return []
    across = {name: v for name, v in behind.items() if v.major != goal.major}
    if across:
        named = ", ".join(f"{n} ({v})" for n, v in across.items())
        raise UsageError(f"{named}: cannot plan an upgrade to k3s {goal} across major versions")
    current = dict(have)
    found = []
    for number in range(min(v.minor_number for v in behind.values()) + 1, goal.minor_number):
        release = release_for(f"{goal.major}.{number}", pins)
        movers = tuple(name for name, v in current.items() if v.minor_number < number)
        found.append(Step(release.text, movers))
        current.update(dict.fromkeys(movers, release))
    found.append(Step(goal.text, tuple(name for name, v in current.items() if v != goal)))
    return found


def refuse_downgrade(have: dict[str, Version], goal: Version) -> None:
    """A UsageError naming every node that runs a newer release than ``goal``."""
    ahead = {name: v for name, v in have.items() if v > goal}
    if not ahead:
        return
    named = ", ".join(f"{n} runs {v}" for n, v in ahead.items())
    newest = max(ahead.values())
    raise UsageError(
        f"k3s.version {goal} is older than what the nodes run ({named}): that would be a downgrade, which K3S and "
        f"Kubernetes do not support ({SKEW_POLICY}). Set k3s.version to {newest} or newer; nothing was changed."
    )


def route(running: dict[str, str], found: list[Step]) -> str:
    """``1.33 → v1.34.9+k3s1 → v1.35.5+k3s1``: the oldest minor a node runs, then each step's release."""
    oldest = min(read_running(running).values())
    return " → ".join([oldest.minor, *(step.version for step in found)])


def describe(found: list[Step]) -> list[str]:
    """One line per step: its number, its release and the nodes it upgrades."""
    return [f"{i}. k3s {step.version} on {', '.join(step.nodes)}" for i, step in enumerate(found, 1)]


def refuse_skip(running: dict[str, str], target: str, found: list[Step]) -> UsageError:
    """The refusal of a target more than one minor ahead of a node, with the steps it takes instead."""
    goal = parse(target)
    far = {name: v for name, v in read_running(running).items() if goal.minor_number - v.minor_number > 1}
    named = ", ".join(f"{n} ({v})" for n, v in far.items())
    lines = "\n  ".join(describe(found))
    return UsageError(
        f"k3s.version {goal} is more than one minor ahead of {named}: K3S upgrades one minor at a time and never "
        f"skips one ({K3S_UPGRADES}).\nThe way there is {route(running, found)}, each step a rolling upgrade "
        f"(server first) of the nodes still behind it:\n  {lines}\n"
        "Run inv k3s.upgrade --yes to take these steps (inv k3s.upgrade --dry-run prints every one); "
        "nothing was changed."
    )


def plan(running: dict[str, str], target: str, pins: Pins, walk: bool = False) -> list[Step]:
    """The steps to ``target``; refuses a downgrade, and more than one step unless ``walk`` (``--yes``)."""
    found = steps(running, target, pins)
    if len(found) > 1 and not walk:
        raise refuse_skip(running, target, found)
    return found


def newest_supported(pins: Pins, today: datetime.date) -> Version | None:
    """The newest ``[k3s.upgrade_path]`` release whose minor is still in upstream support on ``today``."""
    supported = []
    for text in pins.k3s_upgrade_path.values():
        try:
            release = parse(text)
        except ValueError:
            continue
        ends = pins.end_of_support.get(release.minor)
        if ends is not None and ends >= today:
            supported.append(release)
    return max(supported, default=None)
