"""Resolvers turn names into addresses without blocking the event loop, with a bounded cache.

One base for every resolver type: the cache, negative caching, in-flight de-duplication, the
per-resolver timeout and the error a failure becomes all live here, so a type only says how
to ask (``_query``). A failure is always an :class:`~arcus.errors.EscapeError` with status
502 and the reason, and every lookup is bounded by the resolver's ``timeout``: a resolver
that never answers costs the client one timeout, never a hang.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arcus.config.schema import ResolverConfig
from arcus.errors import EscapeError

RESOLVE_FAILED = "resolve_failed"
RESOLVE_TIMEOUT = "resolve_timeout"


def ip_literal(host: str) -> str | None:
    """The host as a normalized IP string if it is an IP literal, else None."""
    if not host or not (host[0].isdigit() or ":" in host):
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


MAX_NAME = 253
MAX_LABEL = 63


def name_problem(host: str) -> str | None:
    """Why ``host`` cannot be a DNS name, or None: an empty label (``a..b``, ``.a``), a label over
    63 bytes, over 253 in all (one trailing dot allowed). Such a name is never asked for: the
    platform's resolver refuses it with an encoding error rather than an answer."""
    name = host[:-1] if host.endswith(".") else host
    if not name:
        return "not a valid domain name: empty"
    if len(name) > MAX_NAME:
        return f"not a valid domain name: over {MAX_NAME} characters"
    for label in name.split("."):
        if not label:
            return "not a valid domain name: empty label"
        if len(label) > MAX_LABEL:
            return f"not a valid domain name: a label over {MAX_LABEL} characters"
    return None


@dataclass(frozen=True, slots=True)
class Answer:
    """What a resolver type found: addresses (any family) and how long they may be cached.

    ``ttl`` None means the source gave none (getaddrinfo): the resolver's ``cache_ttl`` applies.
    """

    addresses: tuple[str, ...]
    ttl: float | None = None


class LookupFailed(Exception):
    """Raised by a type's ``_query``: ``reason`` is shown to the client after the host name."""

    def __init__(self, reason: str, *, code: str = RESOLVE_FAILED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class Lookup:
    """One lookup as ``arcus ctl resolve`` reports it."""

    host: str
    addresses: tuple[str, ...]
    ttl: float  # seconds the answer stays cached from now (0: not cached)
    cached: bool  # served from the cache without asking


@dataclass(slots=True)
class ResolverStats:
    """Counters of one resolver (live objects: the data plane adds, readers copy)."""

    lookups: int = 0  # resolve() calls for names (IP literals are not counted)
    cache_hits: int = 0  # answered from a positive entry
    negative_hits: int = 0  # refused from a negative entry
    queries: int = 0  # questions actually asked of the type (after the cache and de-duplication)
    failures: int = 0  # queries that failed (timeouts included)
    timeouts: int = 0

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float  # by the resolver's clock
    addresses: tuple[str, ...] | None  # None: a negative entry
    reason: str
    code: str


class Resolver:
    """Base: a TTL cache with negative entries, in-flight de-duplication and a hard timeout.

    Subclasses implement ``_query(host)`` returning an :class:`Answer` (or a plain list of
    addresses, cached for ``cache_ttl``) and raise :class:`LookupFailed`, ``OSError`` or
    ``EscapeError`` on failure. TTLs of answers are clamped to ``min_ttl``/``max_ttl`` (a type whose
    answers carry TTLs passes them from its config); failures are cached for ``negative_ttl``.

    ``clock`` gives the time cache entries expire by (seconds, monotonic); tests pass their
    own to expire entries without waiting. The query ``timeout`` is the event loop's.
    """

    def __init__(
        self,
        config: ResolverConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_ttl: float = 0.0,
        max_ttl: float = math.inf,
    ) -> None:
        self.config = config
        self.clock = clock
        self.name = config.name
        self.stats = ResolverStats()
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}

    async def _query(self, host: str) -> Answer | list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the type holds (sockets, threads); the base holds nothing."""

    # ------------------------------------------------------------------ reading

    def cached(self, host: str) -> list[str] | None:
        """The cached positive answer for ``host``, if any and not expired."""
        entry = self._cache.get(host)
        if entry is not None and entry.expires > self.clock() and entry.addresses is not None:
            return list(entry.addresses)
        return None

    async def resolve(self, host: str) -> list[str]:
        """Addresses of ``host`` (an IP literal is returned as is), or EscapeError (502) with the reason."""
        literal = ip_literal(host)
        if literal is not None:
            return [literal]
        entry, _ = await self._entry(host)
        return list(entry.addresses or ())

    async def lookup(self, host: str) -> Lookup:
        """Like :meth:`resolve`, and says whether the cache answered and for how long it holds."""
        literal = ip_literal(host)
        if literal is not None:
            return Lookup(host, (literal,), 0.0, False)
        entry, hit = await self._entry(host)
        return Lookup(host, entry.addresses or (), max(0.0, entry.expires - self.clock()), hit)

    # ------------------------------------------------------------------ the cache

    async def _entry(self, host: str) -> tuple[_Entry, bool]:
        """The positive entry for ``host`` and whether it came from the cache; raise for a negative one."""
        self.stats.lookups += 1
        now = self.clock()
        entry = self._cache.get(host)
        if entry is not None:
            if entry.expires > now:
                self._cache.move_to_end(host)
                if entry.addresses is None:
                    self.stats.negative_hits += 1
                    raise self._error(host, entry)
                self.stats.cache_hits += 1
                return entry, True
            del self._cache[host]
        task = self._inflight.get(host)
        if task is None:
            # The query runs as its own task that every concurrent caller awaits through a
            # shield: a caller that goes away (client closed) cancels nobody else's lookup.
            # It ends by itself: _run_query is bounded by the resolver's timeout.
            task = asyncio.get_running_loop().create_task(self._ask(host), name=f"arcus-resolve-{self.name}")
            self._inflight[host] = task
            task.add_done_callback(lambda t: self._done(host, t))
        entry = await asyncio.shield(task)
        if entry.addresses is None:
            raise self._error(host, entry)
        return entry, False

    async def _ask(self, host: str) -> _Entry:
        self.stats.queries += 1
        entry = await self._run_query(host)
        self._store(host, entry)
        return entry

    def _done(self, host: str, task: asyncio.Task[_Entry]) -> None:
        if self._inflight.get(host) is task:
            del self._inflight[host]
        if not task.cancelled():
            task.exception()  # retrieved: a bug in a type reaches the callers, not the loop's log

    async def _run_query(self, host: str) -> _Entry:
        """The type's answer or failure as a cache entry (a failure is an entry too: negative)."""
        config = self.config
        problem = name_problem(host)
        if problem is not None:  # the client's mistake, answered as a failed lookup: no query
            self.stats.failures += 1
            return _Entry(self._negative(), None, problem, RESOLVE_FAILED)
        try:
            # one spelling of the name for every type: "localhost." is localhost (glibc's
            # /etc/hosts knows only the latter); the cache keeps the name as asked
            answer = await asyncio.wait_for(self._query(host[:-1] if host.endswith(".") else host), config.timeout)
        except TimeoutError:
            self.stats.failures += 1
            self.stats.timeouts += 1
            reason = f"resolver {self.name} timed out after {config.timeout:g}s"
            return _Entry(self._negative(), None, reason, RESOLVE_TIMEOUT)
        except LookupFailed as exc:
            self.stats.failures += 1
            if exc.code == RESOLVE_TIMEOUT:
                self.stats.timeouts += 1
            return _Entry(self._negative(), None, exc.reason, exc.code)
        except EscapeError as exc:
            self.stats.failures += 1
            return _Entry(self._negative(), None, exc.message, exc.code)
        except OSError as exc:
            self.stats.failures += 1
            reason = exc.strerror or str(exc) or type(exc).__name__
            return _Entry(self._negative(), None, reason, RESOLVE_FAILED)
        except UnicodeError as exc:  # a name the platform cannot encode (IDNA): not an answer, not a bug
            self.stats.failures += 1
            return _Entry(self._negative(), None, f"not a valid domain name: {exc}", RESOLVE_FAILED)
        if not isinstance(answer, Answer):
            answer = Answer(tuple(answer), None)
        if not answer.addresses:
            self.stats.failures += 1
            return _Entry(self._negative(), None, "no address", RESOLVE_FAILED)
        return _Entry(self.clock() + self._ttl(answer.ttl), answer.addresses, "", "")

    def _negative(self) -> float:
        return self.clock() + self.config.negative_ttl

    def _ttl(self, ttl: float | None) -> float:
        if ttl is None:
            return self.config.cache_ttl
        return min(max(float(ttl), self._min_ttl), self._max_ttl)

    def _store(self, host: str, entry: _Entry) -> None:
        if entry.expires <= self.clock():  # a TTL of 0 (and no min_ttl): not cached
            return
        self._cache[host] = entry
        self._cache.move_to_end(host)
        while len(self._cache) > self.config.max_entries:
            self._cache.popitem(last=False)

    @staticmethod
    def _error(host: str, entry: _Entry) -> EscapeError:
        return EscapeError(f"cannot resolve {host}: {entry.reason}", code=entry.code)

    def describe(self) -> dict[str, Any]:
        """Name, type, cache size and counters: what ``arcus ctl resolve`` shows beside an answer."""
        return {"name": self.name, "type": self.config.type, "cached": len(self._cache), **self.stats.to_dict()}
