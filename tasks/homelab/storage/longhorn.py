"""Longhorn, honestly: what its chart is given, what the nodes need, and what it cannot protect here.

Longhorn cannot run in this project's sandbox or CI (it needs iSCSI and real block
devices on real nodes), so nothing here is exercised against a live Longhorn. Every
contract it relies on is pinned to the upstream text it came from, in a comment next
to the code that encodes it, and the unit tests check the render against those keys.

On Lima every node is a VM on the same Mac SSD. Longhorn's replicas protect against
a lost node or disk; on one disk they protect against neither and multiply the
writes. So the replica count defaults to 1 there (``options.longhorn_replicas``
raises it), and the protection that matters is the backup target: the offsite S3
store of ``backup.offsite``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from homelab.apps.render import meta
from homelab.config.schema import HomelabConfig, OffsiteCredential, SecretRef
from homelab.core.errors import UsageError
from homelab.core.plan import Action, Note, Patch, Plan, Wait

Obj = dict[str, Any]
NAMESPACE = "longhorn-system"
STORAGE_CLASS = "longhorn-homelab"
BACKUP_SECRET = "longhorn-backup-target"  # noqa: S105 - a Secret's name, not a secret
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
LONGHORN_API = "longhorn.io/v1beta2"

# -- Chart values (chart `longhorn`, versions.toml [charts.longhorn]) ---------------------------------
# Keys as the chart's values.yaml declares them at the pinned tag
# (https://github.com/longhorn/longhorn/blob/v1.12.1/chart/values.yaml; the same keys at v1.9.1):
# - persistence.defaultClass / persistence.defaultClassReplicaCount: the chart's own `longhorn`
#   StorageClass, default class and its replica count (chart default 3).
# - defaultSettings.defaultReplicaCount: the replica count of volumes made outside a StorageClass.
# - defaultBackupStore.backupTarget / .backupTargetCredentialSecret / .pollInterval: the default
#   backup target. The chart writes them into the `longhorn-default-resource` ConfigMap
#   (chart/templates/default-resource.yaml), from which longhorn-manager fills the BackupTarget
#   CR `default` (longhorn.io/v1beta2, spec.backupTargetURL / spec.credentialSecret /
#   spec.pollInterval in chart/templates/crds.yaml). This category came in 1.8.0
#   (longhorn/longhorn#10097, longhorn/website#1035); from 1.11.0 the old
#   `defaultSettings.backupTarget` is silently ignored (longhorn/longhorn#12643, ionfury/homelab#450),
#   so it must never be rendered there.
# - defaultSettings.deletingConfirmationFlag: left unset; only `uninstall_plan` sets the Setting.
CHART_VALUE_KEYS = (
    "persistence.defaultClass",
    "persistence.defaultClassReplicaCount",
    "defaultSettings.defaultReplicaCount",
    "defaultBackupStore.backupTarget",
    "defaultBackupStore.backupTargetCredentialSecret",
    "defaultBackupStore.pollInterval",
)
# Where the backup target must NOT go for the pinned version (ignored from 1.11.0, longhorn/longhorn#12643).
REMOVED_VALUE_KEYS = ("defaultSettings.backupTarget", "defaultSettings.backupTargetCredentialSecret")
BACKUP_POLL_SECONDS = 300  # the chart's documented default for defaultBackupStore.pollInterval

# -- Backup target credentials ---------------------------------------------------------------------------
# The keys longhorn-manager reads from the credential Secret of an S3 target: AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY and, for any server other than AWS, AWS_ENDPOINTS (longhorn docs,
# snapshots-and-backups/backup-and-restore/set-backup-target; scripts/generate-backupstore-credentials.sh
# at v1.12.1 names the same variables).
SECRET_KEYS: tuple[OffsiteCredential, ...] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
ENDPOINT_KEY = "AWS_ENDPOINTS"

# -- Node prerequisites ----------------------------------------------------------------------------------
# Longhorn's installation requirements (https://longhorn.io/docs/1.11.1/deploy/install/): open-iscsi
# installed with the iscsid daemon running on every node, and an NFSv4 client for RWX volumes.
# Its environment check script (scripts/environment_check.sh, removed in 0cb09242 for longhornctl)
# installed `nfs-common open-iscsi` on Debian/Ubuntu, accepted iscsid.service or iscsid.socket, and
# warned when multipathd runs: multipathd claims Longhorn's iSCSI disks; the fix is a blacklist of
# `devnode "^sd[a-z0-9]+"` in /etc/multipath.conf (https://longhorn.io/kb/troubleshooting-volume-with-multipath).
NODE_PACKAGES = ("open-iscsi", "nfs-common")
MULTIPATH_CONF = "/etc/multipath.conf"
MULTIPATH_BLACKLIST = 'blacklist {\n    devnode "^sd[a-z0-9]+"\n}\n'

# -- K3S's local-path ------------------------------------------------------------------------------------
# K3S re-writes and re-applies its packaged manifests (local-storage among them) at every start
# (https://docs.k3s.io/installation/packaged-components), so an is-default-class annotation changed
# by hand comes back "true" after a restart or upgrade (k3s-io/k3s#4083, k3s-io/k3s#11936). Disabling
# local-storage (brandond in #4083) would take away the class every app volume names
# (apps.<name>.storage_class defaults to local-path). So the platform renders the local-path
# StorageClass itself, identical to K3S's (manifests/local-storage.yaml) except the annotation, and
# Argo CD's self-heal puts "false" back after each K3S start. Until it does, two classes say default;
# Kubernetes then uses the newest (storage-classes docs, "Default StorageClass"), Longhorn's.
LOCAL_PATH = {
    "name": "local-path",
    "provisioner": "rancher.io/local-path",
    "volumeBindingMode": "WaitForFirstConsumer",
    "reclaimPolicy": "Delete",
}


def one_host_disk(cfg: HomelabConfig) -> bool:
    """Whether every node shares one host disk: all are Lima VMs, on the same Mac's SSD."""
    return all(node.provider == "lima" for node in cfg.nodes)


def replicas(cfg: HomelabConfig) -> int:
    """``options.longhorn_replicas``, else 1 on one host disk, else 3 (Longhorn's) capped at the node count.

    Replicas on the same disk protect nothing against that disk and multiply every write.
    """
    if cfg.options.longhorn_replicas is not None:
        return cfg.options.longhorn_replicas
    if one_host_disk(cfg):
        return 1
    return max(1, min(3, len(cfg.nodes)))


@dataclass(frozen=True)
class Target:
    """Longhorn's S3 backup target for ``backup.offsite``: its URL and, off AWS, its endpoint."""

    url: str
    endpoint: str | None


def backup_target(cfg: HomelabConfig) -> Target | None:
    """The target for an ``s3:`` offsite store; None when there is none (or it is not S3).

    restic names an S3 repository ``s3:<host>/<bucket>[/<path>]`` or ``s3:<scheme>://<host>/<bucket>[/<path>]``
    (https://restic.readthedocs.io/en/stable/030_preparing_a_new_repo.html#amazon-s3); Longhorn's S3 URL is
    ``s3://<bucket>@<region>/<path>`` with the server in AWS_ENDPOINTS (Longhorn's set-backup-target docs).
    Longhorn writes under ``<path>/backupstore``, so it never mixes with the restic repository's files.
    """
    offsite = cfg.backup.offsite
    if offsite is None or offsite.backend != "s3":
        return None
    location = offsite.repository.partition(":")[2]
    if "://" not in location:
        location = f"https://{location}"
    parts = urlsplit(location)
    bucket, _, path = parts.path.strip("/").partition("/")
    host = parts.hostname or ""
    aws = host == "amazonaws.com" or host.endswith(".amazonaws.com")
    prefix = "/".join(p for p in (path, "longhorn") if p)
    return Target(
        url=f"s3://{bucket}@{offsite.region}/{prefix}/",
        endpoint=None if aws else f"{parts.scheme}://{parts.netloc}",
    )


def notices(cfg: HomelabConfig) -> list[str]:
    """What the owner must know about the Longhorn render (shown by the deploy and the doctor)."""
    if not cfg.options.longhorn:
        return []
    found = []
    if backup_target(cfg) is None:
        found.append(
            "options.longhorn: no backup target: Longhorn backs up to S3 and backup.offsite is "
            + ("not set" if cfg.backup.offsite is None else f"{cfg.backup.offsite.backend}:, not s3:")
            + "; its volumes are then only as safe as the Mac's disk. Set backup.offsite.repository to an s3: store"
        )
    target = backup_target(cfg)
    if (
        target is not None
        and target.endpoint
        and urlsplit(target.endpoint).hostname in ("127.0.0.1", "localhost", "::1")
    ):
        found.append(
            f"backup.offsite.repository: {target.endpoint} is this machine's loopback; Longhorn runs in the cluster "
            "and cannot reach it, so its backups fail; name the S3 server by an address the nodes reach"
        )
    if one_host_disk(cfg) and replicas(cfg) > 1:
        found.append(
            f"options.longhorn_replicas: {replicas(cfg)} replicas on one host disk protect nothing against "
            "that disk and multiply every write"
        )
    return found


def chart_values(cfg: HomelabConfig) -> Obj:
    """The longhorn chart's values: replicas, no second default class, the backup target at the pinned place."""
    count = replicas(cfg)
    values: Obj = {
        # The chart's own `longhorn` class stays, not default: STORAGE_CLASS is the one default.
        "persistence": {"defaultClass": False, "defaultClassReplicaCount": count},
        "defaultSettings": {"defaultReplicaCount": count},
    }
    target = backup_target(cfg)
    if target is not None:
        values["defaultBackupStore"] = {
            "backupTarget": target.url,
            "backupTargetCredentialSecret": BACKUP_SECRET,
            "pollInterval": str(BACKUP_POLL_SECONDS),
        }
    return values


def storage_classes(cfg: HomelabConfig) -> list[Obj]:
    """``longhorn-homelab`` (the default class) and K3S's ``local-path`` kept, no longer default.

    A StorageClass's provisioner, binding mode and reclaim policy cannot change, so local-path is
    rendered with the fields the cluster already has: K3S's, or on the sandbox its stand-in's.
    """
    fields = {key: value for key, value in LOCAL_PATH.items() if key != "name"}
    if cfg.target == "sandbox":
        from homelab.sandbox.cluster import local_path_storage_class

        stand_in = local_path_storage_class()
        fields = {key: stand_in[key] for key in fields}
    local_path = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            **meta(LOCAL_PATH["name"]),
            "annotations": {"defaultVolumeType": "local", DEFAULT_CLASS_ANNOTATION: "false"},
        },
        **fields,
    }
    longhorn = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {**meta(STORAGE_CLASS), "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": "driver.longhorn.io",
        "allowVolumeExpansion": True,
        "reclaimPolicy": "Retain",
        # StorageClass parameters of driver.longhorn.io (longhorn docs, references/storage-class-parameters)
        "parameters": {"numberOfReplicas": str(replicas(cfg)), "dataLocality": "best-effort"},
    }
    return [longhorn, local_path]


def manifests(cfg: HomelabConfig) -> list[Obj]:
    """The platform's own Longhorn objects (the chart's values are ``chart_values``)."""
    return storage_classes(cfg)


def needed_secrets(cfg: HomelabConfig) -> list[Any]:
    """The backup target's credential Secret, sealed from ``backup.offsite.credentials`` (secrets/needed.py)."""
    from homelab.secrets.needed import NeededSecret

    target = backup_target(cfg)
    offsite = cfg.backup.offsite
    if not cfg.options.longhorn or target is None or offsite is None:
        return []
    keys: dict[str, tuple[str, SecretRef]] = {
        key: (f"backup.offsite.credentials.{key}", offsite.credentials[key]) for key in SECRET_KEYS
    }
    literals = {ENDPOINT_KEY: target.endpoint} if target.endpoint else {}
    return [NeededSecret(BACKUP_SECRET, NAMESPACE, keys, "Longhorn's backup target (default)", literals)]


# -- Node preparation and preflight ----------------------------------------------------------------------


def provision_lines(cfg: HomelabConfig) -> list[str]:
    """First-boot lines for a node when Longhorn is on: its packages, iscsid running, multipath kept off."""
    if not cfg.options.longhorn:
        return []
    return [
        "DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {' '.join(NODE_PACKAGES)}",
        "systemctl enable --now iscsid",
        f"if command -v multipathd >/dev/null 2>&1 && ! grep -qs 'sd\\[a-z0-9\\]' {MULTIPATH_CONF}; then",
        f"  cat >> {MULTIPATH_CONF} <<'MULTIPATH'",
        MULTIPATH_BLACKLIST.rstrip(),
        "MULTIPATH",
        "  systemctl restart multipathd",
        "fi",
    ]


# Read-only; appended to the k3s preflight script when Longhorn is on (k3s/preflight.py).
PREFLIGHT_SCRIPT = r"""
if systemctl is-active --quiet iscsid.service 2>/dev/null || systemctl is-active --quiet iscsid.socket 2>/dev/null; then
  echo "iscsid=yes"; else echo "iscsid=no"; fi
if command -v mount.nfs4 >/dev/null 2>&1 || [ -x /sbin/mount.nfs4 ] || [ -x /usr/sbin/mount.nfs4 ]; then
  echo "nfs4=yes"; else echo "nfs4=no"; fi
if systemctl is-active --quiet multipathd.service 2>/dev/null; then
  if grep -qs 'sd\[a-z0-9\]' /etc/multipath.conf; then echo "multipath=blacklisted"; else echo "multipath=claims"; fi
else echo "multipath=off"; fi
"""


def preflight_problems(node: str, values: dict[str, str]) -> list[str]:
    """One line per missing Longhorn prerequisite on ``node``, from PREFLIGHT_SCRIPT's output, with the fix."""
    lines = []
    if values.get("iscsid") != "yes":
        lines.append(
            f"{node}: iscsid is not running; Longhorn attaches volumes over iSCSI: "
            "sudo apt-get install -y open-iscsi && sudo systemctl enable --now iscsid"
        )
    if values.get("nfs4") != "yes":
        lines.append(
            f"{node}: no NFSv4 client (mount.nfs4); Longhorn's RWX volumes need it: sudo apt-get install -y nfs-common"
        )
    if values.get("multipath") == "claims":
        lines.append(
            f"{node}: multipathd runs without a blacklist for Longhorn's disks; add "
            f"'blacklist {{ devnode \"^sd[a-z0-9]+\" }}' to {MULTIPATH_CONF} and restart multipathd "
            "(or stop it: sudo systemctl disable --now multipathd)"
        )
    return lines


# -- Upgrades ------------------------------------------------------------------------------------------------


def attached_on(kube: Any, node: str) -> list[str]:
    """Longhorn volumes still attached to ``node``: status.currentNodeID there and state not detached.

    Volume CR fields from chart/templates/crds.yaml (longhorn.io/v1beta2 Volume: status.state,
    status.currentNodeID).
    """
    volumes = kube.list_objects(LONGHORN_API, "Volume", NAMESPACE)
    return sorted(
        volume["metadata"]["name"]
        for volume in volumes
        if volume.get("status", {}).get("currentNodeID") == node
        and volume.get("status", {}).get("state", "detached") != "detached"
    )


def detached_check(kube: Any, node: str) -> Callable[[], str | None]:
    """A Wait check: None once no Longhorn volume is attached to ``node``, else which are."""

    def check() -> str | None:
        left = attached_on(kube, node)
        return f"Longhorn volumes still attached to {node}: {', '.join(left)}" if left else None

    return check


def detach_wait(cfg: HomelabConfig, node: str, check: Callable[[], str | None]) -> list[Action]:
    """After the drain, before K3S restarts: wait (bounded by k3s.drain_timeout) for the node's volumes to detach.

    A volume detaches once the pods using it are evicted; restarting K3S under an attached volume is
    what Longhorn's node-maintenance guide warns against (longhorn docs, maintenance/maintenance).
    """
    if not cfg.options.longhorn:
        return []
    return [Wait(f"Longhorn volumes on {node} to detach", check, timeout=cfg.k3s.drain_timeout, interval=2.0)]


# -- Uninstall ---------------------------------------------------------------------------------------------------


def uninstall_plan(yes: bool) -> list[Action]:
    """Set Longhorn's ``deleting-confirmation-flag``, which its uninstaller requires; only when asked with ``yes``.

    The flag is a Setting CR (longhorn.io/v1beta2 Setting, a top-level ``value`` string: chart/templates/crds.yaml);
    Longhorn's uninstall job refuses to run while it is false (longhorn docs, deploy/uninstall). Nothing in the
    rendered platform ever sets it: an Application pruned by mistake must not be able to delete every volume.
    """
    if not yes:
        return [
            Note(
                "Longhorn's deleting-confirmation-flag not set: uninstalling Longhorn deletes every Longhorn volume; "
                "run again with --yes once their data is backed up"
            )
        ]
    return [
        Patch(
            LONGHORN_API,
            "Setting",
            "deleting-confirmation-flag",
            NAMESPACE,
            {"value": "true"},
            why="allow Longhorn's uninstaller to delete every Longhorn volume (asked with --yes)",
        )
    ]


def uninstall(cfg: HomelabConfig, yes: bool, dry_run: bool = False) -> Plan:
    """``storage.longhorn-uninstall``'s plan: refused (exit 2, nothing changed) without ``--yes`` or the option.

    A dry run is never refused: it says there is nothing to do, or shows what ``--yes`` would change.
    """
    if not cfg.options.longhorn:
        if dry_run:
            return Plan(
                "allow Longhorn's uninstall", [Note("options.longhorn is off: there is no Longhorn to uninstall")]
            )
        raise UsageError("options.longhorn is off: there is no Longhorn to uninstall")
    if dry_run:
        return Plan("allow Longhorn's uninstall (with --yes)", uninstall_plan(True))
    if not yes:
        raise UsageError(
            "storage.longhorn-uninstall: uninstalling Longhorn deletes every Longhorn volume and its data; "
            "back them up, then pass --yes"
        )
    return Plan("allow Longhorn's uninstall", uninstall_plan(yes))
