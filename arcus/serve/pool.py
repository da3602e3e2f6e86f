"""Idle keep-alive connections to origins, kept for reuse.

Keyed by (escaper, tenant, client locality, scheme, host, port): a connection opened for one
tenant, or opened under the loopback allowance of a local client, is never handed to another.
Bounded per key; idle ones expire after the server's ``upstream_idle``; an idle connection
that receives bytes or EOF is dropped.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arcus.serve.upstream import UpstreamConnection

PoolKey = tuple


class UpstreamPool:
    def __init__(self) -> None:
        self._idle: dict[PoolKey, deque[UpstreamConnection]] = {}

    def take(self, key: PoolKey) -> UpstreamConnection | None:
        q = self._idle.get(key)
        while q:
            conn = q.pop()  # most recently used first: warmest, least likely to be closed
            if not q:
                del self._idle[key]
            conn.pool = None
            if conn.usable():
                conn.pooled = False
                return conn
            conn.close()
            q = self._idle.get(key)
        return None

    def put(self, conn: UpstreamConnection, idle_for: float, max_per_key: int) -> None:
        if not conn.usable() or idle_for <= 0:
            conn.close()
            return
        q = self._idle.setdefault(conn.key, deque())
        if len(q) >= max_per_key:
            conn.close()
            return
        conn.pooled = True
        conn.pool = self
        conn.idle_until = time.monotonic() + idle_for
        q.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        q = self._idle.get(conn.key)
        if q is not None:
            try:
                q.remove(conn)
            except ValueError:
                pass
            if not q:
                del self._idle[conn.key]

    def expire(self, now: float) -> None:
        for key in list(self._idle):
            q = self._idle[key]
            keep = deque(c for c in q if c.idle_until > now and c.usable())
            for c in q:
                if c not in keep:
                    c.pooled = False
                    c.pool = None
                    c.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def close_all(self) -> None:
        for q in self._idle.values():
            for c in q:
                c.pooled = False
                c.pool = None
                c.close()
        self._idle.clear()

    def __len__(self) -> int:
        return sum(len(q) for q in self._idle.values())
