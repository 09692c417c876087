"""An API server that does not answer: one line that names it and the fix, never 'a bug'.

The kubernetes client lets urllib3's ``MaxRetryError`` (connection refused, a timeout,
a TLS handshake that never finished) escape from any call. Whatever call it was, the
owner's next step is the same: start the cluster. ``cluster.connect`` sets
``START_HINT`` for the session's target; the task decorator asks ``message`` for every
error a task ends with. Only the standard library is imported here, so the decorator
stays cheap.
"""

from __future__ import annotations

START_HINT = "start the cluster (inv up) and check it with inv doctor"
# urllib3's errors for a server that did not answer: no connection (after the client's retries), a
# connection that never got a reply in time, a connection dropped mid-request.
NO_ANSWER = {"MaxRetryError", "ReadTimeoutError", "ProtocolError", "NewConnectionError"}


def message(task: str, err: BaseException) -> str | None:
    """``task``'s one-line message when ``err`` (or its cause) is an unreachable API server, else None."""
    found = _connection_failure(err)
    if found is None:
        return None
    where, reason = found
    return f"{task}: the Kubernetes API server {where} is not reachable ({reason}); {START_HINT}"


def _connection_failure(err: BaseException) -> tuple[str, str] | None:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if name in NO_ANSWER and type(current).__module__.startswith("urllib3"):
            pool = getattr(current, "pool", None)
            host, port = getattr(pool, "host", None), getattr(pool, "port", None)
            where = f"at {host}:{port}" if host else "of this homelab"
            reason = getattr(current, "reason", None) if name == "MaxRetryError" else current
            return where, _reason(reason)
        current = current.__cause__ or current.__context__
    return None


def _reason(reason: BaseException | None) -> str:
    """``connection refused``, ``timed out``: the last words of urllib3's long reason."""
    if reason is None:
        return "no answer"
    text = str(reason)
    if "refused" in text.lower():
        return "connection refused"
    if "timed out" in text.lower() or "timeout" in type(reason).__name__.lower():
        return "timed out"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    tail = text.rsplit(": ", 1)[-1].strip().strip("')\"")
    return tail or type(reason).__name__
