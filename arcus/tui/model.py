"""What the dashboard shows, computed from what the daemon sends: no I/O, no clock, no Textual.

Rates come from two successive ``stats`` results and the daemon's own ``uptime`` between them,
so they do not depend on when the dashboard happened to read them (a slow terminal, a stalled
event loop) and a test fixes every figure by the data it sends. A daemon that restarted (its
uptime went back) starts the rates afresh instead of showing a negative burst.
"""

from __future__ import annotations

import math
import shlex
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from arcus.audit.events import BLOCKED_STATUSES
from arcus.errors import ErrorCode, Side
from arcus.units import format_duration as duration

HISTORY = 120
"""Rate samples kept per tenant and for the box (two minutes at the default interval)."""

# -- numbers for narrow columns ------------------------------------------------------------------


def compact(value: float) -> str:
    """``0``, ``7``, ``12.5``, ``1.2K``, ``3.4M``: at most five characters (units of 1024)."""
    if value < 0 or not math.isfinite(value):
        value = 0.0
    if value < 10:
        text = f"{value:.1f}"
        return "0" if text == "0.0" else text.removesuffix(".0")
    if value < 1000:
        return f"{value:.0f}"
    for unit in ("K", "M", "G", "T"):
        value /= 1024
        if value < 10:
            return f"{value:.1f}{unit}"
        if value < 1000 or unit == "T":
            return f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Iterable[float], width: int) -> str:
    """The last ``width`` values as block characters, scaled to their maximum; zero is blank."""
    tail = list(values)[-width:] if width > 0 else []
    top = max(tail, default=0.0)
    out = []
    for v in tail:
        if v <= 0 or top <= 0:
            out.append(" ")
        else:
            out.append(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))])
    return "".join(out).rjust(width)


# -- stats -> rates ------------------------------------------------------------------------------


BLOCKED_CODES: frozenset[str] = frozenset(
    c.value for c in ErrorCode if c.status in BLOCKED_STATUSES and c.side is not Side.UPSTREAM
)
"""Error kinds that mean the gateway refused the client on purpose: policy, a suspended tenant,
authentication, a rate limit (the audit log's BLOCKED_STATUSES, not an upstream's 403)."""


def is_blocked(code: str) -> bool:
    return code in BLOCKED_CODES


def split_errors(errors: Mapping[str, Any] | None) -> tuple[int, int]:
    """``(blocked, other errors)`` counted from a COUNTERS ``errors`` map."""
    blocked = other = 0
    for code, n in (errors or {}).items():
        if not isinstance(n, int) or isinstance(n, bool):
            continue
        if is_blocked(code):
            blocked += n
        else:
            other += n
    return blocked, other


@dataclass(frozen=True, slots=True)
class Counts:
    """The parts of a COUNTERS object the dashboard reads."""

    active: int = 0
    requests: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    blocked: int = 0
    errors: int = 0

    @classmethod
    def of(cls, c: Mapping[str, Any] | None) -> Counts:
        c = c or {}
        blocked, errors = split_errors(c.get("errors"))
        return cls(_int(c.get("conns_active")), _int(c.get("requests")), _int(c.get("bytes_up")),
                   _int(c.get("bytes_down")), blocked, errors)

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.active + other.active, self.requests + other.requests, self.bytes_up + other.bytes_up,
                      self.bytes_down + other.bytes_down, self.blocked + other.blocked, self.errors + other.errors)


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


@dataclass(frozen=True, slots=True)
class Rates:
    """One row of the overview: live connections, per-second rates, errors since start."""

    active: int = 0
    rps: float = 0.0
    up: float = 0.0  # bytes/s client -> upstream
    down: float = 0.0  # bytes/s upstream -> client
    blocked: float = 0.0  # refusals/s
    errors: int = 0  # other errors since the daemon started

    @classmethod
    def between(cls, before: Counts | None, now: Counts, seconds: float) -> Rates:
        if before is None or seconds <= 0:
            return cls(now.active, errors=now.errors)

        def per_s(a: int, b: int) -> float:
            return max(0, b - a) / seconds  # a counter that went back (tenant re-created): no burst

        return cls(now.active, per_s(before.requests, now.requests), per_s(before.bytes_up, now.bytes_up),
                   per_s(before.bytes_down, now.bytes_down), per_s(before.blocked, now.blocked), now.errors)


@dataclass
class StatsModel:
    """The overview's state, fed one ``stats`` result (a ``stats.watch`` item) at a time."""

    history: int = HISTORY
    generation: int | None = None
    uptime: float = 0.0
    box: Rates = field(default_factory=Rates)
    tenants: dict[str, Rates] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    known: set[str] = field(default_factory=set)
    """Tenant names from ``tenant.list``: shown with zeros before their first connection."""
    _box_counts: Counts | None = None
    _counts: dict[str, Counts] = field(default_factory=dict)
    _trend: dict[str, deque[float]] = field(default_factory=dict)
    box_trend: deque[float] = field(default_factory=deque)

    def update(self, stats: Mapping[str, Any]) -> None:
        uptime = stats.get("uptime")
        uptime = float(uptime) if isinstance(uptime, int | float) and not isinstance(uptime, bool) else 0.0
        seconds = uptime - self.uptime
        if self.generation is not None and seconds < 0:
            self.restarts += 1  # a new daemon: its counters start from zero
            self._box_counts = None
            self._counts.clear()
        fresh = self._box_counts is None
        servers = stats.get("servers") or {}
        box = sum((Counts.of(c) for c in servers.values()), Counts())
        self.box = Rates.between(self._box_counts, box, seconds)
        self._box_counts = box
        if not fresh:
            _push(self.box_trend, self.box.rps, self.history)
        tenants = stats.get("tenants") or {}
        rates: dict[str, Rates] = {}
        for name in sorted(tenants):
            now = Counts.of(tenants[name])
            # A tenant first counted now had nothing before (the daemon lists a tenant once it
            # has had a connection), unless this is the first sample of this daemon.
            before = self._counts.get(name, None if fresh else Counts())
            rates[name] = Rates.between(before, now, seconds)
            self._counts[name] = now
            if not fresh:
                _push(self._trend.setdefault(name, deque()), rates[name].rps, self.history)
        for gone in set(self._counts) - set(tenants):
            del self._counts[gone]
            self._trend.pop(gone, None)
        self.tenants = rates
        self.set_known(self.known)
        self.uptime = uptime
        gen = stats.get("generation")
        self.generation = gen if isinstance(gen, int) else self.generation or 0
        self.extra = {k: stats.get(k) for k in ("fds", "reloads", "pooled_upstreams", "auth")}

    def set_known(self, names: Iterable[str]) -> None:
        """The tenants the store has; one without a connection yet is listed with zeros."""
        self.known = set(names)
        rates = dict(self.tenants)
        for name in self.known - set(rates):
            rates[name] = Rates()
        self.tenants = dict(sorted(rates.items()))

    def counts(self, tenant: str) -> Counts | None:
        """The tenant's counters in the last update (None before it was first counted)."""
        return self._counts.get(tenant)

    def trend(self, tenant: str) -> Sequence[float]:
        return self._trend.get(tenant, ())

    def box_line(self) -> str:
        b = self.box
        return (f"active {b.active}  req/s {compact(b.rps)}  up/s {compact(b.up)}B  down/s {compact(b.down)}B  "
                f"blocked/s {compact(b.blocked)}  errors {b.errors}")

    def health_line(self) -> str:
        parts = [f"generation {self.generation}", f"up {duration(self.uptime)}"]
        fds = self.extra.get("fds")
        if isinstance(fds, dict) and "open" in fds:
            parts.append(f"fds {fds.get('open')}/{fds.get('limit')}")
        reloads = self.extra.get("reloads")
        if isinstance(reloads, dict):
            parts.append(f"reloads {reloads.get('done', 0)} ({reloads.get('refused', 0)} refused)")
        pooled = self.extra.get("pooled_upstreams")
        if isinstance(pooled, int):
            parts.append(f"pooled {pooled}")
        return "  ".join(parts)


def _push(d: deque[float], value: float, bound: int) -> None:
    d.append(value)
    while len(d) > bound:
        d.popleft()


# -- filters: one small language for connections and events -----------------------------------


@dataclass(frozen=True, slots=True)
class Filter:
    """``tenant:acme state:tunnel 443 example``: ``key:value`` terms must equal that field
    (case-insensitive), bare words must appear somewhere in the row, ``blocked`` keeps refusals."""

    fields: tuple[tuple[str, str], ...] = ()
    words: tuple[str, ...] = ()
    blocked: bool = False

    @classmethod
    def parse(cls, text: str) -> Filter:
        try:
            terms = shlex.split(text)
        except ValueError:  # an open quote while typing: take the words as they are
            terms = text.split()
        fields: list[tuple[str, str]] = []
        words: list[str] = []
        blocked = False
        for term in terms:
            key, sep, value = term.partition(":")
            if sep and key and value:
                fields.append((key.lower(), value.lower()))
            elif term.lower() == "blocked":
                blocked = True
            else:
                words.append(term.lower())
        return cls(tuple(fields), tuple(words), blocked)

    def __bool__(self) -> bool:
        return bool(self.fields or self.words or self.blocked)

    def matches(self, row: Mapping[str, Any], text: str, *, blocked: bool = False) -> bool:
        if self.blocked and not blocked:
            return False
        for key, value in self.fields:
            if str(row.get(key, "")).lower() != value:
                return False
        haystack = text.lower()
        return all(w in haystack for w in self.words)


# -- connections ---------------------------------------------------------------------------------

CONN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"), ("tenant", "tenant"), ("client", "client"), ("target", "target"),
    ("age", "age"), ("bytes_up", "up"), ("bytes_down", "down"), ("state", "state"),
)
"""(key in the ``conns`` result, column label), in display order; sorting cycles through them."""

_NUMERIC = frozenset({"id", "age", "bytes_up", "bytes_down"})


def conn_cells(c: Mapping[str, Any]) -> tuple[str, ...]:
    return (
        str(c.get("id", "")), str(c.get("tenant", "")), str(c.get("client", "")), str(c.get("target") or "-"),
        duration(float(c.get("age") or 0)), compact(_int(c.get("bytes_up"))), compact(_int(c.get("bytes_down"))),
        str(c.get("state", "")),
    )


def conn_text(c: Mapping[str, Any]) -> str:
    return " ".join(str(c.get(k, "")) for k in ("id", "server", "tenant", "client", "target", "state"))


def select_conns(conns: Iterable[Mapping[str, Any]], flt: Filter, sort: str = "id",
                 reverse: bool = False) -> list[Mapping[str, Any]]:
    """The connections the filter keeps, sorted by ``sort`` (a CONN_COLUMNS key), id breaking ties."""
    kept = [c for c in conns if isinstance(c, Mapping) and flt.matches(c, conn_text(c))]

    def key(c: Mapping[str, Any]) -> tuple[Any, int]:
        v = c.get(sort)
        primary: Any = (float(v) if isinstance(v, int | float) else 0.0) if sort in _NUMERIC else str(v or "").lower()
        return primary, _int(c.get("id"))

    return sorted(kept, key=key, reverse=reverse)


# -- events --------------------------------------------------------------------------------------


def event_time(ev: Mapping[str, Any]) -> str:
    """``HH:MM:SS`` in UTC from the event's ``time`` (epoch seconds) or ``at`` (ISO-8601)."""
    t = ev.get("time")
    if isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t):
        try:
            return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S")
        except (OverflowError, OSError, ValueError):
            pass
    at = ev.get("at")
    if isinstance(at, str) and "T" in at:
        return at.split("T", 1)[1][:8]
    return "--:--:--"


def event_kind(ev: Mapping[str, Any]) -> str:
    for key in ("type", "kind", "event"):
        v = ev.get(key)
        if isinstance(v, str) and v:
            return v
    return "event"


def event_blocked(ev: Mapping[str, Any]) -> bool:
    """A client refused by the gateway: what ``events.watch``'s ``refused`` means for records."""
    if ev.get("decision") == "deny":
        return True
    code = ev.get("error_code")
    if isinstance(code, str) and is_blocked(code):
        return True
    status = ev.get("status")
    return isinstance(status, int) and status in BLOCKED_STATUSES and ev.get("error_side") != "upstream"


_SKIP = frozenset({"id", "time", "at", "type", "kind", "event", "tenant", "ts"})


def event_summary(ev: Mapping[str, Any]) -> str:
    """What happened, in one line: a request or connection record reads like an access-log line;
    any other event shows its message, or its fields as ``key=value``."""
    host = ev.get("host")
    if host:
        port = ev.get("port")
        # a request reads like its URL: the port only when it is not the usual one
        shown = port and (not ev.get("method") or port not in (80, 443))
        target = f"{host}:{port}" if shown else str(host)
        if ev.get("method"):
            target = f"{ev['method']} {target}{ev.get('path') or ''}"
        parts = [target]
        if ev.get("status"):
            parts.append(str(ev["status"]))
        if ev.get("decision") and ev.get("decision") != "allow":
            parts.append(str(ev["decision"]) + (f" by {ev['rule']}" if ev.get("rule") else ""))
        if ev.get("error_code") and not (ev.get("decision") == "deny" and ev["error_code"] == "denied"):
            parts.append(str(ev["error_code"]))
        if ev.get("user"):
            parts.append(f"user {ev['user']}")
        if ev.get("client"):
            parts.append(f"from {ev['client']}")
        return "  ".join(parts)
    kind = event_kind(ev)
    if kind == "reload":
        return f"reloaded: generation {ev.get('generation')}, profile {ev.get('profile')}"
    if kind == "reload_refused":
        lines = str(ev.get("message") or "").splitlines() or ["?"]
        problems = [line for line in lines if not line.startswith("profile refused")] or lines
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"reload refused: {problems[0]}{more}"
    if kind == "change":
        who = " ".join(str(ev[k]) for k in ("tenant", "user", "rule") if ev.get(k))
        return f"{ev.get('cmd')} {who}".rstrip() + (f" (generation {ev['generation']})" if ev.get("generation") else "")
    if kind == "problem":
        return f"problem {ev.get('problem')}: {ev.get('detail')}"
    if kind == "dropped":
        return f"fell behind, {ev.get('skipped')} events lost; resubscribing ({ev.get('reason')})"
    message = ev.get("message") or ev.get("msg")
    if isinstance(message, str) and message:
        return message
    return " ".join(f"{k}={v}" for k, v in ev.items() if k not in _SKIP and v not in (None, "", [], {}))


def event_row(ev: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a ``key:value`` filter term compares (``kind`` whatever the event calls it)."""
    return {**ev, "kind": event_kind(ev), "tenant": ev.get("tenant") or ""}


def event_text(ev: Mapping[str, Any]) -> str:
    return f"{event_time(ev)} {event_kind(ev)} {ev.get('tenant') or '-'} {event_summary(ev)}"


def select_events(events: Iterable[Mapping[str, Any]], flt: Filter) -> list[Mapping[str, Any]]:
    return [ev for ev in events if flt.matches(event_row(ev), event_text(ev), blocked=event_blocked(ev))]


# -- reconnecting --------------------------------------------------------------------------------


class Backoff:
    """Delays before each reconnection attempt: ``first``, doubling, at most ``cap``; ``reset()``
    once a connection works again."""

    def __init__(self, first: float = 0.25, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first


def schedule(first: float, cap: float) -> Callable[[], Backoff]:
    return lambda: Backoff(first, cap)
