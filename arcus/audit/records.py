"""The request record's one way off the hot path: one bounded queue, one writer thread, every reader.

Every connection and every HTTP request ends in one :class:`~arcus.audit.events.AuditEvent`,
handed to :meth:`Records.emit` on the event loop. That call is a length check and a
``deque.append``: no I/O, no formatting, no lock waited for. When ``audit.queue`` records are
waiting, the new one is dropped and counted. The loop wakes the writer thread at most once per
batch (when ``audit.batch`` records wait); otherwise the thread wakes on its own every
``audit.flush_interval``, so a line or an event is at most that late.

The writer thread takes what is queued in batches and hands each batch, in this order, to:

- the audit log, :meth:`AuditSink.put_batch`: the sink's own thread inserts it into SQLite in
  one transaction, so a slow or full disk never holds up the access log (and a blocked stderr
  never holds up the audit log beyond this queue's bound);
- the subscriptions (``events.watch``, the metrics): a bounded buffer each, :class:`Subscription`;
- the access log, :class:`AccessLog`: the line ``arcus.access`` wrote per request before, byte
  for byte, to the handler the profile's ``log`` section set up, the batch's lines in one write.

Why a second thread for SQLite rather than one for everything: moving an event from this batch
to the sink's queue costs an ``extend`` and a ``popleft`` (tens of nanoseconds against the
microseconds of its insert); what it buys is that the two outputs do not wait for each other.

``enabled`` is False when nobody reads the records (access log off, audit off, no subscriber):
a call site may then skip building the event at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from logging.handlers import RotatingFileHandler
from pathlib import Path

from arcus.audit.events import AuditEvent, event_fields, record_type
from arcus.audit.sink import AuditSink, apply_config
from arcus.config.schema import AuditConfig
from arcus.stats.logs import LOG_FORMAT, JsonFormatter, TenantLevels

log = logging.getLogger("arcus.audit")

CLOSE_TIMEOUT = 10.0
SUBSCRIPTION_LIMIT = 10_000


REQUEST_LINE = "%s %s %s %s %s%s %d %d %d %.1fms %s%s"
TUNNEL_LINE = "%s %s %s %s %s %d %d %d %.1fms %s%s"


def access_message(e: AuditEvent) -> str | None:
    """The access log's message for ``e``, as the data plane logged it; None: no line.

    A request: ``request_id client tenant METHOD host:port/path status up down 1.2ms code``
    (never the query string). A tunnel with a destination or an error: ``conn_id client tenant
    server_type host:port status up down 1.2ms code``. A tunnel (CONNECT included) whose
    protocol was looked at ends with `` protocol=NAME`` (``arcus.proto.sniff``; ``sni=NAME``
    after it when a TLS client sent one; then its detail in parentheses, when it has one: TLS
    interception's ``(intercepted by RULE)`` or ``(spliced by RULE)``). A request decrypted by
    interception ends with `` sni=NAME``. A connection that only carried requests (an HTTP
    client's keep-alive connection) has no line of its own.
    """
    return _format(e, REQUEST_LINE, TUNNEL_LINE)


def _format(e: AuditEvent, request: str, tunnel: str, *head: object) -> str | None:
    """``e``'s message in ``request`` or ``tunnel`` (:data:`REQUEST_LINE`, :data:`TUNNEL_LINE`
    after the fields of ``head``): one ``%`` of one tuple per line, the access log's hot loop."""
    host = e.host
    if e.protocol is None:  # a decrypted request (sni: the intercepted connection's) or no tunnel at all
        tail = "" if e.sni is None else f" sni={e.sni}"
    else:  # a tunnel: what its first bytes were, and what interception made of them (detail)
        tail = f" protocol={e.protocol}" if e.sni is None else f" protocol={e.protocol} sni={e.sni}"
        if e.detail:
            tail += f" ({e.detail})"
    if e.kind == "request":
        path = e.path or ""
        if "?" in path:
            path = path[: path.index("?")]
        if not path.isprintable():  # a control character (C0, DEL, C1: a terminal's escape, NEL) is shown escaped
            path = _escaped(path)
        return request % (
            *head, e.request_id, e.client, e.tenant, e.method,
            (f"[{host}]:{e.port}" if ":" in host else f"{host}:{e.port}") if host else "", path,
            e.status, e.bytes_up, e.bytes_down, e.duration * 1000, e.error_code or "-", tail,
        )
    if host or e.error_code:
        return tunnel % (
            *head, e.conn_id, e.client, e.tenant, e.server_type or "-",
            (f"[{host}]:{e.port}" if ":" in host else f"{host}:{e.port}") if host else "-",
            e.status, e.bytes_up, e.bytes_down, e.duration * 1000, e.error_code or "-", tail,
        )
    return None


def _escaped(text: str) -> str:
    """``text`` with every character that is not printable as ``\\xNN`` / ``\\uNNNN`` (a path is
    decoded as Latin-1: one character per byte); printable ones stay as they are."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class AccessLog:
    """Writes access-log lines for batches of records, where ``logging`` would have put them.

    The destination and the on/off switch are read from ``logging`` at each batch: the handlers
    ``arcus.access`` propagates to (the profile's ``log.target``, swapped on reload), its
    ``disabled`` flag (``log.access``) and level (``log.level``). For a stream or file handler
    with the daemon's own format the batch is formatted here and written in one ``write`` under
    the handler's lock (the timestamp string is built once per second); any other handler gets
    ordinary log records, one per line, still off the event loop.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("arcus.access")
        self.failed = 0  # lines a handler failed to write
        self._second = -1
        self._date = ""

    def enabled(self) -> bool:
        lg = self.logger
        return not lg.disabled and lg.isEnabledFor(logging.INFO)

    def write(self, events: Sequence[AuditEvent]) -> int:
        """Write the lines of ``events``; return how many were written (to each handler)."""
        if not self.enabled():
            return 0
        lines = -1
        pairs: list[tuple[float, str, AuditEvent]] | None = None
        for handler in self._handlers():
            if handler.level > logging.INFO:
                continue
            try:
                if isinstance(handler, logging.StreamHandler) and self._plain(handler):
                    text, lines = self._plain_text(events, _tenant_levels(handler))
                    if lines and self._write_plain(handler, text):
                        continue
                if pairs is None:
                    pairs = self._pairs(events)
                    lines = len(pairs)
                self._write_records(handler, pairs)
            except Exception:
                self.failed += max(lines, 0)
        return max(lines, 0)

    @staticmethod
    def _pairs(events: Sequence[AuditEvent]) -> list[tuple[float, str, AuditEvent]]:
        pairs: list[tuple[float, str, AuditEvent]] = []
        for e in events:
            try:
                msg = access_message(e)
            except (AttributeError, TypeError, ValueError):  # not an event, or a field of the wrong type
                continue
            if msg is not None:
                pairs.append((e.time, msg, e))
        return pairs

    def _plain_text(self, events: Sequence[AuditEvent], levels: TenantLevels | None = None) -> tuple[str, int]:
        """The batch's lines in the daemon's format, joined, and how many: the date string is
        built once per second, each line is one ``%`` of one tuple (0.45 us of the 1.2 us a line
        costs here, measured; the per-line second format and the pairs list are gone)."""
        escaped = self.logger.name.replace("%", "%%")
        request = f"%s,%03d INFO {escaped}: {REQUEST_LINE}\n"
        tunnel = f"%s,%03d INFO {escaped}: {TUNNEL_LINE}\n"
        parts: list[str] = []
        append = parts.append
        for e in events:
            try:
                if levels is not None and not levels.allows(e.tenant, logging.INFO):
                    continue  # the tenant's minimum level is above info
                t = e.time
                sec = int(t)
                if sec != self._second:
                    self._date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec))
                    self._second = sec
                line = _format(e, request, tunnel, self._date, int((t - sec) * 1000))
            except (AttributeError, TypeError, ValueError, OverflowError):  # not an event, a field of the wrong type
                continue
            if line is not None:
                append(line)
        return "".join(parts), len(parts)

    def _handlers(self) -> list[logging.Handler]:
        out: list[logging.Handler] = []
        lg: logging.Logger | None = self.logger
        while lg is not None:
            out.extend(lg.handlers)
            if not lg.propagate:
                break
            lg = lg.parent
        return out

    @staticmethod
    def _plain(h: logging.Handler) -> bool:
        f = h.formatter
        return (
            isinstance(h, logging.StreamHandler)
            and type(f) is logging.Formatter
            and f._fmt == LOG_FORMAT
            and f.datefmt is None
            and f.converter is time.localtime
            and all(isinstance(x, TenantLevels) for x in h.filters)  # applied per line by _plain_text
        )

    def _write_plain(self, h: logging.StreamHandler, text: str) -> bool:
        h.acquire()
        try:
            stream = h.stream
            if stream is None:  # a file handler closed by a reload meanwhile: let logging reopen it
                return False
            if isinstance(h, RotatingFileHandler) and h.maxBytes > 0 and 0 < stream.tell() and stream.tell() + len(text) >= h.maxBytes:
                h.doRollover()  # logging's size rule (RotatingFileHandler.shouldRollover), per batch
                stream = h.stream
            stream.write(text)
            h.flush()
        finally:
            h.release()
        return True

    def _write_records(self, h: logging.Handler, pairs: list[tuple[float, str, AuditEvent]]) -> None:
        lg = self.logger
        structured = isinstance(h.formatter, JsonFormatter)
        for t, msg, e in pairs:
            extra: dict = {"tenant": e.tenant}
            if structured:  # the record's fields, as events.watch shows them; never the query string
                fields = {"type": record_type(e), **event_fields(e)}
                path = fields.get("path")
                if isinstance(path, str) and "?" in path:
                    fields["path"] = path[: path.index("?")]
                extra["fields"] = fields
            record = lg.makeRecord(lg.name, logging.INFO, __file__, 0, msg, (), None, extra=extra)
            record.created = t
            record.msecs = int((t - int(t)) * 1000) + 0.0
            h.handle(record)


def _tenant_levels(h: logging.Handler) -> TenantLevels | None:
    return next((x for x in h.filters if isinstance(x, TenantLevels)), None)


class Subscription:
    """Records for one reader, bounded: the writer thread adds each batch, the reader takes them.

    ``notify()`` runs in the writer thread after each batch that reached this subscription;
    it must be quick and must not block nor call :meth:`Records.flush` (hand over to an event
    loop with ``call_soon_threadsafe``, or take and count right there). Past ``limit`` records waiting,
    new ones are skipped and counted, so a reader that stops reading costs bounded memory and
    never slows the writer. ``closed`` turns True (and ``notify`` runs once more) when the
    records close, so a stream can end.
    """

    def __init__(self, owner: Records, limit: int, notify: Callable[[], None] | None) -> None:
        self._owner = owner
        self._limit = limit
        self._notify = notify
        self._queue: deque[AuditEvent] = deque()
        self._lock = threading.Lock()  # writer thread vs reader: never the event loop's emit
        self._skipped = 0
        self.closed = False

    def take(self) -> tuple[list[AuditEvent], int]:
        """Everything waiting, and how many records were skipped since the last take."""
        with self._lock:
            out = list(self._queue)
            self._queue.clear()
            skipped, self._skipped = self._skipped, 0
        return out, skipped

    def close(self) -> None:
        """Stop receiving records."""
        self._owner._unsubscribe(self)

    def _offer(self, events: list[AuditEvent]) -> None:
        with self._lock:
            room = max(0, self._limit - len(self._queue))
            if room < len(events):
                self._skipped += len(events) - room
                events = events[:room]
            self._queue.extend(events)
        self._wake()

    def _wake(self) -> None:
        if self._notify is not None:
            try:
                self._notify()
            except Exception:
                log.exception("records subscriber failed")


class Records:
    """One bounded queue and one writer thread for the request records; see the module."""

    def __init__(self, config: AuditConfig | None = None, access: AccessLog | None = None) -> None:
        config = config or AuditConfig()
        self._queue: deque[AuditEvent] = deque()
        self._cap = config.queue
        self._batch = config.batch
        self._interval = config.flush_interval
        self.dropped = 0  # records the queue refused (full, or closed)
        self._reported = 0  # of those, how many the audit sink has been told of
        self.audit: AuditSink | None = None
        self.access = access or AccessLog()
        self._subs: tuple[Subscription, ...] = ()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # batches are handed on one at a time, in order
        self._closing = False
        self._thread: threading.Thread | None = None
        self.enabled = False
        self.refresh()

    # -- the hot path ------------------------------------------------------------------

    def emit(self, event: AuditEvent) -> None:
        """Queue ``event`` for every reader. Never blocks, never raises; full or closed: dropped."""
        q = self._queue
        if len(q) >= self._cap:
            self.dropped += 1
            return
        q.append(event)
        if len(q) >= self._batch and not self._wake.is_set():
            self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(target=self._run, name="arcus-records-writer", daemon=True)
            self._thread.start()

    def apply_audit(self, config: AuditConfig, data_dir: Path) -> None:
        """Apply a profile's ``audit`` section (at start and on reload): the queue's bounds, and
        the audit log opened, reconfigured or closed. What was queued before is handed to the
        audit log as it was. Blocking (it may open or flush a file): call it from a worker
        thread. OperatorError when the audit log cannot be opened: it stays as it was.
        """
        with self._lock:
            self._hand_on()
            if not self._closing:
                self._cap, self._batch, self._interval = config.queue, config.batch, config.flush_interval
            before = self.audit
            self.audit = apply_config(before, config, data_dir)
            if self.audit is not None and self.audit is not before:
                self._reported = self.dropped  # a new audit log did not lose the earlier ones
        self._wake.set()
        self.refresh()

    def refresh(self) -> None:
        """Recompute ``enabled`` (call after the logging setup changed)."""
        self.enabled = bool(self.audit is not None or self._subs or self.access.enabled())

    def flush(self) -> None:
        """Hand on everything queued now, in the calling thread (blocking)."""
        with self._lock:
            self._hand_on()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Hand on what is queued, stop the writer, close the audit log; ``timeout`` at most.

        Records still queued when the bound passes are counted as dropped. Subscriptions are
        closed (their ``notify`` runs once more).
        """
        deadline = time.monotonic() + timeout
        self._closing = True
        self._cap = 0  # emit() drops from now on, without a check of its own
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                stuck = len(self._queue)
                log.warning("records writer did not finish within %gs; %d record(s) lost", timeout, stuck)
                self.dropped += stuck
                self._queue.clear()
        elif self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            try:
                self._hand_on()
            finally:
                self._lock.release()
        # An emit() that passed its bound check just before the bound fell may have appended
        # after the writer's last look: counted, not left behind unaccounted.
        stranded = len(self._queue)
        if stranded:
            self.dropped += stranded
            self._queue.clear()
        sink, self.audit = self.audit, None
        if sink is not None:
            sink.close(max(0.5, deadline - time.monotonic()))
        subs, self._subs = self._subs, ()
        for sub in subs:
            sub.closed = True
            sub._wake()
        self.refresh()

    # -- readers -----------------------------------------------------------------------

    def subscribe(self, notify: Callable[[], None] | None = None, limit: int = SUBSCRIPTION_LIMIT) -> Subscription:
        """A new :class:`Subscription` receiving every record handed on from now."""
        sub = Subscription(self, limit, notify)
        self._subs = (*self._subs, sub)
        if self._closing:
            sub.closed = True
        self.refresh()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs = tuple(s for s in self._subs if s is not sub)
        self.refresh()

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queue), "dropped": self.dropped, "access_failed": self.access.failed}

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                # Clear before looking: an emit() that fills a batch after the look sets it
                # again, and one before it is seen by the look.
                self._wake.clear()
                woken = True
                if not self._closing and len(self._queue) < self._batch:
                    woken = self._wake.wait(self._interval)
                with self._lock:
                    # Woken for a full batch: full batches only, a rest waits to fill up (or
                    # for the interval); the interval passed, or closing: everything.
                    self._hand_on(whole=not woken or self._closing)
                if self._closing and not self._queue:
                    return
        except BaseException:  # pragma: no cover - a bug here must be loud, not a silent stop
            log.exception("records writer stopped")
            self._closing = True
            self._cap = 0

    def _hand_on(self, whole: bool = True) -> None:
        """Hand what is queued now on to every reader, batch by batch (hold ``_lock``); not
        ``whole``: full batches only."""
        q = self._queue
        left = len(q)  # what arrives meanwhile waits for the next turn: this loop ends
        if not whole:
            left -= left % self._batch
        while left > 0:
            n = min(left, self._batch)
            left -= n
            self._deliver([q.popleft() for _ in range(n)])
        if self.dropped != self._reported and self.audit is not None:
            self._deliver([])

    def _deliver(self, batch: list[AuditEvent]) -> None:
        dropped = self.dropped
        lost, self._reported = dropped - self._reported, dropped
        sink = self.audit
        if sink is not None:
            try:
                sink.put_batch(batch, lost)
            except Exception:
                log.exception("audit sink refused a batch")
        if not batch:
            return
        for sub in self._subs:
            sub._offer(batch)
        try:
            self.access.write(batch)
        except Exception:  # pragma: no cover - write() keeps handler errors to itself
            log.exception("access log writer failed")
