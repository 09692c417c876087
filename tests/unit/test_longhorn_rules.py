"""The Longhorn option: replicas, backup target, default class, node prerequisites, upgrades, uninstall.

Longhorn cannot run here (it needs iSCSI and block devices on real nodes), so the render is checked
against the keys of the upstream sources cited in ``homelab.storage.longhorn`` (chart values and CRDs
at the pinned tag), and everything else runs on plans and given node output.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpers import loopback_data
from homelab.config import loader
from homelab.core.errors import ConfigError, UsageError
from homelab.core.plan import Drain, Note, Patch, Wait
from homelab.gitops import platform
from homelab.k3s import plan as k3s
from homelab.k3s import preflight
from homelab.sandbox.cluster import local_path_storage_class
from homelab.secrets import needed
from homelab.storage import longhorn
from homelab.vm import lima

KEYS = {"AWS_ACCESS_KEY_ID": {"file": "/k/id"}, "AWS_SECRET_ACCESS_KEY": {"file": "/k/secret"}}


def config(offsite: dict[str, Any] | None = None, **options: Any) -> Any:
    data = loopback_data()
    data["options"] = {"longhorn": True, **options}
    if offsite is not None:
        data["backup"]["offsite"] = offsite
    return loader.validate(data)


def key_paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths |= key_paths(value, f"{path}.") if isinstance(value, dict) else {path}
    return paths


# -- replicas ---------------------------------------------------------------------------------------------


def test_replicas_default_to_one_when_every_node_is_a_vm_on_the_same_mac() -> None:
    cfg = config()
    assert longhorn.one_host_disk(cfg)
    values = longhorn.chart_values(cfg)
    assert values["persistence"]["defaultClassReplicaCount"] == 1
    assert values["defaultSettings"]["defaultReplicaCount"] == 1
    [lh] = [sc for sc in longhorn.storage_classes(cfg) if sc["metadata"]["name"] == longhorn.STORAGE_CLASS]
    assert lh["parameters"]["numberOfReplicas"] == "1"


def test_options_longhorn_replicas_raises_the_count_everywhere_and_warns_on_one_disk() -> None:
    cfg = config(longhorn_replicas=2)
    assert longhorn.chart_values(cfg)["persistence"]["defaultClassReplicaCount"] == 2
    assert longhorn.chart_values(cfg)["defaultSettings"]["defaultReplicaCount"] == 2
    assert any("protect nothing against that disk" in n for n in longhorn.notices(cfg))


def test_separate_machines_get_longhorns_three_replicas_capped_at_the_node_count() -> None:
    data = loopback_data()
    data["options"] = {"longhorn": True}
    for node in data["nodes"]:
        node["provider"] = "ssh"
    assert longhorn.replicas(loader.validate(data)) == 3
    data["nodes"] = data["nodes"][:2]
    assert longhorn.replicas(loader.validate(data)) == 2


def test_more_replicas_than_nodes_is_refused_naming_the_key_with_exit_2() -> None:
    data = loopback_data()
    data["options"] = {"longhorn": True, "longhorn_replicas": 3}
    data["nodes"] = data["nodes"][:2]
    with pytest.raises(ConfigError) as caught:
        loader.validate(data)
    assert "options.longhorn_replicas" in str(caught.value) and "lower it to 2" in str(caught.value)
    assert caught.value.exit_code == 2


def test_the_old_boolean_option_alone_stays_valid() -> None:
    data = loopback_data()
    data["options"] = {"longhorn": True}
    assert loader.validate(data).options.longhorn_replicas is None


# -- backup target ---------------------------------------------------------------------------------------------


def test_an_s3_offsite_becomes_the_default_backup_target_with_its_endpoint_in_the_secret() -> None:
    cfg = config({"repository": "s3:https://s3.example.com:9000/bucket/homelab", "credentials": KEYS})
    store = longhorn.chart_values(cfg)["defaultBackupStore"]
    assert store == {
        "backupTarget": "s3://bucket@us-east-1/homelab/longhorn/",
        "backupTargetCredentialSecret": longhorn.BACKUP_SECRET,
        "pollInterval": "300",
    }
    [secret] = [s for s in needed.needed(cfg) if s.name == longhorn.BACKUP_SECRET]
    assert secret.namespace == "longhorn-system"
    assert {key: path for key, (path, _) in secret.keys.items()} == {
        "AWS_ACCESS_KEY_ID": "backup.offsite.credentials.AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY": "backup.offsite.credentials.AWS_SECRET_ACCESS_KEY",
    }
    assert secret.literals == {"AWS_ENDPOINTS": "https://s3.example.com:9000"}
    assert longhorn.notices(cfg) == []


def test_aws_needs_no_endpoint_and_the_region_comes_from_the_offsite() -> None:
    cfg = config({"repository": "s3:s3.amazonaws.com/my-bucket", "credentials": KEYS, "region": "eu-west-1"})
    assert longhorn.backup_target(cfg) == longhorn.Target("s3://my-bucket@eu-west-1/longhorn/", None)
    [secret] = [s for s in needed.needed(cfg) if s.name == longhorn.BACKUP_SECRET]
    assert secret.literals == {}


def test_the_backup_target_is_never_rendered_where_the_pinned_version_ignores_it() -> None:
    cfg = config({"repository": "s3:https://s3.example.com/bucket", "credentials": KEYS})
    paths = key_paths(longhorn.chart_values(cfg))
    assert paths <= set(longhorn.CHART_VALUE_KEYS), paths - set(longhorn.CHART_VALUE_KEYS)
    assert not paths & set(longhorn.REMOVED_VALUE_KEYS)
    assert not any("deletingConfirmationFlag" in p for p in paths)


@pytest.mark.parametrize(
    ("offsite", "says"),
    [
        (None, "backup.offsite is not set"),
        (
            {
                "repository": "b2:bucket:homelab",
                "credentials": {"B2_ACCOUNT_ID": {"file": "/a"}, "B2_ACCOUNT_KEY": {"file": "/b"}},
            },
            "b2:, not s3:",
        ),
    ],
)
def test_without_an_s3_offsite_there_is_no_target_no_secret_and_a_notice_naming_the_key(
    offsite: dict[str, Any] | None, says: str
) -> None:
    cfg = config(offsite)
    assert "defaultBackupStore" not in longhorn.chart_values(cfg)
    assert not [s for s in needed.needed(cfg) if s.name == longhorn.BACKUP_SECRET]
    [notice] = longhorn.notices(cfg)
    assert "backup.offsite" in notice and says in notice


def test_a_loopback_s3_server_is_named_as_out_of_the_clusters_reach() -> None:
    cfg = config({"repository": "s3:http://127.0.0.1:7070/bucket", "credentials": KEYS})
    [notice] = longhorn.notices(cfg)
    assert notice.startswith("backup.offsite.repository: http://127.0.0.1:7070 is this machine's loopback")


def test_no_secret_value_is_in_the_render() -> None:
    cfg = config({"repository": "s3:https://s3.example.com/bucket", "credentials": KEYS})
    text = json.dumps([platform.platform(cfg)["longhorn"], longhorn.chart_values(cfg)])
    assert "/k/secret" not in text and "AWS_SECRET_ACCESS_KEY" not in text


# -- the default StorageClass -------------------------------------------------------------------------------------


def test_longhorn_is_the_one_default_class_and_local_path_stays_as_k3s_ships_it() -> None:
    data = loopback_data()
    data["options"] = {"longhorn": True}
    data["target"] = "lima"
    cfg = loader.validate(data)
    classes = {sc["metadata"]["name"]: sc for sc in longhorn.storage_classes(cfg)}
    defaults = [
        n for n, sc in classes.items() if sc["metadata"]["annotations"][longhorn.DEFAULT_CLASS_ANNOTATION] == "true"
    ]
    assert defaults == [longhorn.STORAGE_CLASS]
    assert longhorn.chart_values(cfg)["persistence"]["defaultClass"] is False  # the chart's `longhorn` class is not
    local = classes["local-path"]
    # immutable fields as K3S's manifests/local-storage.yaml has them, or the apply would be refused
    assert (local["provisioner"], local["volumeBindingMode"], local["reclaimPolicy"]) == (
        "rancher.io/local-path",
        "WaitForFirstConsumer",
        "Delete",
    )
    assert local["metadata"]["annotations"][longhorn.DEFAULT_CLASS_ANNOTATION] == "false"


def test_on_the_sandbox_local_path_keeps_the_stand_ins_immutable_fields() -> None:
    data = loopback_data()
    data["options"] = {"longhorn": True}
    data["target"] = "sandbox"
    cfg = loader.validate(data)
    [local] = [sc for sc in longhorn.storage_classes(cfg) if sc["metadata"]["name"] == "local-path"]
    stand_in = local_path_storage_class()
    assert {k: local[k] for k in ("provisioner", "volumeBindingMode", "reclaimPolicy")} == {
        k: stand_in[k] for k in ("provisioner", "volumeBindingMode", "reclaimPolicy")
    }
    assert local["metadata"]["annotations"][longhorn.DEFAULT_CLASS_ANNOTATION] == "false"


def test_the_platform_carries_the_values_and_classes_and_nothing_without_the_option() -> None:
    cfg = config({"repository": "s3:https://s3.example.com/bucket", "credentials": KEYS})
    app, objects = platform.platform(cfg)["longhorn"]
    assert app is not None and app["spec"]["source"]["helm"]["valuesObject"] == longhorn.chart_values(cfg)
    assert objects == longhorn.storage_classes(cfg)
    data = loopback_data()
    off = loader.validate(data)
    assert "longhorn" not in platform.platform(off)
    assert longhorn.notices(off) == [] and longhorn.provision_lines(off) == []


# -- nodes ------------------------------------------------------------------------------------------------------------


def test_the_first_boot_script_installs_longhorns_packages_only_with_the_option() -> None:
    cfg = config()
    script = lima.provision_script(cfg, cfg.server, "ssh-ed25519 AAAA test")
    assert "apt-get install -y -qq open-iscsi nfs-common" in script
    assert "systemctl enable --now iscsid" in script
    assert 'devnode "^sd[a-z0-9]+"' in script
    assert script.index("open-iscsi") < script.index(lima.PROVISIONED)
    plain = loader.validate(loopback_data())
    assert "open-iscsi" not in lima.provision_script(plain, plain.server, "ssh-ed25519 AAAA test")


HEALTHY = "hostname={name}\nsudo=ok\ncgroup_memory=yes\nlistening=\ndisk_kib=52428800\nk3s=no\nsqlite3=yes\napt=yes\n"


def facts(cfg: Any, extra: str) -> dict[str, Any]:
    return {n.name: preflight.parse(HEALTHY.format(name=n.name) + extra) for n in cfg.nodes}


def test_preflight_reads_longhorns_prerequisites_only_with_the_option() -> None:
    cfg = config()
    assert longhorn.PREFLIGHT_SCRIPT in preflight.script_for(cfg)
    plain = loader.validate(loopback_data())
    assert longhorn.PREFLIGHT_SCRIPT not in preflight.script_for(plain)
    assert preflight.problems_for(plain, facts(plain, "iscsid=no\nnfs4=no\nmultipath=claims\n")) == []


def test_a_node_ready_for_longhorn_passes_and_a_blacklisted_multipathd_is_fine() -> None:
    cfg = config()
    assert preflight.problems_for(cfg, facts(cfg, "iscsid=yes\nnfs4=yes\nmultipath=blacklisted\n")) == []
    assert preflight.problems_for(cfg, facts(cfg, "iscsid=yes\nnfs4=yes\nmultipath=off\n")) == []


def test_each_missing_prerequisite_is_one_line_per_node_with_its_fix() -> None:
    cfg = config()
    lines = preflight.problems_for(cfg, facts(cfg, "iscsid=no\nnfs4=no\nmultipath=claims\n"))
    assert len(lines) == 3 * len(cfg.nodes)
    server = [line for line in lines if line.startswith("k3s-server:")]
    assert "iscsid is not running" in server[0] and "systemctl enable --now iscsid" in server[0]
    assert "mount.nfs4" in server[1] and "apt-get install -y nfs-common" in server[1]
    assert "multipathd" in server[2] and 'devnode "^sd[a-z0-9]+"' in server[2]


def test_a_node_that_said_nothing_about_longhorn_is_not_taken_as_ready() -> None:
    cfg = config()
    lines = preflight.problems_for(cfg, facts(cfg, ""))
    assert any("iscsid is not running" in line for line in lines)


# -- upgrades --------------------------------------------------------------------------------------------------------


class FakeKube:
    """Longhorn Volume objects as the API lists them (longhorn.io/v1beta2, longhorn-system)."""

    def __init__(self, volumes: list[dict[str, Any]]) -> None:
        self.volumes = volumes
        self.asked: list[tuple[str, str, str | None]] = []

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        self.asked.append((api_version, kind, namespace))
        return self.volumes


def volume(name: str, node: str, state: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"currentNodeID": node, "state": state}}


def test_the_upgrade_waits_for_the_nodes_volumes_to_detach_after_the_drain_before_k3s_restarts() -> None:
    cfg = config()
    node = cfg.nodes[1]
    kube = FakeKube([volume("pvc-a", node.name, "attached"), volume("pvc-b", "k3s-server", "attached")])
    plan = k3s.upgrade_plan(cfg, node, "v1.34.1+k3s1", lambda: None, detached=longhorn.detached_check(kube, node.name))
    kinds = [type(a).__name__ for a in plan.actions]
    drain = kinds.index("Drain")
    wait = plan.actions[drain + 1]
    assert isinstance(plan.actions[drain], Drain) and isinstance(wait, Wait)
    assert wait.what == f"Longhorn volumes on {node.name} to detach" and wait.timeout == cfg.k3s.drain_timeout
    assert wait.check() == f"Longhorn volumes still attached to {node.name}: pvc-a"
    assert kube.asked == [("longhorn.io/v1beta2", "Volume", "longhorn-system")]
    kube.volumes = [volume("pvc-a", node.name, "detached"), volume("pvc-b", "k3s-server", "attached")]
    assert wait.check() is None


def test_without_longhorn_the_upgrade_has_no_volume_wait() -> None:
    plain = loader.validate(loopback_data())
    plan = k3s.upgrade_plan(plain, plain.nodes[1], "v1.34.1+k3s1", lambda: None, detached=lambda: "x")
    assert not [a for a in plan.actions if isinstance(a, Wait) and "Longhorn" in a.what]


# -- uninstall ---------------------------------------------------------------------------------------------


def test_the_uninstall_confirmation_flag_is_set_only_with_yes() -> None:
    [note] = longhorn.uninstall_plan(yes=False)
    assert isinstance(note, Note) and "--yes" in note.text
    [patch] = longhorn.uninstall_plan(yes=True)
    assert isinstance(patch, Patch)
    # a Setting CR keeps its value at the top level (chart/templates/crds.yaml, longhorn.io/v1beta2 Setting)
    assert (patch.api_version, patch.kind, patch.name, patch.namespace, patch.body) == (
        "longhorn.io/v1beta2",
        "Setting",
        "deleting-confirmation-flag",
        "longhorn-system",
        {"value": "true"},
    )


def test_nothing_rendered_sets_the_uninstall_flag() -> None:
    cfg = config({"repository": "s3:https://s3.example.com/bucket", "credentials": KEYS})
    text = json.dumps(platform.platform(cfg), default=str)
    assert "deleting-confirmation-flag" not in text and "deletingConfirmationFlag" not in text


def test_the_uninstall_task_refuses_without_yes_or_without_longhorn_with_exit_2() -> None:
    with pytest.raises(UsageError, match="pass --yes") as caught:
        longhorn.uninstall(config(), yes=False)
    assert caught.value.exit_code == 2
    with pytest.raises(UsageError, match=r"options\.longhorn is off"):
        longhorn.uninstall(loader.validate(loopback_data()), yes=True)
    plan = longhorn.uninstall(config(), yes=True)
    assert [a.name for a in plan.actions if isinstance(a, Patch)] == ["deleting-confirmation-flag"]


def test_the_storage_namespace_offers_the_uninstall_with_yes_off_by_default() -> None:
    import inspect

    from homelab.storage import tasks

    task = tasks.ns["longhorn-uninstall"]
    assert "deleting-confirmation-flag" in task.help["yes"]
    assert inspect.signature(task.body).parameters["yes"].default is False


def test_the_doctor_shows_each_notice_as_a_warning_naming_its_key_and_nothing_when_longhorn_is_off() -> None:
    from types import SimpleNamespace

    from homelab.root.doctor import check_longhorn

    rows = check_longhorn(SimpleNamespace(cfg=config(longhorn_replicas=2)))
    assert {row.status for row in rows} == {"warn"}
    details = sorted(row.detail for row in rows)
    assert details[0].startswith("options.longhorn: no backup target") and "backup.offsite.repository" in details[0]
    assert details[1].startswith("options.longhorn_replicas: 2 replicas on one host disk protect nothing")
    assert check_longhorn(SimpleNamespace(cfg=loader.validate(loopback_data()))) == []
