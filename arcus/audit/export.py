"""The formats of ``arcus audit export``: ``nl`` (JSON lines), ``json`` (one JSON array) and
``csv`` (a header row, then one row per event) -- the output forms sqlite-utils' ``query`` writes.

Each writer takes the events as an iterator and writes them one at a time: memory stays
constant however many events there are (the reader pages through the file with ``fetchmany``,
:meth:`arcus.audit.query.AuditReader.search`). Every format holds the same fields, in
:data:`COLUMNS` order: ``id``, ``at`` (ISO-8601 UTC), then the event's stored fields. In CSV, a
missing value (JSON ``null``) is an empty cell.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from typing import IO, Any

from arcus.audit.events import FIELDS
from arcus.errors import OperatorError

FORMATS = ("nl", "json", "csv")
COLUMNS: tuple[str, ...] = ("id", "at", *FIELDS)
TICK = 1000
"""Rows between two calls of a writer's ``tick`` (a progress bar's update)."""


def check_format(name: str) -> str:
    """``name`` if it is a format this module writes; else OperatorError naming the choices."""
    if name not in FORMATS:
        raise OperatorError(f"unknown export format {name!r}", hint="use --format nl (JSON lines), json or csv")
    return name


def json_line(row: dict[str, Any]) -> str:
    """One event as a JSON object on one line (also what ``tail``/``search --json`` print)."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def write(rows: Iterable[dict[str, Any]], out: IO[str], fmt: str, tick: Callable[[int], None] | None = None) -> int:
    """Write ``rows`` to ``out`` in format ``fmt``; return how many. ``tick(done)`` is called
    every :data:`TICK` rows and once at the end."""
    done = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(["" if (v := row.get(k)) is None else v for k in COLUMNS])
            done += 1
            if tick is not None and done % TICK == 0:
                tick(done)
    elif fmt == "json":
        out.write("[")
        for row in rows:
            out.write(("\n" if done == 0 else ",\n") + json_line(row)[:-1])
            done += 1
            if tick is not None and done % TICK == 0:
                tick(done)
        out.write("\n]\n" if done else "]\n")
    elif fmt == "nl":
        for row in rows:
            out.write(json_line(row))
            done += 1
            if tick is not None and done % TICK == 0:
                tick(done)
    else:
        check_format(fmt)
    if tick is not None:
        tick(done)
    return done
