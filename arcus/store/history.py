"""The change history: one row per change, written in the same transaction as the change."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from arcus.store.db import utc_now


def record(conn: sqlite3.Connection, action: str, obj: str, detail: dict[str, Any]) -> None:
    """Append a history row; call only inside the change's own transaction."""
    conn.execute(
        "INSERT INTO changes (time, action, object, detail) VALUES (?, ?, ?, ?)",
        (utc_now(), action, obj, json.dumps(detail, sort_keys=True)),
    )


def recent(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` most recent changes, newest first, JSON-ready."""
    rows = conn.execute(
        "SELECT id, time, action, object, detail FROM changes ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [
        {"id": i, "time": t, "action": a, "object": o, "detail": json.loads(d)}
        for i, t, a, o, d in rows
    ]
