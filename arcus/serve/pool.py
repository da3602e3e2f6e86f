"""Idle keep-alive connections to origins, kept for reuse.

Keyed by (escaper, tenant, client locality, scheme, host, port): a connection opened for one
tenant, or opened under the loopback allowance of a client on the box, is never handed to
another. Locality is the egress guard's own answer (``HostAddresses.is_local``: loopback or
one of the box's addresses), so a client reaching the proxy at the box's LAN address does not
share connections with off-box clients.

Defence in depth: each connection remembers the address it is connected to (``peer``), and
``take`` asks the egress guards of the escaper again with the new client before handing it
over; a connection the guard would now refuse (another client, or a destination that has
since become one of the box's addresses) is closed instead. ``drop_to`` closes the idle
connections to addresses the box has just gained and starts a new generation; ones in use
finish their exchange and are refused by ``take`` afterwards. The guards' answer depends only
on the client, the escaper (a reload builds new ones) and the box's addresses (the
generation), so a connection taken again by the client it was last cleared for, under the
same escaper and generation, is not asked again: a kept-alive client's requests cost no
guard walk.

Bounded per key; idle ones expire after the server's ``upstream_idle``; an idle connection
that receives bytes or EOF is dropped.
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from arcus.policy.egress import EgressGuard, IPAddress, parse_ip

if TYPE_CHECKING:
    from arcus.escape.base import Escaper
    from arcus.serve.upstream import UpstreamConnection

PoolKey = tuple


_GUARDS: weakref.WeakKeyDictionary[Escaper, tuple[EgressGuard, ...]] = weakref.WeakKeyDictionary()
"""guards_of per escaper: an escaper's graph never changes (a reload builds new escapers), so the
walk runs once per escaper, not once per pooled request."""


def guards_of(escaper: Escaper | None) -> tuple[EgressGuard, ...]:
    """The egress guards of every direct escaper ``escaper`` may leave by (itself or behind a
    route). Proxy escapers have none: their connection goes to the configured proxy."""
    if escaper is None:
        return ()
    known = _GUARDS.get(escaper)
    if known is None:
        known = _GUARDS[escaper] = _walk_guards(escaper)
    return known


def _walk_guards(escaper: Escaper) -> tuple[EgressGuard, ...]:
    out: list[EgressGuard] = []
    seen: set[int] = set()
    todo = [escaper]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        guard = getattr(e, "guard", None)
        if isinstance(guard, EgressGuard):
            out.append(guard)
        todo.extend(e.next_escapers)
    return tuple(out)


class UpstreamPool:
    def __init__(self) -> None:
        self._idle: dict[PoolKey, deque[UpstreamConnection]] = {}
        self.generation = 0  # moves on when the box gains addresses (``drop_to``)

    def take(self, key: PoolKey, client: str, escaper: Escaper | None) -> UpstreamConnection | None:
        """An idle connection for ``key`` that ``escaper``'s guards let ``client`` use, or None."""
        q = self._idle.get(key)
        if not q:
            return None
        cleared = (client, escaper, self.generation)
        while q:
            conn = q.pop()  # most recently used first: warmest, least likely to be closed
            if not q:
                del self._idle[key]
            conn.pool = None
            conn.pooled = False
            if conn.usable() and (conn.cleared_for == cleared or self._allowed(guards_of(escaper), client, conn.peer)):
                conn.cleared_for = cleared
                return conn
            conn.close()
            q = self._idle.get(key)
        return None

    @staticmethod
    def _allowed(guards: tuple[EgressGuard, ...], client: str, peer: str | None) -> bool:
        if not guards:
            return True
        if peer is None:  # cannot tell where it goes: not worth the risk
            return False
        try:
            return all(g.check(client, peer) is None for g in guards)
        except ValueError:
            return False

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

    def _drop_where(self, doomed: Callable[[UpstreamConnection], bool]) -> int:
        """Close every idle connection ``doomed`` says so of; how many."""
        dropped = 0
        for key in list(self._idle):
            keep: deque[UpstreamConnection] = deque()
            for c in self._idle[key]:
                if not doomed(c):
                    keep.append(c)
                    continue
                c.pooled = False
                c.pool = None
                c.close()
                dropped += 1
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return dropped

    def expire(self, now: float) -> None:
        self._drop_where(lambda c: c.idle_until <= now or not c.usable())

    def drop_to(self, addresses: Iterable[IPAddress]) -> int:
        """Close the idle connections to any of ``addresses`` (ones the box has just gained,
        now special destinations); how many."""
        targets = frozenset(addresses)
        if not targets:
            return 0
        self.generation += 1  # connections in use are checked again when they are next taken
        if not self._idle:
            return 0

        def doomed(c: UpstreamConnection) -> bool:
            peer = c.peer
            if peer is None:
                return False
            try:
                return parse_ip(peer) in targets
            except ValueError:
                return False

        return self._drop_where(doomed)

    def close_all(self) -> None:
        for q in self._idle.values():
            for c in q:
                c.pooled = False
                c.pool = None
                c.close()
        self._idle.clear()

    def __len__(self) -> int:
        return sum(len(q) for q in self._idle.values())
