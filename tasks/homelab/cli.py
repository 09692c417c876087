"""The root collection and the ``homelab`` console script built on invoke's Program.

``tasks.py`` at the repo root exposes the same collection to ``inv``, so
``inv up`` in the checkout and ``homelab up`` from anywhere (cron) are one thing.
"""

from __future__ import annotations

from invoke.collection import Collection
from invoke.program import Program

from . import __version__
from .ns import apps, backup, config, gitops, k3d, k3s, net, root, sandbox, secrets, tls, vm


def build_namespace() -> Collection:
    namespace = Collection(root.up, root.down, root.status, root.doctor)
    for module in (config, vm, k3s, sandbox, k3d, net, tls, gitops, apps, backup, secrets):
        namespace.add_collection(module.ns)
    return namespace


namespace = build_namespace()
program = Program(namespace=namespace, version=__version__, name="homelab", binary="homelab")


def main() -> None:
    """Entry point of the ``homelab`` console script."""
    program.run()
