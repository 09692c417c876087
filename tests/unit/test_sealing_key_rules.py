"""The pinned sealing certificate against the controller's keys, and which SealedSecrets are hopeless."""

from __future__ import annotations

from typing import Any

from homelab.gitops import publish
from homelab.secrets import keys

OLD, NEW, OTHER = "-----OLD-----\n", "-----NEW-----\n", "-----OTHER-----\n"


def test_a_pin_is_good_while_it_is_any_of_the_controllers_keys() -> None:
    assert keys.check(OLD, [NEW, OLD]).state == "match"  # renewed: the old key still decrypts
    assert keys.check(OTHER, [NEW, OLD]).state == "mismatch"
    assert keys.check(None, [NEW]).state == "no-pin"
    assert keys.check(OLD, []).state == "no-controller"
    assert keys.check(OTHER, [NEW]).ok is False and keys.check(None, [NEW]).ok is True


def test_the_mismatch_message_names_both_fingerprints_and_which_fix_applies() -> None:
    found = keys.check(OTHER, [NEW])
    resealable = keys.mismatch_message(found, "/s/cert.pem", True)
    assert found.pinned and found.pinned in resealable
    assert found.current[0] in resealable and "/s/cert.pem" in resealable
    assert "inv secrets.fetch-cert && inv secrets.seal && inv gitops.publish" in resealable
    restore = keys.mismatch_message(found, "/s/cert.pem", False)
    assert "cannot be sealed again from the references" in restore
    assert "inv backup.restore --component sealed-keys" in restore


class Cluster:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def list_objects(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        return self.items


def sealed(
    name: str, data: str, condition: dict[str, str] | None, generation: int = 1, seen: int = 1
) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": seen}
    if condition:
        status["conditions"] = [{"type": "Synced", **condition}]
    meta = {"name": name, "namespace": "apps", "generation": generation}
    return {"metadata": meta, "spec": {"encryptedData": {"k": data}}, "status": status}


FAILED = {"status": "False", "message": "no key could decrypt secret (k)"}


def test_only_a_current_verdict_on_the_data_we_sealed_is_hopeless() -> None:
    cluster = Cluster(
        [
            sealed("broken", "ours", FAILED),
            sealed("old-copy", "before", FAILED),  # Argo CD has not applied our new data yet
            sealed("stale-verdict", "ours", FAILED, generation=2, seen=1),  # the controller has not looked again
            sealed("fine", "ours", {"status": "True", "message": ""}),
            sealed("dropped", "ours", FAILED),  # no longer published: Argo CD prunes it
        ]
    )
    ours = {("apps", n): {"k": "ours"} for n in ("broken", "old-copy", "stale-verdict", "fine")}
    assert keys.undecryptable(cluster, ours) == ["apps/broken: no key could decrypt secret (k)"]
    assert len(keys.undecryptable(cluster)) == 3  # without ours: every current failure counts


def test_require_decryptable_names_the_secret_and_the_fix() -> None:
    import pytest

    from homelab.core.errors import HomelabError

    with pytest.raises(HomelabError, match=r"cannot decrypt apps/broken: no key could decrypt.*\. reseal it"):
        keys.require_decryptable(Cluster([sealed("broken", "x", FAILED)]), "reseal it")
    keys.require_decryptable(Cluster([sealed("fine", "x", None)]), "unused")


def test_only_the_toolkits_own_publish_commits_leave_a_branch_to_inv_up() -> None:
    assert publish.own_commit("homelab@localhost\thomelab: publish the rendered tree (3 changed, 0 removed)")
    assert not publish.own_commit("me@example.com\thomelab: publish the rendered tree (3 changed, 0 removed)")
    assert not publish.own_commit("homelab@localhost\tmy own change")
