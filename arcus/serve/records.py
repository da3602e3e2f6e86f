"""Where the data plane's records leave it: one place for the audit log and the access log.

``emit`` is the one call that writes a record (the ``records`` work moves both logs off the
event loop behind ``shared.records.emit(event)``; this is the call site to change).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from arcus.audit.events import AuditEvent

access_log = logging.getLogger("arcus.access")


def emit(shared: Any, event: AuditEvent) -> None:
    """Write one record to the audit log (when the profile enables it)."""
    sink = shared.audit
    if sink is not None:
        sink.emit(event)


def access(fmt: str, *args: Any) -> None:
    """One access-log line (formatted only when the access log is on)."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(fmt, *args)


def wants_access() -> bool:
    return access_log.isEnabledFor(logging.INFO)


def record(
    session: Any,
    *,
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
    sni: str | None = None,
) -> None:
    """The record of one exchange or one tunnel: the user's usage, an access-log line and an
    audit event, from the same facts. ``error``: an ``ErrorCode`` or ""."""
    shared = session.shared
    user = session.user
    if user is not None:
        c = shared.user_counters.get(user.key)
        c.requests += 1 if host else 0
        c.bytes_up += up
        c.bytes_down += down
        if error:
            c.errors[error] += 1
    if access_log.isEnabledFor(logging.INFO):
        target = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}") if host else "-"
        access_log.info(
            "%s %s %s %s %s%s %d %d %d %.1fms %s%s",
            request_id or session.id,
            session.client,
            session.tenant,
            method or session.conf.type,
            target,
            path.split("?", 1)[0] if path else "",  # never the query string: it may carry secrets
            status,
            up,
            down,
            duration * 1000,
            error or "-",
            f" sni={sni}" if sni else "",
        )
    if shared.audit is None:
        return
    emit(
        shared,
        AuditEvent(
            time=time.time(),
            kind=kind,
            tenant=session.tenant,
            user=user.name if user is not None else None,
            client=session.client,
            server=session.server,
            escaper=session.conf.escaper,
            host=host,
            port=port,
            method=method,
            path=path,
            status=status,
            bytes_up=up,
            bytes_down=down,
            duration=duration,
            decision=decision or None,
            rule=rule,
            error_side=error.side.value if error else None,
            error_code=error.value if error else None,
            request_id=request_id,
            conn_id=session.id,
        ),
    )
