"""One audit event: what the data plane records per connection and per HTTP request.

The data plane builds an :class:`AuditEvent` when a connection or a request ends and hands it
to ``shared.records.emit()`` (:mod:`arcus.audit.records`): the one record of that connection or
request, which the access log, the audit log and later the metrics all read. It is a plain
slotted dataclass (no validation, no copying, no formatting) because it is built on the hot
path, once per request; the records writer thread turns it into an access-log line and the
audit writer into a database row.

Cost of building one in CPython 3.11, measured: 0.35 us with positional arguments, 1.1 us with
21 keyword arguments (binding that many keywords is the difference, dict or not). A call site
on the hot path may pass them positionally, in :data:`FIELDS` order (the table's column order,
checked by :mod:`arcus.audit.db`), with ``server_type`` last.

What an event never holds: credentials (the proxy authenticated the user and keeps only the
user name) and URL query strings unless the tenant opted in (``log_query``). The data plane
strips them before building the event; the audit log stores what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timezone
from operator import attrgetter
from typing import Any


@dataclass(slots=True)
class AuditEvent:
    time: float  # unix epoch, when the connection or request ended
    kind: str  # "connection" | "request"
    tenant: str
    user: str | None
    client: str  # client address "ip:port"
    server: str
    escaper: str
    host: str  # target host (name or address)
    port: int
    method: str | None  # None for a connection event
    path: str | None  # URL path; the query only when the tenant opted in
    status: int  # HTTP status answered (0 when none was, e.g. a tunnel that ended)
    bytes_up: int  # client -> upstream
    bytes_down: int  # upstream -> client
    duration: float  # seconds
    decision: str | None  # "allow" | "deny" | "redirect" | "report"
    rule: str | None  # id of the policy rule that decided
    error_side: str | None  # whose fault a failure was: "client" | "upstream" | "internal" | ...
    error_code: str | None
    request_id: str | None
    conn_id: int
    sni: str | None = None  # the TLS server name a tunnel's client sent (schema 4), where one was seen
    protocol: str | None = None  # what a tunnel carried, from its first bytes (schema 5; arcus.proto.sniff)
    # Not stored in the audit log: what the access log's line names a tunnel by ("socks_proxy").
    server_type: str = ""
    # what the ICAP service said of a request (schema 6): clean, blocked:THREAT, fail_open:...
    icap: str | None = None
    # What else explains the record (schema 7): an intercepted upstream's certificate that
    # failed verification (subject, issuer, error), an ``insecure`` interception rule, what
    # became of a CONNECT's TLS (intercepted or spliced, by which rule).
    detail: str | None = None


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(AuditEvent) if f.name != "server_type")
# (``icap`` comes after ``server_type`` in the dataclass, so positional callers are unchanged;
# in the table it is the last column)
"""The event's stored fields, in database column order."""

_SHOWN = (*FIELDS[1:], "server_type")
_shown = attrgetter(*_SHOWN)  # one C call for the 22 fields: a third of a getattr loop's cost


def record_type(e: AuditEvent) -> str:
    """``request``; ``tunnel`` (a connection with a destination, or refused before a request);
    ``connection`` (an HTTP client's keep-alive connection, whose requests have records)."""
    if e.kind == "request":
        return "request"
    return "tunnel" if e.host or e.error_code else "connection"


def event_fields(e: AuditEvent) -> dict[str, Any]:
    """The event's fields but ``time``, and ``server_type``: what ``events.watch`` and the JSON
    access log show of a record (docs/control.md, events.watch)."""
    return dict(zip(_SHOWN, _shown(e)))


BLOCKED_STATUSES: tuple[int, ...] = (403, 407, 429)
"""Statuses that mean the gateway refused the client (policy, authentication, rate limit)."""


def as_row(e: AuditEvent) -> tuple[Any, ...]:
    """The event as a row tuple in :data:`FIELDS` order (explicit: faster than ``astuple``).

    The host is stored as policy compares it -- lower case, no trailing dot -- so that
    ``audit search --host`` is an indexed equality.
    """
    host = e.host.lower().rstrip(".") if isinstance(e.host, str) else e.host
    return (
        e.time, e.kind, e.tenant, e.user, e.client, e.server, e.escaper, host, e.port, e.method,
        e.path, e.status, e.bytes_up, e.bytes_down, e.duration, e.decision, e.rule, e.error_side,
        e.error_code, e.request_id, e.conn_id, e.sni, e.protocol, e.icap, e.detail,
    )


def iso_utc(epoch: float) -> str:
    """``1700000000.25`` -> ``"2023-11-14T22:13:20.250Z"`` (milliseconds, UTC)."""
    dt = datetime.fromtimestamp(epoch, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def row_dict(event_id: int, row: tuple[Any, ...]) -> dict[str, Any]:
    """The shape every reader sees (CLI --json, export, the daemon's ``audit.tail`` stream):
    ``id`` (monotonic, never reused), the event's fields, and ``at`` (``time`` as ISO-8601 UTC)."""
    out: dict[str, Any] = {"id": event_id}
    out.update(zip(FIELDS, row))
    try:
        out["at"] = iso_utc(float(out["time"]))
    except (TypeError, ValueError, OverflowError, OSError):
        out["at"] = None
    return out
