"""The homelab's layers in dependency order, and which targets each applies to.

``inv up`` walks this list forwards, ``inv down`` backwards, ``inv status`` asks
each layer for a one-line health. A layer is a name plus three callables that
live in its namespace module; importing them is deferred to the moment they run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homelab.core.errors import UsageError


@dataclass(frozen=True)
class Layer:
    """One step of the homelab, e.g. ``vm`` or ``sandbox``."""

    name: str
    module: str
    targets: frozenset[str]
    # its ``layer_up`` takes ``yes`` and ``delete_data``: it may ask before a step the owner should agree to
    asks: bool = False

    def hook(self, name: str) -> Callable[..., Any]:
        module = importlib.import_module(f"homelab.{self.module}.tasks")
        hook: Callable[..., Any] = getattr(module, f"layer_{name}")
        return hook


LAYERS: tuple[Layer, ...] = (
    Layer("vm", "vm", frozenset({"lima"})),
    Layer("k3s", "k3s", frozenset({"lima"})),
    Layer("sandbox", "sandbox", frozenset({"sandbox"})),
    Layer("k3d", "k3d", frozenset({"k3d"})),
    # It may publish the render to an empty branch, or one holding only its own renders (asked; --yes).
    Layer("gitops", "gitops", frozenset({"lima", "sandbox", "k3d", "existing"}), asks=True),
    # The sandbox is disposable: its `inv up` never edits the user's crontab.
    Layer("backup", "backup", frozenset({"lima", "k3d", "existing"})),
)


def select(target: str, only: str | None = None, start: str | None = None) -> list[Layer]:
    """The layers ``inv up`` runs for ``target``, narrowed by ``--only``/``--from``."""
    names = [layer.name for layer in LAYERS]
    for flag, value in (("--only", only), ("--from", start)):
        if value is not None and value not in names:
            raise UsageError(f"{flag} {value!r} is not a layer; layers: {', '.join(names)}")
    chosen = [layer for layer in LAYERS if target in layer.targets]
    if only:
        chosen = [layer for layer in chosen if layer.name == only]
    if start:
        index = names.index(start)
        chosen = [layer for layer in chosen if names.index(layer.name) >= index]
    return chosen
