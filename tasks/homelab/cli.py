"""The root collection and the ``homelab`` console script built on invoke's Program.

``tasks.py`` at the repo root exposes the same collection to ``inv``, so
``inv up`` in the checkout and ``homelab up`` from anywhere (cron) are one thing.
"""

from __future__ import annotations

from invoke.collection import Collection
from invoke.program import Program

from homelab import __version__
from homelab.apps import tasks as apps
from homelab.backup import tasks as backup
from homelab.config import tasks as config
from homelab.gitops import tasks as gitops
from homelab.host import tasks as host
from homelab.k3d import tasks as k3d
from homelab.k3s import tasks as k3s
from homelab.net import tasks as net
from homelab.root import tasks as root
from homelab.sandbox import tasks as sandbox
from homelab.secrets import tasks as secrets
from homelab.storage import tasks as storage
from homelab.tls import tasks as tls
from homelab.versions import tasks as versions
from homelab.vm import tasks as vm


def build_namespace() -> Collection:
    namespace = Collection(root.up, root.down, root.status, root.doctor)
    for module in (config, host, vm, k3s, sandbox, k3d, net, tls, gitops, apps, backup, secrets, storage, versions):
        namespace.add_collection(module.ns)
    return namespace


namespace = build_namespace()
program = Program(namespace=namespace, version=__version__, name="homelab", binary="homelab")


def main() -> None:
    """Entry point of the ``homelab`` console script."""
    program.run()
