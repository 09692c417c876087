"""The Secrets the cluster needs: every one the rendered tree references, from the config's references."""

from __future__ import annotations

from helpers import loopback_data
from homelab.config import loader
from homelab.gitops import platform, tree
from homelab.root.doctor import referenced
from homelab.secrets.needed import needed


def test_every_secret_a_rendered_workload_or_component_reads_is_needed() -> None:
    cfg = loader.validate(loopback_data())
    wanted = {(s.namespace, s.name): set(s.keys) for s in needed(cfg)}
    objects = tree.objects_in_apply_order(tree.render(cfg))
    for obj in objects:
        if obj["kind"] == "Deployment":
            for kind, name in referenced(obj["spec"]["template"]["spec"]):
                if kind == "Secret":
                    assert (obj["metadata"]["namespace"], name) in wanted, name
    issuer = next(o for o in objects if o["kind"] == "ClusterIssuer")
    ref = issuer["spec"]["acme"]["solvers"][0]["dns01"]["cloudflare"]["apiTokenSecretRef"]
    assert ref["key"] in wanted[("cert-manager", ref["name"])]  # ClusterIssuers read cert-manager's namespace
    alertmanager = platform.monitoring_values(cfg)["alertmanager"]
    [mounted] = alertmanager["alertmanagerSpec"]["secrets"]
    token_file = alertmanager["config"]["receivers"][1]["telegram_configs"][0]["bot_token_file"]
    assert token_file.endswith(f"/{mounted}/bot-token") and "bot-token" in wanted[("monitoring", mounted)]
    assert wanted[("vaultwarden", "vaultwarden-secrets")] == {"ADMIN_TOKEN"}


def test_only_enabled_parts_need_their_secrets() -> None:
    data = loopback_data()
    data["cloudflare"] = {**data.get("cloudflare", {}), "tunnel_enabled": False}
    data["monitoring"] = {**data.get("monitoring", {}), "enabled": False}
    data["apps"]["vaultwarden"]["secrets"] = {}
    names = {s.name for s in needed(loader.validate(data))}
    assert names == {"cloudflare-api-token"}


def test_referenced_finds_volumes_env_and_claims_but_not_optional_ones() -> None:
    pod = {
        "volumes": [
            {"name": "a", "secret": {"secretName": "s1"}},
            {"name": "b", "secret": {"secretName": "s2", "optional": True}},
            {"name": "c", "configMap": {"name": "c1"}},
            {"name": "d", "persistentVolumeClaim": {"claimName": "p1"}},
        ],
        "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s3"}}]}],
        "containers": [
            {
                "name": "m",
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s4", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "c2", "key": "k", "optional": True}}},
                ],
            }
        ],
    }
    assert sorted(referenced(pod)) == [
        ("ConfigMap", "c1"),
        ("PersistentVolumeClaim", "p1"),
        ("Secret", "s1"),
        ("Secret", "s3"),
        ("Secret", "s4"),
    ]


def test_the_doctor_names_each_missing_reference_and_its_workload() -> None:
    from types import SimpleNamespace

    from homelab.root.doctor import check_references

    cfg = loader.validate(loopback_data())

    class Cluster:
        """Holds every object except the ones listed as missing."""

        def __init__(self, missing: set[tuple[str, str, str]]) -> None:
            self.missing = missing

        def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> object:
            return None if (kind, namespace, name) in self.missing else {"kind": kind}

    session = SimpleNamespace(cfg=cfg)
    [fine] = check_references(session, Cluster(set()))
    assert fine.status == "ok"
    [broken] = check_references(session, Cluster({("Secret", "vaultwarden", "vaultwarden-secrets")}))
    assert broken.status == "fail"
    assert broken.detail == "missing: Secret vaultwarden/vaultwarden-secrets (for vaultwarden)"
    assert "inv secrets.seal" in broken.fix
