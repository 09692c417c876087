"""Which objects an apply would send: planning reads for ``Apply`` actions.

The apply engine skips an object whose recorded hash matches its body and whose
live state still holds every field of it; a plan lists exactly the others, with
the engine's own rule, so an empty plan and a no-op apply are the same thing.
One LIST per kind; nothing is written.
"""

from __future__ import annotations

from typing import Any

from homelab.core.kube.apply import live_key, unchanged
from homelab.core.plan import Apply

Obj = dict[str, Any]


def to_apply(kube: Any, objects: list[Obj]) -> list[Obj]:
    """The objects of ``objects`` that applying would send, in their order (all of a kind not served yet)."""
    index = kube.live_index(objects)
    return [obj for obj in objects if (live := index.get(live_key(obj))) is None or not unchanged(live, obj)]


def apply_actions(kube: Any, objects: list[Obj], why: str = "") -> list[Apply]:
    """One ``Apply`` of the objects that differ from the cluster, or none when every one is in place."""
    pending = to_apply(kube, objects)
    return [Apply(tuple(pending), why=why)] if pending else []
