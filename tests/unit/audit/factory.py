"""Audit events for tests, and a way to fill an audit.db through the real sink."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from arcus.audit.events import AuditEvent
from arcus.audit.sink import AuditSink
from arcus.config.schema import AuditConfig
from arcus.testing.wait import wait_until

NOW = 1_750_000_000.0  # a fixed "now" for tests that compare times


def event(i: int = 0, **over: Any) -> AuditEvent:
    fields: dict[str, Any] = dict(
        time=NOW + i,
        kind="request",
        tenant="acme",
        user="alice",
        client=f"10.20.0.5:{40000 + i}",
        server="http",
        escaper="direct",
        host="www.example.com",
        port=443,
        method="GET",
        path="/index.html",
        status=200,
        bytes_up=300,
        bytes_down=5000,
        duration=0.25,
        decision="allow",
        rule=None,
        error_side=None,
        error_code=None,
        request_id=f"req-{i}",
        conn_id=i,
    )
    fields.update(over)
    return AuditEvent(**fields)


def fill(path: Path, events: Iterable[AuditEvent], **config: Any) -> AuditSink:
    """Write ``events`` to ``path`` through a real AuditSink, closed (everything flushed).

    Retention is off (huge) unless the caller sets it: test events carry fixed old times.
    """
    config.setdefault("retention", 1e12)
    config.setdefault("queue", 1_000_000)
    sink = AuditSink(path, AuditConfig(**config))
    sink.start()
    for e in events:
        sink.emit(e)
    sink.close()
    assert sink.dropped == 0
    return sink


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true; fail the test when ``timeout`` passes (arcus.testing.wait)."""
    return bool(wait_until(predicate, timeout=timeout, interval=interval))
