"""Where the data plane's records leave it: one place, ``record``, for every exchange and tunnel.

The record is one ``AuditEvent`` handed to ``shared.records.emit`` (``arcus.audit.records``: off
the event loop, it feeds the access log, the audit log and the subscribers); the user's usage
counters move here too, from the same facts.
"""

from __future__ import annotations

import time
from typing import Any

from arcus.audit.events import AuditEvent


def record(
    session: Any,
    kind: str,
    host: str,
    port: int,
    method: str | None,
    path: str | None,
    status: int,
    up: int,
    down: int,
    duration: float,
    decision: str | None,
    rule: str | None,
    error: Any,
    request_id: str | None,
    *,
    sni: str | None = None,
    inspection: Any = None,
    icap: str | None = None,
    detail: str | None = None,
) -> None:
    """The record of one exchange or one tunnel: the user's usage and one event (access log,
    audit, subscribers). ``error``: an ``ErrorCode`` or "". ``sni``: the server name a TLS
    client sent through a tunnel. ``inspection``: the tunnel's ``arcus.serve.inspection``
    (its protocol; a refusal or reports decided on its first bytes override the admission's).
    ``icap``: what the ICAP service said of an exchange (``arcus.icap.stage``: clean,
    blocked:THREAT, ...), None when it was not asked.

    Per-request callers pass the fourteen facts before ``sni`` positionally: CPython 3.11
    compiles a call with more than about fifteen keyword arguments into a dict built and
    unpacked again (``CALL_FUNCTION_EX``): 8,700 of the 22,000 instructions logging cost the
    event loop per keep-alive request (bench/callgrind.py)."""
    protocol = None
    if inspection is not None:
        protocol = inspection.protocol
        sni = inspection.sni or sni
        refusal = inspection.refusal
        if refusal is not None:
            decision, rule, error = "deny", refusal.rule, refusal.code  # status: what the client was answered
        elif inspection.reports:
            decision, rule = "report", ",".join(inspection.reports)
    shared = session.shared
    user = session.user
    if user is not None:
        c = shared.user_counters.get(user.key)
        if host:  # an exchange or a tunnel; an HTTP connection's own record repeats its requests' bytes
            c.requests += 1
            c.bytes_up += up
            c.bytes_down += down
        if error:
            c.errors[error] += 1
    records = shared.records
    if not records.enabled:
        return
    conf = session.conf
    # positional, in FIELDS order then server_type: 0.35 us against 1.1 us with keywords
    records.emit(
        AuditEvent(
            time.time(), kind, session.tenant, user.name if user is not None else None, session.client,
            session.server, conf.escaper, host, port, method, path, status, up, down, duration,
            decision or None, rule, error.side.value if error else None, error.value if error else None,
            request_id, session.id, sni, protocol, conf.type, icap, detail,
        )
    )
