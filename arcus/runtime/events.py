"""``events.watch``: what the daemon does, as a live stream per subscriber (docs/control.md).

Two sources feed one :class:`EventHub`:

- the request records (every request and tunnel), through one records subscription
  (:mod:`arcus.audit.records`) that exists only while someone watches. Its ``notify`` runs in
  the records writer thread after each batch: there each record is matched against each
  watcher's filter (a few attribute reads), turned into a dict at most once, and appended to
  the watchers' buffers; the event loop is woken once per batch and watcher. The data plane
  does nothing for a watcher beyond building the record it builds anyway.
- the daemon's own events (reload, refused reload, a store change, a health problem), which
  :meth:`EventHub.publish` adds on the event loop.

Each watcher's buffer holds ``buffer`` events at most. The control server pulls items only when
it can send them, so a subscriber that reads slowly lets its buffer fill; when an event finds it
full, the watcher is overflowed: the events waiting are discarded, the next item it is sent is
the final ``{"type": "dropped", ...}`` notice and the stream ends. Nothing else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from arcus.audit.events import BLOCKED_STATUSES, AuditEvent, event_fields, iso_utc, record_type
from arcus.audit.records import Records, Subscription
from arcus.errors import ErrorCode, OperatorError, Side

RECORD_TYPES = ("request", "tunnel", "connection")
DAEMON_TYPES = ("reload", "reload_refused", "change", "problem")
TYPES = frozenset((*RECORD_TYPES, *DAEMON_TYPES))
DEFAULT_TYPES = frozenset(TYPES - {"connection"})
DEFAULT_BUFFER = 1000
MAX_BUFFER = 10_000
RECORDS_LIMIT = 100_000
"""Records the hub's subscription may hold between two batches (it takes each batch at once)."""
REFUSALS = frozenset(c.value for c in (
    ErrorCode.AUTH_REQUIRED, ErrorCode.AUTH_THROTTLED, ErrorCode.RATE_LIMITED, ErrorCode.USER_CONN_LIMIT,
    ErrorCode.TENANT_CONN_LIMIT, ErrorCode.SERVER_BUSY, ErrorCode.BOX_CONN_LIMIT,
))
"""Error codes of the gateway's refusals beside the forbidden side's (limits, authentication)."""
ARGS = ("types", "tenant", "user", "server", "errors", "refused", "buffer")


def record_event(e: AuditEvent, kind: str, at: str | None = None) -> dict[str, Any]:
    return {"type": kind, "time": e.time, "at": at or iso_utc(e.time), **event_fields(e)}


class _Clock:
    """``iso_utc`` with the date and time formatted once per second (records come in order)."""

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def iso(self, t: float) -> str:
        sec = int(t)
        if sec != self._sec:
            self._sec, self._prefix = sec, iso_utc(sec)[:-5]  # "2026-12-04T16:40:00"
        return f"{self._prefix}.{int((t - sec) * 1000):03d}Z"


def _bad(message: str) -> OperatorError:
    return OperatorError(message, code="bad_request", hint="see docs/control.md, events.watch")


class Watcher:
    """One subscriber: its filter, its bounded buffer and its wake-up (see the module)."""

    def __init__(self, args: Mapping[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        unknown = sorted(set(args) - set(ARGS))
        if unknown:
            raise _bad(f"events.watch has no argument {unknown[0]!r}; it takes {', '.join(ARGS)}")
        types = args.get("types")
        if types is None:
            self.types = DEFAULT_TYPES
        else:
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise _bad('argument "types" must be a list of event types')
            wrong = sorted(set(types) - TYPES)
            if wrong:
                raise _bad(f"unknown event type {wrong[0]!r}; known: {', '.join(sorted(TYPES))}")
            self.types = frozenset(types)
        self.tenant = _opt(args, "tenant", str)
        self.user = _opt(args, "user", str)
        self.server = _opt(args, "server", str)
        self.errors = bool(_opt(args, "errors", bool))
        self.refused = bool(_opt(args, "refused", bool))
        buffer = _opt(args, "buffer", int)
        if buffer is None:
            buffer = DEFAULT_BUFFER
        if not 1 <= buffer <= MAX_BUFFER:
            raise _bad(f'argument "buffer" must be between 1 and {MAX_BUFFER}')
        self.buffer = buffer
        self.queue: deque[dict[str, Any]] = deque()
        self.skipped = 0
        self.overflowed = False
        self.closed = False
        self.wake = asyncio.Event()
        self._loop = loop
        self._wake_pending = False  # a call_soon_threadsafe(wake) is on its way (hub lock)
        self.wants_records = bool(self.types & set(RECORD_TYPES))

    # -- matching (any thread) -----------------------------------------------------------

    def matches_record(self, e: AuditEvent, kind: str) -> bool:
        if kind not in self.types:
            return False
        if self.tenant is not None and e.tenant != self.tenant:
            return False
        if self.user is not None and e.user != self.user:
            return False
        if self.server is not None and e.server != self.server:
            return False
        if self.errors and not e.error_code:
            return False
        if self.refused and not (
            e.status in BLOCKED_STATUSES or e.decision == "deny" or e.error_side == Side.FORBIDDEN or e.error_code in REFUSALS
        ):
            return False
        return True

    def matches(self, event: Mapping[str, Any]) -> bool:
        """A daemon event: filters that do not apply to its type exclude it."""
        kind = event["type"]
        if kind not in self.types:
            return False
        if self.server is not None or self.errors:
            return False
        if self.refused and kind != "reload_refused":
            return False
        if self.tenant is not None and event.get("tenant") != self.tenant:
            return False
        if self.user is not None and event.get("user") != self.user:
            return False
        return True

    # -- buffer (hub lock held) ----------------------------------------------------------

    def _put(self, event: dict[str, Any]) -> bool:
        """Add ``event``; False when the watcher is (now) overflowed."""
        if self.overflowed:
            self.skipped += 1
            return False
        if len(self.queue) >= self.buffer:
            self.overflowed = True
            self.skipped += len(self.queue) + 1
            self.queue.clear()
            return False
        self.queue.append(event)
        return True


def _opt(args: Mapping[str, Any], name: str, kind: type) -> Any:
    value = args.get(name)
    if value is None:
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        what = {str: "a string", bool: "true or false", int: "an integer"}[kind]
        raise _bad(f'argument "{name}" must be {what}')
    return value


class EventHub:
    """The daemon's event stream: one per daemon; see the module."""

    def __init__(self, records: Callable[[], Records]) -> None:
        self._records = records  # the daemon's, once it has them
        self._lock = threading.Lock()  # watchers' buffers: writer thread vs event loop
        self._watchers: tuple[Watcher, ...] = ()
        self._sub: Subscription | None = None
        self.delivered = 0  # events put into some watcher's buffer
        self.dropped_watchers = 0  # subscribers dropped for falling behind

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    # -- the control command ------------------------------------------------------------

    async def watch(self, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """``events.watch``: validates ``args`` (``bad_request``) and returns the stream."""
        return self._stream(Watcher(args or {}, asyncio.get_running_loop()))

    async def _stream(self, w: Watcher) -> AsyncIterator[dict[str, Any]]:
        """Registered when first asked for an item (the control server asks at once), so a
        stream that is never started leaves nothing behind."""
        notice: dict[str, Any] | None
        self._add(w)
        try:
            while True:
                await w.wake.wait()
                w.wake.clear()  # before draining: an event added meanwhile sets it again
                while True:
                    with self._lock:
                        w._wake_pending = False
                        if w.overflowed:
                            notice = self._notice(w)
                            break
                        item = w.queue.popleft() if w.queue else None
                    if item is None:
                        notice = None
                        break
                    yield item
                if notice is not None:
                    yield notice
                    return
                if w.closed:
                    return
        finally:
            self._remove(w)

    def _notice(self, w: Watcher) -> dict[str, Any]:
        self.dropped_watchers += 1
        now = time.time()
        return {"type": "dropped", "time": now, "at": iso_utc(now), "reason": "slow subscriber",
                "skipped": w.skipped, "buffer": w.buffer}

    def _add(self, w: Watcher) -> None:
        self._watchers = (*self._watchers, w)
        if w.wants_records and self._sub is None:
            self._sub = self._records().subscribe(self._on_records, limit=RECORDS_LIMIT)

    def _remove(self, w: Watcher) -> None:
        self._watchers = tuple(x for x in self._watchers if x is not w)
        if self._sub is not None and not any(x.wants_records for x in self._watchers):
            sub, self._sub = self._sub, None
            sub.close()

    def close(self) -> None:
        """End every stream (daemon shutdown)."""
        for w in self._watchers:
            w.closed = True
            w.wake.set()
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()

    # -- sources ------------------------------------------------------------------------

    def publish(self, kind: str, **fields: Any) -> None:
        """A daemon event (on the event loop): ``kind`` is one of :data:`DAEMON_TYPES`."""
        watchers = self._watchers
        if not watchers:
            return
        now = time.time()
        event = {"type": kind, "time": now, "at": iso_utc(now), **fields}
        with self._lock:
            for w in watchers:
                if w.matches(event):
                    w._put(event)
                    self.delivered += 1
                    w.wake.set()

    def _on_records(self) -> None:
        """In the records writer thread, after each batch (see the module)."""
        sub = self._sub
        if sub is None:
            return
        batch, _ = sub.take()
        watchers = tuple(w for w in self._watchers if w.wants_records)
        if sub.closed:
            for w in watchers:
                w.closed = True
                self._wake(w)
        if batch and watchers:
            self._deliver(batch, watchers)

    def _deliver(self, batch: Iterable[AuditEvent], watchers: tuple[Watcher, ...]) -> None:
        touched: set[Watcher] = set()
        clock = _Clock()
        with self._lock:
            for e in batch:
                try:
                    kind = record_type(e)
                except AttributeError:
                    continue
                event = None
                for w in watchers:
                    if not w.matches_record(e, kind):
                        continue
                    if event is None:
                        try:
                            event = record_event(e, kind, clock.iso(e.time))
                        except (TypeError, ValueError, OverflowError, OSError):
                            break  # a field of the wrong type: skipped for every watcher
                    w._put(event)
                    self.delivered += 1
                    touched.add(w)
            for w in touched:
                if not w._wake_pending:
                    w._wake_pending = True
                    self._wake(w)

    @staticmethod
    def _wake(w: Watcher) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody reads
            w._loop.call_soon_threadsafe(w.wake.set)


CHANGE_COMMANDS = frozenset({
    "tenant.add", "tenant.set", "tenant.rm", "tenant.suspend", "tenant.resume",
    "user.add", "user.rm", "user.passwd", "user.block", "user.unblock", "user.set", "user.import",
    "policy.add", "policy.import", "policy.rm", "policy.move",
})


def change_fields(cmd: str, args: Mapping[str, Any], result: Any) -> dict[str, Any]:
    """What a ``change`` event says of a store change: names only, never a secret."""
    out: dict[str, Any] = {"cmd": cmd}
    if cmd.startswith("tenant."):
        out["tenant"] = args.get("name")
        return out
    out["tenant"] = args.get("tenant")
    if cmd.startswith("user.") and cmd != "user.import":
        out["user"] = args.get("name")
    if cmd.startswith("policy."):
        rule = args.get("id")
        if rule is None and isinstance(result, dict) and isinstance(result.get("rule"), dict):
            rule = result["rule"].get("id")
        out["rule"] = rule
    return out
