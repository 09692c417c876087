"""Keep the pinned sealing certificate, and what is sealed with it, in agreement with the running controller.

``inv up`` seals what the cluster needs as soon as the controller answers, in the
same run. Before it seals with a pinned certificate it checks that certificate
against the controller's keys (``keys.check``). On the sandbox the controller's
key is a throwaway that a ``down`` destroys, so a stale pin is re-pinned and
everything the toolkit can seal is sealed again; on a real cluster the old key
may still be in a backup, so the run stops and names the fix.
"""

from __future__ import annotations

import time
from typing import Any

from homelab.core.errors import HomelabError
from homelab.core.paths import resolve_in_project
from homelab.core.plan import Note, Plan
from homelab.secrets import keys, sealing


def current_certificates(session: Any, wait: float) -> list[str]:
    """The controller's certificates, waiting up to ``wait`` seconds for a starting controller's first key."""
    deadline = time.monotonic() + wait
    while True:
        try:
            found = keys.controller_certificates(session.executor.kube(), session.cfg.secrets.controller_namespace)
        except HomelabError:
            found = []  # the cluster or the namespace is not there yet
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(2)


def sealed_names(session: Any) -> set[str]:
    """The SealedSecret files under ``secrets.sealed_dir`` (``namespace-name``), the keep-file aside."""
    directory = resolve_in_project(session.cfg.secrets.sealed_dir)
    return {p.stem for p in directory.glob("*.yaml") if not p.name.startswith("_")} if directory.is_dir() else set()


def resealable(session: Any) -> tuple[list[sealing.PlainSecret], list[str]]:
    """Every secret the toolkit can seal from its sources; and the sealed files none of them covers."""
    configured, _ = sealing.from_config(session)
    listed = sealing.read_plaintext(session) if sealing.plaintext_path(session).is_file() else []
    secrets = [*configured, *listed]
    covered = {sealing.sealed_file(session, s).stem for s in secrets}
    return secrets, sorted(sealed_names(session) - covered)


def agree(session: Any, wait: float) -> str:
    """Pin the controller's certificate and make the sealed files match it; the check's state.

    ``no-controller``: nothing to compare yet (sealing waits for the controller).
    """
    pinned_path = sealing.cert_path(session)
    pinned = sealing.pinned_certificate(pinned_path)
    found = keys.check(pinned, current_certificates(session, wait))
    if found.state == "no-controller":
        return found.state
    if found.state == "no-pin":
        session.executor.execute(sealing.cert_plan(session, session.executor.kube())[0])
        return found.state
    if found.state == "match":
        return found.state
    secrets, uncovered = resealable(session)
    if session.cfg.target != "sandbox" or session.cfg.secrets.cert_file:
        raise HomelabError(keys.mismatch_message(found, str(pinned_path), not uncovered))
    # The sandbox's key died with the sandbox: its pin is worthless, and every value is at hand to seal again.
    plan = Plan(f"the pinned certificate {found.pinned} is none of the sandbox controller's keys: re-pin, reseal")
    plan.add(Note("the sandbox's Sealed Secrets key is a throwaway: a new sandbox has a new key"))
    session.executor.execute(plan)
    session.executor.execute(sealing.cert_plan(session, session.executor.kube())[0])
    if not session.dry_run:
        redo = Plan(
            f"reseal {len(secrets)} secrets with the new certificate", list(sealing.sealed_writes(session, secrets))
        )
        session.executor.execute(redo)
        sealing.require_written(redo)
    else:
        session.executor.execute(Plan("reseal with the new certificate", [Note(f"{len(secrets)} secrets")]))
    if uncovered:  # said, not hidden in a plan of notes: these SealedSecrets will not decrypt until replaced
        print(
            f"not resealed, neither a reference nor the plaintext file holds their values: {', '.join(uncovered)}; "
            "seal them again (inv secrets.seal) or remove them from secrets.sealed_dir",
            flush=True,
        )
    return found.state
