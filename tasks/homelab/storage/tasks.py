"""Storage beside K3S's local-path: the Longhorn option's own steps (options.longhorn)."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import session, task


@task(
    help={
        "yes": "Set Longhorn's deleting-confirmation-flag, which lets its uninstaller delete every Longhorn "
        "volume; without it nothing is changed.",
        "dry_run": "Print the plan and change nothing.",
    }
)
def longhorn_uninstall(c: Any, yes: bool = False, dry_run: bool = False) -> None:
    """Allow Longhorn's uninstall (its deleting-confirmation-flag), only with --yes; never set by a deploy."""
    from homelab.storage import longhorn

    with session(c, dry_run) as s:
        s.executor.execute(longhorn.uninstall(s.cfg, yes, dry_run))
    if yes and not dry_run:
        print(
            "longhorn: uninstall allowed; now set options.longhorn: false and run gitops.deploy "
            "(Longhorn's volumes and their data go with it; the offsite backups stay)"
        )


ns = Collection("storage", longhorn_uninstall)
