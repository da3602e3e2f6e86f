"""Reading the audit log: search, tail, follow, count -- straight from ``audit.db``, read-only.

The CLI uses this with or without a running daemon (WAL: reading never blocks the daemon's
writer thread); the daemon uses it for the backlog of its ``audit.tail`` stream.

Filters (all optional, combined with AND):

- ``tenant``, ``user``: exact names.
- ``host``: the same forms as policy rules' hosts -- ``example.com`` is that host only,
  ``.example.com`` is it and every name under it, ``*.example.com`` only the names under it.
  Compared without case and without a trailing dot.
- ``since``, ``until``: unix times; ``since <= time < until``. :func:`parse_when` reads what a
  person types (``2025-01-31``, ``2025-01-31T08:00``, ``1h``, ``7d``).
- ``blocked``: the gateway refused the client -- decision ``deny``, or status 403 (policy),
  407 (authentication) or 429 (rate limit).
- ``decision``: the policy's decision, one of :data:`~arcus.policy.model.ACTIONS` (``allow``,
  ``deny``, ``redirect``, ``report``); :func:`check_decision` reads what a person types.
- ``status``: an HTTP status range ``(lo, hi)``, both included; :func:`parse_status` reads ``404``
  (that status) and ``4xx`` (its class).

``host`` and ``user`` are answered through the batch map (schemas 8 and 9,
:data:`arcus.audit.db.BATCH_MAP`): only the batches that can hold a match are read, each by its
range of ids (bounded by ``since`` and ``until``). ``tenant`` has an index in id order: the
newest first from its end, a time range as the range of ids it covers.

**The newest N, oldest first, in bounded memory** (what ``arcus audit search`` shows):
:meth:`AuditReader.window_start` finds, reading ids only, the id just below the newest ``limit``
matches (``ORDER BY id DESC LIMIT 1 OFFSET limit``); :meth:`AuditReader.search` with that
``after_id`` then streams them in id order. Both in one :meth:`AuditReader.snapshot`.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from arcus.audit.db import batch_map, ids_from, open_reader, read_snapshot, select_columns
from arcus.audit.events import BLOCKED_STATUSES, row_dict
from arcus.config.values import parse_duration
from arcus.errors import OperatorError
from arcus.policy.model import ACTIONS

FOLLOW_BATCH = 1000
CLOCK_SLACK = 1.0
"""Seconds added around --since/--until when they are turned into a range of ids: events are
numbered in the order they were emitted, a moment apart at most from their time's order."""
WHEN_HINT = 'write a date or time (2025-01-31, 2025-01-31T08:00, 2025-01-31 08:00:00+02:00) or an age (30m, 1h, 7d)'
_RELATIVE = re.compile(r"\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*\Z")
_STATUS = re.compile(r"([1-5])(?:([0-9]{2})|xx)", re.IGNORECASE)
STATUS_HINT = "give an HTTP status (404) or a class of them (4xx), from 100 to 599"


def parse_when(text: str, *, now: float | None = None) -> float:
    """A point in time as a person writes it -> unix time.

    ``1h``, ``7d``, ``30m``, ``90s``: that long ago. An ISO-8601 date or date-time: that moment;
    without an offset it is local time (a ``Z`` or ``+02:00`` says otherwise). A bare date is
    its midnight. Raises OperatorError naming the forms accepted.
    """
    value = text.strip()
    if _RELATIVE.match(value):
        try:
            return (time.time() if now is None else now) - parse_duration(value.replace(" ", ""))
        except ValueError as exc:
            raise OperatorError(f"invalid time {text!r}: {exc}", hint=WHEN_HINT) from None
    iso = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise OperatorError(f"invalid time {text!r}", hint=WHEN_HINT) from None
    return moment.timestamp()  # naive -> local time, aware -> its offset


def parse_status(text: str) -> tuple[int, int]:
    """``--status`` as a person writes it -> the range of statuses ``(lo, hi)``, both included:
    ``404`` is ``(404, 404)``, ``4xx`` (or ``4XX``) is ``(400, 499)``. Raises OperatorError."""
    m = _STATUS.fullmatch(text.strip())
    if m is None:
        raise OperatorError(f"invalid --status {text!r}", hint=STATUS_HINT)
    lo = int(m.group(1)) * 100
    if m.group(2) is None:
        return lo, lo + 99
    return lo + int(m.group(2)), lo + int(m.group(2))


def check_decision(text: str) -> str:
    """``--decision``: one of :data:`~arcus.policy.model.ACTIONS`, as the events store it."""
    if text not in ACTIONS:
        raise OperatorError(f"invalid --decision {text!r}", hint=f"give one of {', '.join(ACTIONS)}")
    return text


@dataclass(frozen=True, slots=True)
class Filters:
    tenant: str | None = None
    user: str | None = None
    host: str | None = None
    since: float | None = None
    until: float | None = None
    blocked: bool = False
    decision: str | None = None
    status: tuple[int, int] | None = None  # lo, hi: both included (parse_status)

    @property
    def indexed(self) -> bool:
        """Whether an index answers this filter and its time range (user, exact host: (value,
        time)) in a file without the batch map (schema 7 or older). Not the tenant's: its index
        is in id order (schema 10), and a time range is a range of ids in it."""
        return self.user is not None or self.exact_host

    @property
    def exact_host(self) -> bool:
        return self.host is not None and not self.host.strip().startswith((".", "*."))

    def matches(self, row: dict[str, Any]) -> bool:
        """Whether an event as read (``row_dict``) passes the tenant, decision and status filters:
        what a stream of live events is checked against (``arcus audit tail -f`` through the
        daemon, whose stream selects by tenant only). The other filters are SQL only (:meth:`where`)."""
        if self.user is not None or self.host is not None or self.since is not None or self.until is not None or self.blocked:
            raise ValueError("Filters.matches checks tenant, decision and status only")
        if self.tenant is not None and row.get("tenant") != self.tenant:
            return False
        if self.decision is not None and row.get("decision") != self.decision:
            return False
        if self.status is not None:
            status = row.get("status")
            return isinstance(status, int) and self.status[0] <= status <= self.status[1]
        return True

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition (``"1"`` when none) and its parameters."""
        parts: list[str] = []
        params: list[Any] = []
        if self.tenant is not None:
            parts.append("tenant = ?")
            params.append(self.tenant)
        if self.user is not None:
            parts.append('"user" = ?')
            params.append(self.user)
        if self.host is not None:
            sql, host_params = _host_condition(self.host)
            parts.append(sql)
            params.extend(host_params)
        if self.since is not None:
            parts.append("time >= ?")
            params.append(float(self.since))
        if self.until is not None:
            parts.append("time < ?")
            params.append(float(self.until))
        if self.blocked:
            parts.append(f"(decision = 'deny' OR status IN ({', '.join(str(s) for s in BLOCKED_STATUSES)}))")
        if self.decision is not None:
            parts.append("decision = ?")
            params.append(self.decision)
        if self.status is not None:
            lo, hi = self.status
            if lo == hi:
                parts.append("status = ?")
                params.append(int(lo))
            else:
                parts.append("status BETWEEN ? AND ?")
                params.extend((int(lo), int(hi)))
        return (" AND ".join(parts) or "1"), params


def _host_text(pattern: str) -> str:
    """A host filter as hosts are stored (:func:`arcus.audit.events.as_row`): lower case, no
    trailing dot."""
    return pattern.strip().lower().rstrip(".")


def _map_condition(pattern: str) -> tuple[str, list[Any]]:
    """The batch map's condition for the host ``pattern``: its lines (``b``) that can hold a
    matching host.

    A line's hosts are written ``,a,b,``: a host is ``,host,`` in it, a name under a domain ends
    in ``.domain,``. Only candidates: the events' own condition (:func:`_host_condition`) decides.
    """
    text = _host_text(pattern)
    found = "instr(b.hosts, ?) > 0"
    if text.startswith("*."):
        return found, [text[1:] + ","]
    if text.startswith("."):
        return f"({found} OR {found})", ["," + text[1:] + ",", text + ","]
    return found, ["," + text + ","]


def _host_condition(pattern: str) -> tuple[str, list[Any]]:
    # Hosts are stored lower case without a trailing dot (events.as_row): an exact host is
    # an indexed equality; the suffix forms scan (within --since/--until when given).
    text = _host_text(pattern)
    under = "(length(host) > ? AND substr(host, -?) = ?)"
    if text.startswith("*."):
        suffix = text[1:]
        return under, [len(suffix), len(suffix), suffix]
    if text.startswith("."):
        return f"(host = ? OR {under})", [text[1:], len(text), len(text), text]
    return "host = ?", [text]


class AuditReader:
    """A read-only connection to ``audit.db``. Use as a context manager, or close()."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn = open_reader(self.path)
        self._columns = select_columns(self._conn.execute("PRAGMA user_version").fetchone()[0])
        self._map = batch_map(self._conn)
        # A mapped filter must read the map's lines, then each line's range of ids: never let the
        # planner build a throwaway index on events.host instead (a pass over the whole table).
        self._conn.execute("PRAGMA automatic_index = OFF")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: a count and the search after it see the same events."""
        with read_snapshot(self._conn):
            yield

    def _where(self, filters: Filters, after_id: int | None = None, upto_id: int | None = None) -> tuple[str, list[Any]]:
        """``FROM ... WHERE ...`` for ``filters`` and ``after_id < id <= upto_id``, and its parameters.

        A time range no index answers becomes the range of ids it covers
        (:func:`~arcus.audit.db.ids_from`): the scan reads those rows only, not the whole table,
        as an index on time would (the file has none since schema 3). A host or user filter reads
        the batch map's lines that can match (``b``), in id order, and for each only the events
        of its ids (the map and the events in nested id order: no sort, and a LIMIT stops early)."""
        where, params = filters.where()
        # an empty name (a connection's record has no host) is in no line of the map: scanned for
        table, maps_users = self._map if self._map is not None else ("", False)
        by_host = bool(table) and filters.host is not None and _host_text(filters.host) != ""
        by_user = maps_users and bool(filters.user)
        # through the map, the events are read by their ids (NOT INDEXED below): a time range
        # always bounds the lines and the ids read
        indexed = filters.indexed and not (by_host or by_user)
        lo: int | None = None  # first id that can match
        hi: int | None = None  # first id past the ones that can
        if not indexed and (filters.since is not None or filters.until is not None):
            try:
                if filters.since is not None:
                    lo = ids_from(self._conn, float(filters.since) - CLOCK_SLACK)
                if filters.until is not None:
                    hi = ids_from(self._conn, float(filters.until) + CLOCK_SLACK)
            except sqlite3.Error as exc:
                raise OperatorError(f"cannot read audit log {self.path}: {exc}", code="internal") from None
        if after_id is not None:
            lo = max(lo or 0, int(after_id) + 1)
        if upto_id is not None:
            hi = min(hi, int(upto_id) + 1) if hi is not None else int(upto_id) + 1
        if lo is not None:
            where += " AND id >= ?"
            params.append(lo)
        if hi is not None:
            where += " AND id < ?"
            params.append(hi)
        if not (by_host or by_user):
            return f"FROM events WHERE {where}", params
        conds: list[str] = []
        map_params: list[Any] = []
        if by_host:
            assert filters.host is not None
            cond, host_params = _map_condition(filters.host)
            conds.append(cond)
            map_params.extend(host_params)
        if by_user:
            conds.append("instr(b.users, ?) > 0")
            map_params.append(f",{filters.user},")
        if lo is not None:  # the line holding id lo and those after it (lo is the map's key)
            conds.append(f"b.lo >= coalesce((SELECT m.lo FROM {table} AS m WHERE m.lo <= ? ORDER BY m.lo DESC LIMIT 1), 0)")
            map_params.append(lo)
        if hi is not None:
            conds.append("b.lo < ?")
            map_params.append(hi)
        # NOT INDEXED: within a line, its ids (the key), never the tenant's index, which would
        # read the tenant's whole range once per line
        join = f"FROM {table} AS b CROSS JOIN events NOT INDEXED ON events.id BETWEEN b.lo AND b.hi"
        return f"{join} WHERE {' AND '.join(conds)} AND {where}", map_params + params

    def _rows(self, sql: str, params: list[Any]) -> Iterator[dict[str, Any]]:
        try:
            cursor = self._conn.execute(sql, params)
            while True:
                chunk = cursor.fetchmany(500)
                if not chunk:
                    return
                for row in chunk:
                    yield row_dict(row[0], row[1:])
        except sqlite3.Error as exc:
            raise OperatorError(f"cannot read audit log {self.path}: {exc}", code="internal") from None

    def search(
        self,
        *,
        limit: int | None = None,
        order: str = "asc",
        after_id: int | None = None,
        upto_id: int | None = None,
        **filters: Any,
    ) -> Iterator[dict[str, Any]]:
        """Events matching ``filters`` (the fields of :class:`Filters`), oldest first
        (``order="desc"``: newest first), ``limit`` at most, read as they are iterated.

        ``after_id`` < id <= ``upto_id`` when given (how :meth:`follow` pages)."""
        return self._rows(*self._ordered(self._columns, Filters(**filters), order, limit, after_id, upto_id))

    def window_start(self, limit: int, **filters: Any) -> int | None:
        """The id just below the newest ``limit`` events matching ``filters``, or None when no
        more than ``limit`` match: ``search(after_id=...)`` then reads exactly those newest, in
        id order. Reads ids only. Call both in one :meth:`snapshot`, or events written between
        the two calls are read too."""
        sql, params = self._ordered("events.id", Filters(**filters), "desc", 1, None, None)
        sql += " OFFSET ?"
        params.append(max(0, int(limit)))
        try:
            row = self._conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise OperatorError(f"cannot read audit log {self.path}: {exc}", code="internal") from None
        return None if row is None else int(row[0])

    def _ordered(
        self, columns: str, filters: Filters, order: str, limit: int | None, after_id: int | None, upto_id: int | None
    ) -> tuple[str, list[Any]]:
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        source, params = self._where(filters, after_id, upto_id)
        direction = order.upper()
        # through the map: its lines in order, each line's events in order (no sort)
        by = f"id {direction}" if source.startswith("FROM events ") else f"b.lo {direction}, events.id {direction}"
        sql = f"SELECT {columns} {source} ORDER BY {by}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        return sql, params

    def count(self, **filters: Any) -> int:
        source, params = self._where(Filters(**filters))
        try:
            return int(self._conn.execute(f"SELECT count(*) {source}", params).fetchone()[0])
        except sqlite3.Error as exc:
            raise OperatorError(f"cannot read audit log {self.path}: {exc}", code="internal") from None

    def tail(self, n: int, **filters: Any) -> list[dict[str, Any]]:
        """The last ``n`` matching events, oldest first (as ``tail`` prints them)."""
        rows = list(self.search(limit=max(0, n), order="desc", **filters))
        rows.reverse()
        return rows

    def last_id(self) -> int:
        return int(self._conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    def follow(
        self,
        after_id: int,
        *,
        poll_interval: float = 0.5,
        stop: Callable[[], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **filters: Any,
    ) -> Iterator[dict[str, Any]]:
        """Events with ids above ``after_id`` as they are written, polling the file.

        Runs until ``stop()`` returns true (checked between polls) or the caller stops iterating
        (Ctrl-C in the CLI). Ids only grow and a batch becomes visible whole, so nothing is
        skipped or repeated.
        """
        last = after_id
        while stop is None or not stop():
            top = self.last_id()
            if top > last:
                # Page through (last, top]: other tenants' events between polls are stepped
                # over once, not scanned again at every poll.
                got = 0
                for row in self.search(after_id=last, upto_id=top, limit=FOLLOW_BATCH, **filters):
                    last = row["id"]
                    got += 1
                    yield row
                if got < FOLLOW_BATCH:
                    last = top
                continue
            sleep(poll_interval)


def search(path: Path, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """:meth:`AuditReader.search` on ``path``; the file is closed when the iterator ends."""
    with AuditReader(path) as reader:
        yield from reader.search(**kwargs)
