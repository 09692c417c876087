"""Whether the sealing certificate the toolkit pinned belongs to the controller that runs now.

Every SealedSecret is sealed offline with the pinned certificate. A controller that
was rebuilt without its key (a sandbox brought down and up, a cluster rebuilt
without restoring the key backup) holds other keys: what is sealed with the pinned
certificate then never decrypts ("no key could decrypt secret"), and nothing else
says so. The controller decrypts with any of its keys (it keeps the old ones when
it renews), so the pin is good while it matches one of them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from homelab.core.errors import HomelabError

KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
SEALED_SECRET = ("bitnami.com/v1alpha1", "SealedSecret")
UNDECRYPTABLE = "no key could decrypt"  # the controller's message (pkg/crypto: ErrNoKeyCouldDecrypt... unseal)


@dataclass(frozen=True)
class KeyCheck:
    """The pinned certificate against the controller's keys."""

    state: str  # "match", "mismatch", "no-pin", "no-controller"
    pinned: str | None  # the pinned certificate's fingerprint
    current: list[str]  # the controller's certificates' fingerprints, newest first

    @property
    def ok(self) -> bool:
        return self.state in ("match", "no-pin")


def controller_certificates(kube: Any, namespace: str) -> list[str]:
    """The PEM certificates of the controller's keys, newest first ([] when it has none yet)."""
    keys = kube.list_objects("v1", "Secret", namespace, label_selector=KEY_LABEL)
    keys.sort(key=lambda k: k["metadata"].get("creationTimestamp") or "", reverse=True)
    return [base64.b64decode(k["data"]["tls.crt"]).decode() for k in keys if (k.get("data") or {}).get("tls.crt")]


def check(pinned_pem: str | None, current_pems: list[str]) -> KeyCheck:
    """Compare the pin with the controller's certificates (pure: the tests feed it PEM text)."""
    from homelab.secrets.sealing import fingerprint

    current = [fingerprint(pem) for pem in current_pems]
    pinned = fingerprint(pinned_pem) if pinned_pem is not None else None
    if not current_pems:
        return KeyCheck("no-controller", pinned, current)
    if pinned_pem is None:
        return KeyCheck("no-pin", pinned, current)
    return KeyCheck("match" if pinned_pem in current_pems else "mismatch", pinned, current)


def mismatch_fix(resealable: bool) -> str:
    """What the owner of a real cluster does about a pin the controller cannot decrypt for."""
    if resealable:
        return (
            "every sealed value is in the config's references or the plaintext file, so reseal them: "
            "inv secrets.fetch-cert && inv secrets.seal && inv gitops.publish (or restore the old key: "
            "inv backup.restore --component sealed-keys, which keeps every SealedSecret in Git valid)"
        )
    return (
        "some SealedSecrets cannot be sealed again from the references: restore the controller's old key from a "
        "backup (inv backup.list, then inv backup.restore --component sealed-keys); after that the pinned "
        "certificate and every SealedSecret in Git are valid again"
    )


def mismatch_message(found: KeyCheck, cert_file: str, resealable: bool) -> str:
    return (
        f"the pinned sealing certificate {found.pinned} ({cert_file}) is none of the Sealed Secrets controller's "
        f"keys ({', '.join(found.current)}): the controller was rebuilt without its key, and nothing sealed with "
        f"the pin will decrypt. {mismatch_fix(resealable)}"
    )


def undecryptable(kube: Any, ours: dict[tuple[str, str], Any] | None = None) -> list[str]:
    """SealedSecrets the controller has said it cannot decrypt, as they are now: ``namespace/name: message``.

    Only a verdict on the object's current generation counts; with ``ours`` ((namespace, name)
    -> the encryptedData the toolkit published), only for those SealedSecrets and only once the
    cluster holds that very data: an old copy Argo CD is about to replace or prune is not hopeless.
    """
    found = []
    try:
        items = kube.list_objects(*SEALED_SECRET)
    except HomelabError:
        return []  # no SealedSecret CRD yet: nothing to report
    for item in items:
        meta, status = item["metadata"], item.get("status") or {}
        key = (meta.get("namespace", "default"), meta["name"])
        if status.get("observedGeneration", meta.get("generation")) != meta.get("generation"):
            continue
        if ours is not None and (key not in ours or (item.get("spec") or {}).get("encryptedData") != ours[key]):
            continue  # not (or no longer) what the toolkit published: Argo CD replaces or prunes it
        for condition in status.get("conditions") or []:
            message = str(condition.get("message") or "")
            if condition.get("status") == "False" and UNDECRYPTABLE in message:
                found.append(f"{key[0]}/{key[1]}: {message[:200]}")
    return sorted(found)


def require_decryptable(kube: Any, fix: str, ours: dict[tuple[str, str], Any] | None = None) -> None:
    """Stop a wait at once when the controller said it cannot decrypt a SealedSecret (it never will by itself)."""
    broken = undecryptable(kube, ours)
    if broken:
        more = f" (+{len(broken) - 3} more)" if len(broken) > 3 else ""
        raise HomelabError("the Sealed Secrets controller cannot decrypt " + "; ".join(broken[:3]) + more + f". {fix}")


def sealed_data(texts: Any) -> dict[tuple[str, str], Any]:
    """(namespace, name) -> encryptedData of every SealedSecret in the given manifest texts."""
    from homelab.core.kube import load_manifests

    found = {}
    for obj in load_manifests(list(texts)):
        if obj.get("kind") == "SealedSecret":
            key = (obj["metadata"].get("namespace", "default"), obj["metadata"]["name"])
            found[key] = (obj.get("spec") or {}).get("encryptedData")
    return found
