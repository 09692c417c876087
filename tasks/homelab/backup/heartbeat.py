"""The backup's heartbeat in the cluster: a Lease each complete run renews.

``backup.prom`` is written on the Mac, where no Prometheus scrapes. The cluster
is where the alerting lives, so a complete run also renews the Lease
``monitoring/homelab-backup``; kube-state-metrics exports its renew time and the
rendered PrometheusRule (``platform.backup_rules``) fires when it grows older
than ``backup.max_age_hours``. A run that cannot reach the cluster still keeps
its snapshot and says so: the alert then fires, which is right, since the
cluster cannot tell the backup worked.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

from homelab.core.errors import HomelabError

Obj = dict[str, Any]


def lease(finished: float) -> Obj:
    from homelab.gitops.platform import BACKUP_LEASE  # here, not at import: every backup.run would load the renderer

    renewed = datetime.fromtimestamp(finished, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": BACKUP_LEASE,
            "namespace": "monitoring",
            "labels": {"app.kubernetes.io/part-of": "homelab"},
        },
        "spec": {"holderIdentity": f"homelab-backup@{socket.gethostname()}", "renewTime": renewed},
    }


def record(session: Any, finished: float) -> str | None:
    """Renew the Lease; None when done, else why not (the run's snapshot stands either way).

    Only a run that backs the cluster up (its objects or its sealing keys) reaches
    the cluster, so only such a run renews it: one that does not has no business there.
    """
    from homelab.backup.components import applicable

    if not session.cfg.monitoring.enabled or not {"cluster", "sealed-keys"} & set(applicable(session)):
        return None
    from homelab.core import cluster

    try:
        kube = cluster.connect(session)
        if kube.get("v1", "Namespace", "monitoring") is None:
            return "no monitoring namespace yet (inv up)"
        kube.apply([lease(finished)])
    except HomelabError as err:
        return str(err)
    return None
