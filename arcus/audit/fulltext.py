"""Full-text search over the audit log's hosts and paths (``arcus audit index``, ``audit search
--text``), with sqlite-utils; the operator's side only -- the daemon never imports this module.

**When the index is built.** Not by the daemon: indexing every event as it is written (sqlite-utils'
triggers) would put an FTS5 insert on the writer thread for every request of every box, searched
or not. The operator creates the index once (``arcus audit index``), which indexes the events
already there; after that every ``audit search --text`` first indexes the events written since
the last search, then searches. Both index in transactions of :data:`CHUNK` events (tens of
milliseconds each), so the daemon's writer, which takes the same write lock for each batch, waits
at most one chunk (it waits up to 5 s): the index is built beside a running daemon without
holding its events back. Retention keeps the index exact: the events it deletes leave the index
in the same transaction (:mod:`arcus.audit.retention`). The index is an FTS5 table with external
content (``events`` holds the text; the index only tokens and rowids) and counts toward
``audit.max_size`` like the events.

**What a search matches.** Hosts and paths are split into words at every character that is not a
letter or a digit (SQLite's ``unicode61`` tokenizer, case-insensitive): ``casino`` finds
``www.casino.example`` and ``/casino/login``; ``example.com`` finds the words ``example`` and
``com`` one after the other. Every word given must match (in the host or the path); the words are
quoted, so FTS operators (``OR``, ``NOT``, ``*``) are plain words.

**Reading the newest N.** As :mod:`arcus.audit.query` does: :meth:`TextIndex.window_start` finds the
id below the newest ``limit`` matches (ids only), :meth:`TextIndex.rows` streams the matches above
it, oldest first (sqlite-utils' ``search`` yields rows as its cursor reads them).
"""

from __future__ import annotations

import itertools
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from arcus.audit.db import CREATE_FTS, FTS_STATE, FTS_TABLE, MAINTAINER_GAP, fts_indexed_upto, open_maintainer, read_snapshot
from arcus.audit.events import FIELDS, row_dict
from arcus.audit.query import Filters
from arcus.errors import NotFound, OperatorError

CHUNK = 5000
"""Events indexed per write transaction (see the module's docstring)."""
READ_ONLY = "read_only"
"""The code of the OperatorError for a file this user may read and not write."""
INDEX_HINT = "build it once with `arcus audit index` (the daemon may keep running); later searches keep it up to date"


class TextIndex:
    """The full-text index of one audit.db, read-write. Use as a context manager, or close()."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.conn = open_maintainer(self.path)
        self.db = sqlite_utils.Database(self.conn)
        self.events = self.db.table("events")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> TextIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, exc: sqlite3.Error) -> OperatorError:
        if "readonly" in str(exc):
            return OperatorError(f"cannot update the full-text index of {self.path}: the file is read-only here",
                                 code=READ_ONLY, hint="run it as the user the daemon runs as")
        return OperatorError(f"cannot update the full-text index of {self.path}: {exc}", code="internal")

    # -- state

    def exists(self) -> bool:
        return self.events.detect_fts() == FTS_TABLE and fts_indexed_upto(self.conn) is not None

    def pending(self) -> int:
        """Events written and not yet indexed (ids only grow and leave from the low end: a difference)."""
        upto = fts_indexed_upto(self.conn) or 0
        lo, hi = self.conn.execute("SELECT (SELECT min(id) FROM events), (SELECT max(id) FROM events)").fetchone()
        if hi is None or hi <= upto:
            return 0
        return hi - max(upto, lo - 1)

    # -- building

    def create(self) -> bool:
        """Create the (empty) index; False when it was there already."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if self.exists():
                    self.conn.execute("ROLLBACK")
                    return False
                for statement in CREATE_FTS:
                    self.conn.execute(statement)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return True

    def catch_up(self, tick: Callable[[int], None] | None = None, chunk: int = CHUNK) -> int:
        """Index the events written since the last call, ``chunk`` per transaction; return how
        many. ``tick(done)`` after each chunk. Between two chunks the write lock is let go for
        :data:`~arcus.audit.db.MAINTAINER_GAP`, in which the daemon's writer takes it
        (:func:`~arcus.audit.db.begin_write`) and writes what queued up meanwhile."""
        done = 0
        try:
            while True:
                if done:
                    time.sleep(MAINTAINER_GAP)
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    upto = fts_indexed_upto(self.conn)
                    if upto is None:  # dropped meanwhile
                        self.conn.execute("ROLLBACK")
                        return done
                    (top,) = self.conn.execute(
                        "SELECT max(id) FROM (SELECT id FROM events WHERE id > ? ORDER BY id LIMIT ?)", (upto, chunk)
                    ).fetchone()
                    if top is None:
                        self.conn.execute("ROLLBACK")
                        return done
                    n = self.conn.execute(
                        f"INSERT INTO {FTS_TABLE} (rowid, host, path) SELECT id, host, path FROM events "
                        "WHERE id > ? AND id <= ?",
                        (upto, top),
                    ).rowcount
                    self.conn.execute(f"UPDATE {FTS_STATE} SET last_id = ?", (top,))
                    self.conn.execute("COMMIT")
                except BaseException:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
                done += max(n, 0)
                if tick is not None:
                    tick(done)
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def drop(self) -> bool:
        """Remove the index (sqlite-utils' disable_fts) and its state; False when there was none."""
        if self.events.detect_fts() is None and fts_indexed_upto(self.conn) is None:
            return False
        try:
            self.conn.execute("BEGIN IMMEDIATE")  # waits for the writer (a deferred BEGIN could not)
            try:
                self.events.disable_fts()  # sqlite-utils nests its own transaction as a savepoint
                self.conn.execute(f"DROP TABLE IF EXISTS {FTS_STATE}")
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return True

    # -- searching

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: :meth:`window_start` and the :meth:`rows` after it see the same
        events (the daemon's writer goes on meanwhile: WAL)."""
        with read_snapshot(self.conn):
            yield

    def search(self, text: str, filters: Filters, *, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` events whose host or path holds every word of ``text`` and that
        match ``filters``, newest first, in the shape every reader sees (``row_dict``)."""
        return list(self._found(text, filters, order_by="id DESC", limit=max(0, int(limit))))

    def window_start(self, text: str, filters: Filters, *, limit: int) -> int | None:
        """The id just below the newest ``limit`` matches, or None when no more than ``limit``
        match (:meth:`arcus.audit.query.AuditReader.window_start`, for ``search --text``): ids only."""
        for row in self._found(text, filters, order_by="id DESC", limit=1, offset=max(0, int(limit)), ids_only=True):
            return int(row["id"])
        return None

    def rows(self, text: str, filters: Filters, *, after_id: int | None = None) -> Iterator[dict[str, Any]]:
        """The matches with ids above ``after_id``, oldest first, read as they are iterated."""
        return self._found(text, filters, order_by="id", after_id=after_id)

    def _found(
        self, text: str, filters: Filters, *, order_by: str, limit: int | None = None, offset: int | None = None,
        after_id: int | None = None, ids_only: bool = False,
    ) -> Iterator[dict[str, Any]]:
        words = text.replace('"', " ").split()  # a quote is no part of a host or path word (an odd one is an FTS5 syntax error)
        if not words:
            raise OperatorError("--text needs at least one word", hint="e.g. --text casino, --text 'example.com login'")
        text = " ".join(words)
        if not self.exists():
            raise NotFound(f"the audit log {self.path} has no full-text index", hint=INDEX_HINT)
        where, params = filters.where()
        named, args = _named(where, params)
        have = set(self.events.columns_dict)
        columns = ["id"] if ids_only else ["id", *(f for f in FIELDS if f in have)]  # an older file lacks sni: None
        # The index is the outer loop, in id order (FTS5 gives its rowids in either order and
        # honours a range on them): the newest matches come first and LIMIT stops the scan, where
        # a join led by the events table sorted every match first (a word in most hosts: all of
        # them). The filters apply to each match's event.
        direction = "DESC" if order_by == "id DESC" else "ASC"
        sql = (
            f"SELECT {', '.join(f'events.[{c}]' for c in columns)} FROM "
            f"(SELECT rowid AS fid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :query"
            + (" AND rowid > :after" if after_id is not None else "")
            + f" ORDER BY rowid {direction}) AS f JOIN events ON events.id = f.fid"
            + ("" if named == "1" else f" WHERE {named}")
            + f" ORDER BY f.fid {direction}"
        )
        if limit is not None or offset is not None:
            sql += " LIMIT :limit OFFSET :offset"
            args.update(limit=-1 if limit is None else limit, offset=offset or 0)
        args["query"] = " ".join(f'"{w}"' for w in words)  # each word a phrase: no FTS5 syntax from the user
        if after_id is not None:
            args["after"] = int(after_id)
        # the first step runs the query: a refusal is raised here, before the caller iterates
        found = self._each(self._rows(sql, args, columns), text, ids_only)
        first = next(found, None)
        return iter(()) if first is None else itertools.chain((first,), found)

    def _rows(self, sql: str, args: dict[str, Any], columns: list[str]) -> Iterator[dict[str, Any]]:
        for row in self.conn.execute(sql, args):
            yield dict(zip(columns, row))

    def _each(self, found: Iterator[dict[str, Any]], text: str, ids_only: bool) -> Iterator[dict[str, Any]]:
        try:
            for r in found:
                yield r if ids_only else row_dict(r["id"], tuple(r.get(f) for f in FIELDS))
        except sqlite3.Error as exc:
            if "fts5" in str(exc):
                raise OperatorError(f"invalid --text {text!r}: {exc}", code="invalid",
                                    hint="give plain words of hosts or paths, e.g. --text 'casino login'") from None
            raise OperatorError(f"cannot search the audit log {self.path}: {exc}", code="internal") from None


def _named(where: str, params: list[Any]) -> tuple[str, dict[str, Any]]:
    """``Filters.where()``'s ``?`` placeholders as ``:f0, :f1...`` (sqlite-utils' search takes
    named arguments: its own is ``:query``). Filters write no ``?`` inside a literal."""
    names = iter(range(len(params)))
    sql = re.sub(r"\?", lambda _: f":f{next(names)}", where)
    return sql, {f"f{i}": v for i, v in enumerate(params)}
