"""`arcus audit`: tail, search, export and stats of the audit log.

Reading needs no daemon: tail, search and export open ``audit.db`` in the data dir read-only
(the daemon's writer is never blocked by a reader). ``index`` and ``search --text`` write the
optional full-text index, in short transactions beside the writer (:mod:`arcus.audit.fulltext`). ``tail -f`` follows through the daemon's
``audit.tail`` stream when one answers on the socket -- events appear as soon as they are
committed -- and otherwise polls the file. ``stats`` asks the daemon (its counters live there).

``search`` shows the newest ``--limit`` matches oldest first in bounded memory, however large the
limit: it finds where they start reading ids only, then prints each event as it is read
(:meth:`arcus.audit.query.AuditReader.window_start`).

Output for people is one line per event with fixed columns; ``--json`` prints JSON lines, one
event per line, the same objects ``export`` writes (its ``nl`` format; ``json`` and ``csv`` too:
:mod:`arcus.audit.export`), so a stream can be piped to ``jq`` as it grows. Events hold no
credentials, and URL query strings only for tenants that opted in.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from arcus import paths
from arcus.audit import export as formats
from arcus.audit.db import audit_path
from arcus.audit.export import json_line as _json_line
from arcus.audit.query import AuditReader, Filters, check_decision, parse_status, parse_when
from arcus.cli._common import DataDirOpt, JsonOpt, SocketOpt, errors_to_exit, human_bytes, note, print_json
from arcus.cli._progress import progress
from arcus.control import protocol as p
from arcus.control.client import ControlClient, DaemonNotRunning
from arcus.errors import OperatorError
from arcus.names import validate_name

if TYPE_CHECKING:
    from arcus.audit.fulltext import TextIndex

app = typer.Typer(no_args_is_help=True, help="Read the audit log: one event per connection and per HTTP request.")

POLL_INTERVAL = 0.5
PROGRESS_THRESHOLD = 10_000
"""Exports of at least this many events show a progress bar on a terminal (arcus.cli._progress)."""
INDEX_PROGRESS_THRESHOLD = 50_000
"""Indexing this many events or more shows a progress bar on a terminal (~0.2 s at 290,000/s)."""

TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Only this tenant's events", show_default=False)]
UserOpt = Annotated[str | None, typer.Option("--user", help="Only this user's events", show_default=False)]
HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host",
        help="Target host: example.com (that host), .example.com (it and every name under it), "
        "*.example.com (only the names under it)",
        show_default=False,
    ),
]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="From this time: 2025-01-31, 2025-01-31T08:00 (local time unless Z/+hh:mm), or an age: 1h, 7d",
                 show_default=False),
]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Before this time (same forms as --since)", show_default=False)]
BlockedOpt = Annotated[
    bool, typer.Option("--blocked", help="Only refusals: decision deny, or status 403, 407 or 429")
]
DecisionOpt = Annotated[
    str | None,
    typer.Option("--decision", metavar="allow|deny|redirect|report", help="Only events the policy decided so",
                 show_default=False),
]
StatusOpt = Annotated[
    str | None,
    typer.Option("--status", metavar="N|Nxx", help="Only this HTTP status (404) or class of them (4xx, 5xx)",
                 show_default=False),
]


def _filters(
    tenant: str | None, user: str | None, host: str | None, since: str | None, until: str | None, blocked: bool,
    decision: str | None = None, status: str | None = None,
) -> dict[str, Any]:
    """The filters as typed -> the fields of :class:`arcus.audit.query.Filters`, each checked
    (one line and a hint for a bad one)."""
    if tenant is not None:
        validate_name("tenant", tenant)
    if user is not None:
        validate_name("user", user)
    if host is not None:
        _check_host_filter(host)
    now = time.time()
    start = parse_when(since, now=now) if since is not None else None
    end = parse_when(until, now=now) if until is not None else None
    if start is not None and end is not None and start >= end:
        raise OperatorError(
            f"--since {since} is not before --until {until}",
            hint="--since is the older end of the range, --until the newer one",
        )
    return {"tenant": tenant, "user": user, "host": host, "since": start, "until": end, "blocked": blocked,
            "decision": check_decision(decision) if decision is not None else None,
            "status": parse_status(status) if status is not None else None}


_NOT_IN_A_HOST = re.compile(r"[\s\x00-\x1f\x7f/\\@\[\]#?%*~]")


def _check_host_filter(host: str) -> None:
    """``--host`` in one of its three forms (or '' for records without a host); a regex, a glob
    or a URL is refused rather than matching nothing."""
    text = host.strip()
    name = text[2:] if text.startswith("*.") else text[1:] if text.startswith(".") else text
    if (text and not name) or _NOT_IN_A_HOST.search(name) or ".." in name:
        raise OperatorError(
            f"invalid --host {host!r}",
            hint="give example.com (that host), .example.com (it and every name under it) "
            "or *.example.com (only the names under it)",
        )


def _reader(data_dir: Path | None) -> AuditReader:
    return AuditReader(audit_path(paths.data_dir(data_dir)))


# -- formatting ---------------------------------------------------------------------------

COLUMNS = ("time", "tenant", "user", "client", "method", "target", "status", "up", "down", "duration",
           "decision", "error")
RIGHT = frozenset({"status", "up", "down", "duration"})
MIN_WIDTHS = {"time": 19, "tenant": 8, "user": 8, "client": 21, "method": 7, "target": 40, "status": 6,
              "up": 9, "down": 9, "duration": 8, "decision": 8, "error": 0}


def _printable(text: str) -> str:
    """Control characters shown escaped: a host or path must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _local_time(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(float(epoch)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def _duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "-"
    if s < 10:
        return f"{s:.2f}s" if s < 1 else f"{s:.1f}s"
    whole = int(s)
    if whole < 60:
        return f"{whole}s"
    m, whole = divmod(whole, 60)
    if m < 60:
        return f"{m}m{whole:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def _target(row: dict[str, Any]) -> str:
    host = str(row.get("host") or "")
    if ":" in host:
        host = f"[{host}]"
    port = row.get("port")
    out = f"{host}:{port}" if port else host
    path = row.get("path")
    if path:
        out += str(path)
    return out or "-"


def cells(row: dict[str, Any]) -> dict[str, str]:
    """One event as the text of each human column."""
    decision = row.get("decision")
    rule = row.get("rule")
    if decision and rule:
        decided = f"{decision}:{rule}"
    else:
        decided = decision or (f"rule:{rule}" if rule else "-")
    side, code = row.get("error_side"), row.get("error_code")
    error = f"{side}:{code}" if side and code else (side or code or "-")
    status = row.get("status")
    out = {
        "time": _local_time(row.get("time")),
        "tenant": str(row.get("tenant") or "-"),
        "user": str(row.get("user") or "-"),
        "client": str(row.get("client") or "-"),
        "method": str(row.get("method") or "-"),
        "target": _target(row),
        "status": str(status) if status else "-",
        "up": human_bytes(int(row.get("bytes_up") or 0)),
        "down": human_bytes(int(row.get("bytes_down") or 0)),
        "duration": _duration(row.get("duration")),
        "decision": str(decided),
        "error": str(error),
    }
    return {k: _printable(v) for k, v in out.items()}


class Lines:
    """Fixed-width columns; widths grow to the widest cell of the rows given up front."""

    def __init__(self, rows: Iterable[dict[str, str]] = ()) -> None:
        self.widths = dict(MIN_WIDTHS)
        for r in rows:
            for k, v in r.items():
                self.widths[k] = max(self.widths[k], len(v))
        for k in COLUMNS:
            self.widths[k] = max(self.widths[k], len(k))

    def line(self, values: dict[str, str]) -> str:
        parts = []
        for k in COLUMNS:
            v = values[k]
            parts.append(v.rjust(self.widths[k]) if k in RIGHT else v.ljust(self.widths[k]))
        return "  ".join(parts).rstrip()

    def header(self) -> str:
        return self.line({k: k.upper() for k in COLUMNS})


def _print_rows(rows: list[dict[str, Any]], as_json: bool, empty: str) -> None:
    _print_stream(lambda: rows, as_json, empty)


def _print_stream(rows: Callable[[], Iterable[dict[str, Any]]], as_json: bool, empty: str) -> None:
    """Print the events ``rows()`` yields as they come, in bounded memory however many. The
    table's columns are as wide as their widest cell: for people, a first pass over ``rows()``
    measures them and a second prints (the same events: callers read both in one snapshot)."""
    try:
        if as_json:
            for row in rows():
                sys.stdout.write(_json_line(row))
            return
        lines = Lines(cells(r) for r in rows())
        shown = 0
        for row in rows():
            if not shown:
                sys.stdout.write(lines.header() + "\n")
            sys.stdout.write(lines.line(cells(row)) + "\n")
            shown += 1
        if not shown:
            print(empty)
    except BrokenPipeError:
        _quiet_stdout()  # `| head` has what it wanted


# -- commands -----------------------------------------------------------------------------


@app.command()
@errors_to_exit
def tail(
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many of the last events to show")] = 20,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new events until Ctrl-C or SIGTERM")] = False,
    tenant: TenantOpt = None,
    decision: DecisionOpt = None,
    status: StatusOpt = None,
    json: JsonOpt = False,
    socket: SocketOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The last events of the audit log; with -f, new ones as they are written."""
    filters = _filters(tenant, None, None, None, None, False, decision, status)
    if not follow:
        with _reader(data_dir) as reader:
            rows = reader.tail(lines, **filters)
        _print_rows(rows, json, "no audit events" + (f" for tenant {tenant}" if tenant else ""))
        return
    printer = _Printer(json)
    try:
        with _sigterm_interrupts():
            _follow(printer, lines, filters, socket, data_dir)
    except KeyboardInterrupt:
        pass  # Ctrl-C (or SIGTERM) is how a follow ends
    except BrokenPipeError:
        _quiet_stdout()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM ends a follow as Ctrl-C does, exit 0. A follow started in the background (``&``,
    ``nohup``) inherits SIGINT ignored, so SIGTERM is how a script or service manager stops it."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Printer:
    """Prints events one at a time as they come (flushed: `tail -f | grep` sees each at once),
    each once: an event at or below the last one printed is not printed again. ``wanted``, when
    given, drops the events it returns false for."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.wanted: Callable[[dict[str, Any]], bool] | None = None
        self.lines = Lines()
        self.header_done = False
        self.last_id = 0

    def __call__(self, row: dict[str, Any]) -> None:
        if "skipped" in row and "id" not in row:
            note(f"note: {row['skipped']} event(s) skipped: this terminal reads slower than they come")
            return
        rid = int(row.get("id") or 0)
        if rid and rid <= self.last_id:
            return
        if self.wanted is not None and not self.wanted(row):
            return
        self.last_id = max(self.last_id, rid)
        if self.as_json:
            sys.stdout.write(_json_line(row))
        else:
            if not self.header_done:
                sys.stdout.write(self.lines.header() + "\n")
                self.header_done = True
            sys.stdout.write(self.lines.line(cells(row)) + "\n")
        sys.stdout.flush()


FOLLOW_OVERLAP = 1000
"""With --decision or --status, ``tail -f`` reads its backlog from the file, then asks the daemon's
stream (which selects by tenant only) for this many of the tenant's last events as well: the
events written between the two are among them (the printer drops those already printed)."""


def _follow(printer: _Printer, n: int, filters: dict[str, Any], socket: Path | None, data_dir: Path | None) -> None:
    sock = paths.socket_path(socket)
    client = ControlClient(sock)
    tenant = filters["tenant"]
    narrowed = filters["decision"] is not None or filters["status"] is not None
    if narrowed:  # the backlog from the file, then what the stream brings after it
        with _reader(data_dir) as reader, reader.snapshot():
            backlog = reader.tail(n, **filters) if n > 0 else []
            top = reader.last_id()
        for row in backlog:
            printer(row)
        printer.last_id = max(printer.last_id, top)
        printer.wanted = Filters(**filters).matches
    try:
        items = client.stream("audit.tail", {"n": FOLLOW_OVERLAP if narrowed else n, "tenant": tenant})
    except DaemonNotRunning:
        note(f"note: no daemon running at {sock}; following the audit log file (new events appear within a second)")
        _poll(printer, n, filters, data_dir, after_id=printer.last_id if narrowed else None)
        return
    started = False
    try:
        for item in items:
            started = True
            printer(item)
        note("note: the daemon ended the audit stream (the audit log was turned off)")
        return
    except p.ControlError as exc:
        if exc.code == p.UNKNOWN_COMMAND and not started:
            note("note: this daemon has no audit stream; following the audit log file")
            _poll(printer, n, filters, data_dir, after_id=printer.last_id if narrowed else None)
            return
        if exc.code != p.UNAVAILABLE:
            raise
        note("note: the daemon went away; following the audit log file")
        _poll(printer, 0, filters, data_dir, after_id=printer.last_id)
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
        client.close()


def _poll(printer: _Printer, n: int, filters: dict[str, Any], data_dir: Path | None, after_id: int | None = None) -> None:
    with _reader(data_dir) as reader:
        if after_id is None:
            backlog = reader.tail(n, **filters) if n > 0 else []
            for row in backlog:
                printer(row)
            after_id = backlog[-1]["id"] if backlog else reader.last_id()
        for row in reader.follow(after_id, poll_interval=POLL_INTERVAL, sleep=_sleep, **filters):
            printer(row)


def _sleep(seconds: float) -> None:
    """The wait between polls of the file (Ctrl-C lands here, most of the time)."""
    time.sleep(seconds)


@app.command()
@errors_to_exit
def search(
    tenant: TenantOpt = None,
    user: UserOpt = None,
    host: HostOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    blocked: BlockedOpt = False,
    decision: DecisionOpt = None,
    status: StatusOpt = None,
    text: Annotated[
        str | None,
        typer.Option("--text", metavar="WORDS", show_default=False,
                     help="Events whose host or path holds every one of these words (the full-text index: "
                          "`arcus audit index` builds it once)"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show the newest N matching events")] = 100,
    json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Events matching every filter given, oldest first (the newest --limit of them)."""
    filters = _filters(tenant, user, host, since, until, blocked, decision, status)
    rows: Callable[[], Iterator[dict[str, Any]]]
    # The newest --limit, oldest first, in bounded memory: where they start (ids only), then
    # those events streamed in id order -- both in one snapshot, while the daemon writes on.
    with contextlib.ExitStack() as stack:
        if text is not None:
            index = stack.enter_context(_text_index(data_dir, text))
            stack.enter_context(index.snapshot())
            wanted = Filters(**filters)
            start = index.window_start(text, wanted, limit=limit)
            rows = functools.partial(index.rows, text, wanted, after_id=start)
        else:
            reader = stack.enter_context(_reader(data_dir))
            stack.enter_context(reader.snapshot())
            start = reader.window_start(limit, **filters)
            rows = functools.partial(reader.search, after_id=start, **filters)
        _print_stream(rows, json, "no matching events")
    if start is not None:
        note(f"note: showing the newest {limit} matching events; --limit N shows more, `arcus audit export` all")


@contextlib.contextmanager
def _text_index(data_dir: Path | None, text: str) -> Iterator[TextIndex]:
    """The full-text index, after indexing what was written since the last search (a note, not
    a failure, when the file is write-protected: what is indexed is searched). Without words or
    without an index, nothing is indexed: the search says what is wrong."""
    from arcus.audit.fulltext import READ_ONLY, TextIndex  # sqlite-utils: loaded by the commands using it only

    with TextIndex(audit_path(paths.data_dir(data_dir))) as index:
        if text.split() and index.exists():
            try:
                with progress("indexing new events", index.pending(), minimum=INDEX_PROGRESS_THRESHOLD) as tick:
                    index.catch_up(tick)
            except OperatorError as exc:
                if exc.code != READ_ONLY:
                    raise
                note(f"note: {index.path} is read-only here: searching the events indexed so far")
        yield index


@app.command()
@errors_to_exit
def index(
    drop: Annotated[bool, typer.Option("--drop", help="Remove the full-text index (searches by --text then refuse)")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Build the full-text index of hosts and paths for `search --text`, or bring it up to date.

    Safe beside a running daemon: events are indexed in short transactions between its writes."""
    from arcus.audit.fulltext import TextIndex

    with TextIndex(audit_path(paths.data_dir(data_dir))) as text_index:
        if drop:
            gone = text_index.drop()
            note(f"dropped the full-text index of {text_index.path}" if gone else f"{text_index.path} has no full-text index")
            return
        created = text_index.create()
        with progress("indexing events", text_index.pending(), minimum=INDEX_PROGRESS_THRESHOLD) as tick:
            done = text_index.catch_up(tick)
    what = "created the full-text index; indexed" if created else "indexed"
    note(f"{what} {done} event{'s' if done != 1 else ''}")


@app.command()
@errors_to_exit
def export(
    tenant: TenantOpt = None,
    user: UserOpt = None,
    host: HostOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    blocked: BlockedOpt = False,
    decision: DecisionOpt = None,
    status: StatusOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most N events (the oldest matching)", show_default=False)
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="nl|json|csv",
                          help="nl: JSON lines; json: one JSON array; csv: a header row, then one row per event")
    ] = "nl",
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write to FILE (created 0600) instead of stdout", show_default=False,
                     dir_okay=False),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Matching events, oldest first, streamed; a progress bar on a terminal for large exports."""
    formats.check_format(fmt)  # before anything is opened or created
    filters = _filters(tenant, user, host, since, until, blocked, decision, status)
    with _reader(data_dir) as reader, reader.snapshot():
        total = reader.count(**filters)
        if limit is not None:
            total = min(total, limit)
        rows = reader.search(limit=limit, order="asc", **filters)
        with progress("exporting", total, minimum=PROGRESS_THRESHOLD, data_on_stdout=output is None) as tick:
            if output is None:
                done = formats.write(rows, sys.stdout, fmt, tick)
                sys.stdout.flush()
            else:
                with _open_private(output) as out:
                    done = formats.write(rows, out, fmt, tick)
    note(f"exported {done} event{'s' if done != 1 else ''}" + (f" to {output}" if output is not None else ""))


def _open_private(path: Path) -> IO[str]:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OperatorError(f"cannot write {path}: {exc.strerror or exc}", hint="choose a path you can write") from None
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def _quiet_stdout() -> None:
    """Stdout was a pipe that closed (`| head`): stop quietly, as Unix tools do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@app.command()
@errors_to_exit
def stats(socket: SocketOpt = None, json: JsonOpt = False) -> None:
    """The daemon's audit counters: events written, dropped (queue full or write failed), queued."""
    with ControlClient(paths.socket_path(socket)) as client:
        result = client.call("audit.stats")
    if json:
        print_json(result)
        return
    if not result.get("enabled", True):
        print("the audit log is disabled in the daemon's profile (audit.enabled: false)")
        return
    print(
        f"{result.get('written', 0)} written, {result.get('dropped', 0)} dropped, {result.get('queued', 0)} queued, "
        f"{human_bytes(int(result.get('db_bytes', 0)))} on disk"
    )
