"""Pods that read their configuration or secrets only at start roll when those change.

cloudflared reads its ingress rules once, when it starts: a new app's hostname
added to its ConfigMap answers 404 until the pods restart. An app that takes its
Secret through ``envFrom`` (Vaultwarden's ``ADMIN_TOKEN``) sees a new value only in a
new pod. Kubernetes updates neither by itself; it rolls a Deployment only when its
pod template changes. So the render stamps each Deployment's pod template with a
checksum of what it reads: ``checksum/config`` over the ConfigMaps it mounts or
takes as environment (found in the same rendered tree), ``checksum/secret`` over
the SealedSecrets behind the Secrets it does (found in ``secrets.sealed_dir``; the
encrypted data changes whenever a value is resealed, so its checksum does too,
and it says nothing about the value).

Why a checksum, not a reloader controller (Stakater Reloader): the checksum is
in Git, so the roll is an ordinary Argo CD sync of a changed Deployment, visible
in ``gitops.diff`` and in the commit, on the sandbox exactly as on the homelab; it
needs no extra controller to install, pin, upgrade and watch, and no process the
sandbox would have to run for real. What it cannot see is a change made outside
Git, which this toolkit never makes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import yaml

Obj = dict[str, Any]
CONFIG = "checksum/config"
SECRET = "checksum/secret"  # noqa: S105 - an annotation name, not a secret


def digest(parts: Iterable[tuple[str, Any]]) -> str:
    """sha256 over names and contents, in a stable order (the same inputs give the same annotation)."""
    text = json.dumps(sorted(parts, key=lambda p: p[0]), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def references(pod: Obj) -> tuple[set[str], set[str]]:
    """The ConfigMap and Secret names a pod spec reads: volumes, ``envFrom``, ``env`` ``valueFrom``."""
    configs: set[str] = set()
    secrets: set[str] = set()
    for volume in pod.get("volumes") or []:
        if "configMap" in volume:
            configs.add(volume["configMap"]["name"])
        if "secret" in volume:
            secrets.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                configs.add(source["configMap"]["name"])
            if "secret" in source:
                secrets.add(source["secret"]["name"])
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                configs.add(source["configMapRef"]["name"])
            if "secretRef" in source:
                secrets.add(source["secretRef"]["name"])
        for env in container.get("env") or []:
            ref = env.get("valueFrom") or {}
            if "configMapKeyRef" in ref:
                configs.add(ref["configMapKeyRef"]["name"])
            if "secretKeyRef" in ref:
                secrets.add(ref["secretKeyRef"]["name"])
    return configs, secrets


def sealed_contents(texts: Iterable[str]) -> dict[tuple[str, str], Obj]:
    """(namespace, name) of the Secret each SealedSecret makes -> what identifies its sealed value."""
    found: dict[tuple[str, str], Obj] = {}
    for text in texts:
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError:
            continue  # not ours to judge here; the publish and the controller report it
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "SealedSecret":
                continue
            meta = doc.get("metadata") or {}
            spec = doc.get("spec") or {}
            template = (spec.get("template") or {}).get("metadata") or {}
            name = template.get("name") or meta.get("name")
            namespace = template.get("namespace") or meta.get("namespace")
            if name and namespace:
                found[(namespace, name)] = {"encryptedData": spec.get("encryptedData") or {}}
    return found


def stamp(objects: list[Obj], sealed: dict[tuple[str, str], Obj]) -> None:
    """Annotate, in place, every Deployment's pod template with the checksums of what it reads.

    ``objects``: the whole rendered tree (ConfigMaps are looked up there, in the
    Deployment's namespace). A reference with nothing behind it (a Secret sealed
    later, or made by a controller) adds nothing: the annotation appears, and the
    pods roll, once it exists.
    """
    configs = {
        (o["metadata"].get("namespace"), o["metadata"]["name"]): {
            "data": o.get("data") or {},
            "binaryData": o.get("binaryData") or {},
        }
        for o in objects
        if o.get("kind") == "ConfigMap"
    }
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        ns = obj["metadata"].get("namespace")
        template = obj["spec"]["template"]
        config_names, secret_names = references(template.get("spec") or {})
        found = {
            CONFIG: [(n, configs[(ns, n)]) for n in config_names if (ns, n) in configs],
            SECRET: [(n, sealed[(ns, n)]) for n in secret_names if (ns, n) in sealed],
        }
        annotations = {key: digest(parts) for key, parts in found.items() if parts}
        if annotations:
            meta = template.setdefault("metadata", {})
            meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
