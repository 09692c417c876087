"""Velero, the optional second backup (``options.velero``), kept in the offsite S3 store.

``backup.run`` (restic, on the Mac) stays the backup the homelab rebuilds from;
Velero adds scheduled, in-cluster backups an owner can restore one namespace at a
time, into another namespace if they like. It keeps them in the same S3 store as
the offsite copy (``backup.offsite``), under a prefix of its own, with the same
keys, sealed into the ``velero`` namespace like every other credential.

Everything here is rendering and reading; nothing runs Velero. Contracts encoded,
each with its source:

- Chart 12.x (https://vmware-tanzu.github.io/helm-charts, charts/velero): the
  charts before 12.0.0 run a CRD-upgrade hook on a kubectl image that no longer
  exists for Kubernetes 1.34+ (vmware-tanzu/helm-charts#727); 12.0.0 moved it to
  registry.k8s.io/kubectl (vmware-tanzu/helm-charts#706). Its values
  (charts/velero/values.yaml at the pinned 12.x): ``initContainers`` for plugins copied
  into the ``plugins`` volume at ``/target``; ``backupsEnabled``/``snapshotsEnabled``
  (false: no chart-made BackupStorageLocation or VolumeSnapshotLocation; the
  storage location is rendered here); ``deployNodeAgent`` and
  ``nodeAgent.resources``; ``configuration.uploaderType``;
  ``credentials.useSecret``/``credentials.extraSecretRef`` (a Secret whose keys
  become environment variables of velero and the node agent, templates/deployment.yaml
  ``envFrom``); ``metrics.serviceMonitor.enabled``.
- The Application (so the Helm release) is named ``velero``, so the chart's Deployment is
  ``velero``: Velero's pod-volume restore action reads that Deployment by name for its
  restore helper's image, and restores fail without it
  (pkg/restore/actions/pod_volume_restore_action.go).
- Kopia is the only uploader for new file-system backups from Velero 1.17: the
  restic uploader was deprecated and removed for new backups (velero-io/velero#8072).
- velero-plugin-for-aws 1.14 (velero-plugin-for-aws/object_store.go): BSL
  ``config`` keys ``region``, ``s3Url``, ``s3ForcePathStyle`` (parsed as a bool
  from a string); without ``credentialsFile`` the AWS SDK's default chain is
  used, which reads ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from the
  environment (backupstoragelocation.md in the plugin's repository). Velero
  starts its plugins with its own environment (hashicorp/go-plugin), so the
  Secret's variables reach the plugin.
- Backup phases (pkg/apis/velero/v1/backup_types.go): New, Queued,
  ReadyToStart, FailedValidation, InProgress, WaitingForPluginOperations[PartiallyFailed],
  Finalizing[PartiallyFailed], Completed, PartiallyFailed, Failed, Deleting.
  Storage-location phases (backupstoragelocation_types.go): Available, Unavailable.
- Metrics (pkg/metrics/metrics.go): ``velero_backup_last_successful_timestamp``
  labelled by ``schedule``.
- Schedule ``spec.skipImmediately`` and ``spec.template``, a BackupSpec: ``ttl`` (a Go duration),
  ``includedNamespaces``, ``storageLocation``, ``defaultVolumesToFsBackup``
  (pkg/apis/velero/v1/schedule_types.go, backup_types.go).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homelab.config import cron
from homelab.config.schema import HomelabConfig
from homelab.core import pins
from homelab.core.errors import Problem

Obj = dict[str, Any]
NAMESPACE = "velero"
LOCATION = "default"  # the BackupStorageLocation every Schedule names
SCHEDULE = "homelab-daily"
CREDENTIALS_SECRET = "velero-offsite-credentials"  # noqa: S105 (a Secret's name)
# keys: AWS_* variables, sealed from backup.offsite.credentials
PLUGIN = "velero-plugin-for-aws"
# A Velero backup this close (minutes, either side) to a backup.run would compete with it for the
# one Mac's CPU, disk and uplink, and snapshot the cluster while restic reads it.
MIN_GAP_MINUTES = 30
FAILED_PHASES = frozenset({"PartiallyFailed", "Failed", "FailedValidation"})
UNFINISHED_PHASES = frozenset(
    {
        "New",
        "Queued",
        "ReadyToStart",
        "InProgress",
        "WaitingForPluginOperations",
        "WaitingForPluginOperationsPartiallyFailed",
        "Finalizing",
        "FinalizingPartiallyFailed",
    }
)
SHORTHAND_TIMES = {  # cron's @ shorthands as (minute, hour) sets
    "@hourly": ({0}, set(range(24))),
}


@dataclass(frozen=True)
class S3Store:
    """Where Velero keeps its backups: the offsite repository's S3 server and bucket."""

    endpoint: str  # the s3Url, with its scheme
    bucket: str
    restic_prefix: str  # the offsite restic repository's folder in the bucket ("" = the bucket's top)
    region: str


def s3_store(cfg: HomelabConfig) -> S3Store | None:
    """The offsite S3 store (None unless ``backup.offsite`` is an ``s3:`` repository).

    restic's S3 repositories read ``s3:[https://]host[:port]/bucket[/prefix]``, https when
    no scheme is given (https://restic.readthedocs.io/en/stable/030_preparing_a_new_repo.html#amazon-s3).
    """
    offsite = cfg.backup.offsite
    if offsite is None or offsite.backend != "s3":
        return None
    location = offsite.repository.partition(":")[2]
    scheme, sep, rest = location.partition("://")
    if not sep:
        scheme, rest = "https", location
    host, _, path = rest.partition("/")
    bucket, _, prefix = path.strip("/").partition("/")
    return S3Store(f"{scheme}://{host}", bucket, prefix.strip("/"), offsite.region)


def _times(expression: str) -> set[int]:
    """The minutes of the day ``expression`` may fire at (its day fields ignored: a conservative overlap)."""
    sets = cron.parse(expression)
    if sets is None:
        minutes, hours = SHORTHAND_TIMES.get(expression, ({0}, {0}))
    else:
        minutes, hours = sets[0], sets[1]
    return {hour * 60 + minute for hour in hours for minute in minutes}


def _gap(a: set[int], b: set[int]) -> int:
    """The smallest distance in minutes, around the clock, between a time of ``a`` and one of ``b``."""
    return min(min(abs(x - y), 1440 - abs(x - y)) for x in a for y in b)


def default_schedule(backup_schedule: str) -> str | None:
    """The first whole hour, 2 or more hours before ``backup.run`` fires, clear of it by the gap; None if none is."""
    backup = _times(backup_schedule)
    first = min(backup) // 60
    for back in range(2, 24):
        hour = (first - back) % 24
        if _gap({hour * 60}, backup) >= MIN_GAP_MINUTES:
            return f"0 {hour} * * *"
    return None


def schedule(cfg: HomelabConfig) -> str:
    """The Velero Schedule's cron: ``backup.velero.schedule`` or the default beside ``backup.schedule``."""
    chosen = cfg.backup.velero.schedule or default_schedule(cfg.backup.schedule)
    if chosen is None:
        raise ValueError("no default Velero schedule: see velero_problems")
    return chosen


def namespaces(cfg: HomelabConfig) -> list[str]:
    """The namespaces each scheduled backup takes: ``backup.velero.namespaces`` or every deployed app."""
    chosen = cfg.backup.velero.namespaces
    return sorted(chosen) if chosen is not None else sorted(cfg.deployed_apps)


def velero_problems(cfg: HomelabConfig) -> list[Problem]:
    """Why this config cannot run Velero (empty when Velero is off or can run)."""
    if not cfg.options.velero:
        return []
    offsite = cfg.backup.offsite
    fix = (
        "set backup.offsite.repository: s3:https://<host>/<bucket>/<prefix> with "
        "backup.offsite.credentials.AWS_ACCESS_KEY_ID and .AWS_SECRET_ACCESS_KEY ({file: ...}), "
        "or set options.velero: false"
    )
    if offsite is None:
        return [
            Problem("options.velero", f"Velero keeps its backups in backup.offsite's S3 store, which is not set; {fix}")
        ]
    if offsite.backend != "s3":
        return [
            Problem(
                "backup.offsite.repository",
                f"options.velero needs an S3 store (Velero's AWS plugin speaks only S3), not {offsite.backend}:; {fix}",
            )
        ]
    problems: list[Problem] = []
    store = s3_store(cfg)
    velero = cfg.backup.velero
    if store is not None and store.restic_prefix:
        ours, theirs = velero.prefix + "/", store.restic_prefix + "/"
        if ours.startswith(theirs) or theirs.startswith(ours):
            problems.append(
                Problem(
                    "backup.velero.prefix",
                    f"{velero.prefix!r} overlaps the offsite restic repository's folder {store.restic_prefix!r}; "
                    "choose another folder name",
                )
            )
    if velero.schedule is None:
        if default_schedule(cfg.backup.schedule) is None:
            problems.append(
                Problem(
                    "backup.velero.schedule",
                    f"backup.schedule {cfg.backup.schedule!r} leaves no whole hour {MIN_GAP_MINUTES} minutes "
                    "clear of it; set backup.velero.schedule to a cron schedule between its runs",
                )
            )
    else:
        gap = _gap(_times(velero.schedule), _times(cfg.backup.schedule))
        if gap < MIN_GAP_MINUTES:
            problems.append(
                Problem(
                    "backup.velero.schedule",
                    f"{velero.schedule!r} fires {gap} minute(s) from backup.schedule {cfg.backup.schedule!r}; "
                    f"keep them {MIN_GAP_MINUTES} minutes apart (or leave backup.velero.schedule out: "
                    f"the default is {default_schedule(cfg.backup.schedule)!r})",
                )
            )
    return problems


def _image(name: str) -> tuple[str, str]:
    reference = pins.load().image(name)
    repository, _, tag = reference.rpartition(":")
    return repository, tag


def chart_values(cfg: HomelabConfig) -> Obj:
    """The chart's values: Velero 1.18, the AWS plugin, Kopia, the node agent, keys from the sealed Secret."""
    from homelab.apps.render import quantity

    repository, tag = _image("velero")
    velero = cfg.backup.velero
    return {
        "image": {"repository": repository, "tag": tag},
        "initContainers": [
            {
                "name": PLUGIN,
                "image": pins.load().image(PLUGIN),
                "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [{"mountPath": "/target", "name": "plugins"}],
            }
        ],
        "configuration": {"uploaderType": "kopia"},
        "backupsEnabled": False,  # the BackupStorageLocation is rendered by manifests()
        "snapshotsEnabled": False,  # local-path volumes have no snapshot API: volumes go through the node agent
        "deployNodeAgent": True,
        "nodeAgent": {
            "resources": {
                "requests": {"memory": quantity(velero.node_agent_memory_request)},
                "limits": {"memory": quantity(velero.node_agent_memory_limit)},
            }
        },
        "credentials": {"useSecret": False, "extraSecretRef": CREDENTIALS_SECRET},
        "metrics": {"serviceMonitor": {"enabled": cfg.monitoring.enabled}},
    }


def storage_location(cfg: HomelabConfig) -> Obj:
    """The BackupStorageLocation in the offsite bucket, under ``backup.velero.prefix``."""
    store = s3_store(cfg)
    if store is None:
        raise ValueError("options.velero without an S3 backup.offsite: see velero_problems")
    return {
        "apiVersion": "velero.io/v1",
        "kind": "BackupStorageLocation",
        "metadata": _meta(LOCATION, NAMESPACE),
        "spec": {
            "provider": "aws",
            "default": True,
            "objectStorage": {"bucket": store.bucket, "prefix": cfg.backup.velero.prefix},
            # the plugin parses s3ForcePathStyle as a bool from a string; path style: most
            # S3-compatible servers (and a bucket name with dots) need it
            "config": {"region": store.region, "s3Url": store.endpoint, "s3ForcePathStyle": "true"},
        },
    }


def backup_schedule(cfg: HomelabConfig) -> Obj:
    """The Schedule: the chosen namespaces, volumes through Kopia, kept ``backup.velero.ttl_hours``."""
    return {
        "apiVersion": "velero.io/v1",
        "kind": "Schedule",
        "metadata": _meta(SCHEDULE, NAMESPACE),
        "spec": {
            "schedule": schedule(cfg),
            # A new Schedule waits for its time (schedule_controller.go getNextRunTime counts from its
            # creation), but one unpaused after a missed time backs up at once unless told not to
            # (schedule_types.go SkipImmediately): that backup would land whenever the owner unpauses.
            "skipImmediately": True,
            "template": {
                "ttl": f"{cfg.backup.velero.ttl_hours}h0m0s",
                "includedNamespaces": namespaces(cfg),
                "storageLocation": LOCATION,
                "defaultVolumesToFsBackup": True,
            },
        },
    }


def manifests(cfg: HomelabConfig) -> list[Obj]:
    """Velero's own objects beside its chart (the credentials Secret is sealed: ``needed_secret``)."""
    from homelab.apps.render import namespace

    objects = [namespace(NAMESPACE), storage_location(cfg), backup_schedule(cfg)]
    if cfg.monitoring.enabled:
        objects.append(alert_rules(cfg))
    return objects


def alert_rules(cfg: HomelabConfig) -> Obj:
    """An alert when the Schedule's last Completed backup is older than ``backup.velero.max_age_hours``."""
    hours = cfg.backup.velero.max_age_hours
    selector = f'velero_backup_last_successful_timestamp{{schedule="{SCHEDULE}"}}'
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta("homelab-velero", "monitoring"),
        "spec": {
            "groups": [
                {
                    "name": "homelab-velero",
                    "rules": [
                        {
                            "alert": "HomelabVeleroBackupTooOld",
                            "expr": f"time() - max({selector}) > {hours * 3600}",
                            "for": "10m",
                            "labels": {"severity": "critical"},
                            "annotations": {
                                "summary": f"No Completed Velero backup for more than {hours} hours",
                                "description": "inv doctor shows the storage location's phase and the last "
                                "backup; velero backup describe <name> --details says what failed.",
                            },
                        },
                        {
                            "alert": "HomelabVeleroBackupNeverCompleted",
                            "expr": f"absent({selector})",
                            "for": f"{hours}h",
                            "labels": {"severity": "critical"},
                            "annotations": {
                                "summary": "Velero has never completed a scheduled backup",
                                "description": "inv doctor shows the storage location's phase.",
                            },
                        },
                    ],
                }
            ]
        },
    }


def _meta(name: str, namespace: str) -> Obj:
    from homelab.apps.render import meta

    return meta(name, namespace)


def needed_secret(cfg: HomelabConfig) -> Any:
    """The sealed Secret of the S3 keys Velero reads (a ``NeededSecret``), or None when Velero is off."""
    from homelab.secrets.needed import NeededSecret

    offsite = cfg.backup.offsite
    if not cfg.options.velero or offsite is None:
        return None
    keys: dict[str, tuple[str, Any]] = {
        name: (f"backup.offsite.credentials.{name}", ref) for name, ref in sorted(offsite.credentials.items())
    }
    return NeededSecret(CREDENTIALS_SECRET, NAMESPACE, keys, "Velero and its node agent (envFrom)")


# --- reading what Velero did -------------------------------------------------------------------


@dataclass(frozen=True)
class LastBackup:
    """The newest Velero Backup: its name, phase and age."""

    name: str
    phase: str
    age_seconds: float

    @property
    def failed(self) -> bool:
        """PartiallyFailed is a failure: some items were not backed up, and owners read it as success."""
        return self.phase in FAILED_PHASES

    def line(self) -> str:
        return f"velero: backup {self.name} {self.phase} ({_age(self.age_seconds)} ago)"


def _created(obj: Obj) -> float:
    stamp = str(obj.get("metadata", {}).get("creationTimestamp") or "1970-01-01T00:00:00Z")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _finished(obj: Obj) -> float:
    stamp = (obj.get("status") or {}).get("completionTimestamp")
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else _created(obj)


def _age(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def newest_backup(kube: Any, now: float | None = None) -> LastBackup | None:
    """The newest Backup in the velero namespace (None when there is none)."""
    backups = kube.list_objects("velero.io/v1", "Backup", NAMESPACE)
    if not backups:
        return None
    newest = max(backups, key=_created)
    phase = str((newest.get("status") or {}).get("phase") or "New")
    return LastBackup(newest["metadata"]["name"], phase, (now or time.time()) - _created(newest))


def last_completed_age(kube: Any, now: float | None = None) -> float | None:
    """Seconds since the newest Completed Backup finished (None when none has)."""
    done = [
        b
        for b in kube.list_objects("velero.io/v1", "Backup", NAMESPACE)
        if (b.get("status") or {}).get("phase") == "Completed"
    ]
    if not done:
        return None
    return (now or time.time()) - max(_finished(b) for b in done)


def run_result(session: Any, kube: Any, now: float | None = None) -> tuple[str, bool]:
    """Velero's line for ``backup.run``'s record and whether it makes the run partial.

    Velero off: ("", False). No backup yet, or the newest one failed, partially
    failed or is older than ``backup.velero.max_age_hours``: partial.
    """
    cfg = session.cfg
    if not cfg.options.velero:
        return "", False
    try:
        last = newest_backup(kube, now)
    except Exception as err:  # the cluster or Velero's CRDs unreachable: recorded, never fatal
        return f"velero: not read ({str(err).splitlines()[0]})", True
    if last is None:
        return "velero: no backup yet (the Schedule has not run)", True
    limit = cfg.backup.velero.max_age_hours * 3600
    stale = last.age_seconds > limit
    line = last.line() + (f"; older than {cfg.backup.velero.max_age_hours} h" if stale else "")
    return line, last.failed or stale


def record(session: Any, report: Any, kube: Any = None) -> None:
    """Put Velero's result into ``backup.run``'s report: a component ok, or failed (the run partial, exit 3).

    ``report`` is a ``backup.run.RunReport`` (its ``ok`` list and ``failed`` dict). A cluster
    that cannot be reached is Velero's failure here, never the run's fatal error.
    """
    if not session.cfg.options.velero:
        return
    if kube is None:
        from homelab.core import cluster

        try:
            kube = cluster.connect(session)
        except Exception as err:
            report.failed["velero"] = f"not read: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
            return
    line, partial = run_result(session, kube)
    detail = line.removeprefix("velero: ")
    if partial:
        report.failed["velero"] = detail
    else:
        report.ok.append(f"velero ({detail})")


def doctor_checks(session: Any, kube: Any, now: float | None = None) -> list[Any]:
    """The storage location's phase and the age of the last Completed backup (nothing when Velero is off)."""
    from homelab.root.doctor import fail, ok, warn

    cfg = session.cfg
    if not cfg.options.velero or kube is None:
        return []
    checks = []
    try:
        bsl = kube.get("velero.io/v1", "BackupStorageLocation", LOCATION, NAMESPACE)
        age = last_completed_age(kube, now)
    except Exception as err:
        return [fail("velero", str(err).splitlines()[0], "inv up (Velero's chart installs its CRDs)")]
    phase = ((bsl or {}).get("status") or {}).get("phase")
    if phase == "Available":
        checks.append(ok("velero storage", f"location {LOCATION} Available"))
    else:
        checks.append(
            fail(
                "velero storage",
                f"location {LOCATION} {phase or ('missing' if bsl is None else 'not checked yet')}",
                "check backup.offsite (endpoint, bucket, keys) and the velero logs "
                "(kubectl -n velero logs deploy/velero)",
            )
        )
    limit = cfg.backup.velero.max_age_hours
    if age is None:
        checks.append(
            warn("velero backup", "no Completed backup yet", f"velero backup create --from-schedule {SCHEDULE}")
        )
    elif age > limit * 3600:
        checks.append(
            fail(
                "velero backup",
                f"last Completed {_age(age)} ago (limit {limit} h)",
                "velero backup get; velero backup describe <name> --details",
            )
        )
    else:
        checks.append(ok("velero backup", f"last Completed {_age(age)} ago"))
    return checks
