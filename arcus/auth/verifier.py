"""Password checks for the data plane: throttled, bounded, and off everyone else's threads.

Why: a scrypt check costs 32 MiB and ~0.1 s of a core. Run on the loop's default executor
(``asyncio.to_thread``), a flood of wrong passwords for one user queued hundreds of them in
front of the store calls of the control plane and of every other tenant's login (issue 10,
item 7: 19-31 s of backlog, ``arcus tenant list`` failing, RSS 53 -> 251 MB). A ``Verifier``
puts four bounds in front of the key-derivation function (KDF):

1. **The failure throttle first.** A client key (``throttle_key``: an IPv4 address, or the /64
   of an IPv6 one, so that a host cannot rotate through its own /64) blocked by
   ``FailureThrottle`` is refused without any hashing.
2. **Each check counts as a failed attempt before it is hashed**, and a success forgets the
   key again. With ``max_failures`` = 5, at most five checks from one client key ever start
   within the throttle's window, however many arrive at once.
3. **Concurrent checks per client key and per user are bounded** (``per_source``,
   ``per_user``; default 2 each). A check over the bound waits its turn (FIFO), at most
   ``max_waiters`` per key and ``wait`` seconds; beyond either it is refused as ``BUSY``. A
   waiter that gets its turn looks at the throttle and the cache again first: the check ahead
   of it may have blocked its address or verified the very same password.
4. **Hashing runs in the Verifier's own thread pool** (``workers`` threads, default 2) with at
   most ``queue`` checks waiting for a thread; a check that finds the pool full is refused as
   ``BUSY``. The loop's default executor, which the store calls use, never waits behind a KDF,
   and the memory of concurrent KDFs is bounded by ``workers`` x 32 MiB.

A refused check (``THROTTLED`` or ``BUSY``) carries ``retry_after`` seconds; the data plane
answers both with 429 ``auth_throttled``. Refusing rather than queueing without bound is the
point: a waiting client holds a connection, and a queue that grows with the attack is the
stall this module exists to prevent. The cost of the choice: while one user or one address
floods, that user's or address's own legitimate login may be refused (429, retry shortly);
other users and other addresses are not, unless the whole pool is full.

``CredentialCache`` stays in front: a password verified once is not hashed again for its TTL,
and a cached failure counts as a failure without hashing.

All methods run on one event loop (the structures are not thread-safe); only the KDF runs in
the pool. The clock is injectable (``clock``) for tests.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from arcus.auth.credcache import CredentialCache, FailureThrottle, throttle_key
from arcus.auth.secrets import verify_secret
from arcus.errors import OperatorError

BUSY_RETRY_AFTER = 1.0


class Outcome(enum.Enum):
    OK = "ok"
    WRONG = "wrong"  # unknown user or wrong password (counted against the client key)
    THROTTLED = "throttled"  # the client key failed too often: not checked
    BUSY = "busy"  # too many checks in flight for this user, this client key or in all: not checked


@dataclass(frozen=True, slots=True)
class Check:
    outcome: Outcome
    retry_after: float = 0.0  # THROTTLED and BUSY: seconds until a retry may succeed


_OK = Check(Outcome.OK)
_WRONG = Check(Outcome.WRONG)
_BUSY = Check(Outcome.BUSY, BUSY_RETRY_AFTER)


class KeyedSlots:
    """At most ``limit`` holders per key; up to ``max_waiters`` more wait their turn, FIFO.

    ``take`` gets a slot now or says no; ``enqueue`` returns a future that resolves when a slot
    is handed over (None: the queue is full); ``give`` returns a slot, handing it straight to
    the first waiter still waiting. Keys with no holder and no waiter are forgotten, so memory
    follows the checks in flight, not the keys ever seen.
    """

    __slots__ = ("limit", "max_waiters", "_held", "_waiting")

    def __init__(self, limit: int, max_waiters: int) -> None:
        if limit < 1 or max_waiters < 0:
            raise ValueError("limit must be at least 1 and max_waiters at least 0")
        self.limit = limit
        self.max_waiters = max_waiters
        self._held: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def waiting(self, key: str) -> int:
        return len(self._waiting.get(key, ()))

    def take(self, key: str) -> bool:
        n = self._held.get(key, 0)
        if n >= self.limit or self._waiting.get(key):
            return False  # never jump the queue
        self._held[key] = n + 1
        return True

    def enqueue(self, key: str, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None] | None:
        queue = self._waiting.get(key)
        if queue is None:
            queue = self._waiting[key] = deque()
        while queue and queue[0].done():  # cancelled waiters (timed out, client gone)
            queue.popleft()
        if len(queue) >= self.max_waiters:
            if not queue:
                del self._waiting[key]
            return None
        fut: asyncio.Future[None] = loop.create_future()
        queue.append(fut)
        return fut

    def give(self, key: str) -> None:
        queue = self._waiting.get(key)
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot changes hands; the count stays
                if not queue:
                    del self._waiting[key]
                return
        self._waiting.pop(key, None)
        n = self._held.get(key, 0) - 1
        if n > 0:
            self._held[key] = n
        else:
            self._held.pop(key, None)

    async def acquire(self, key: str, timeout: float) -> bool:
        """A slot within ``timeout`` seconds (True), or False; cancellation leaks no slot."""
        if self.take(key):
            return True
        fut = self.enqueue(key, asyncio.get_running_loop())
        if fut is None:
            return False
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                self.give(key)  # handed over just as we gave up: pass it on
            if isinstance(exc, TimeoutError):
                return False
            raise


def _kdf(stored: str, password: str) -> bool:
    try:
        return verify_secret(stored, password)
    except OperatorError:
        return False  # an unreadable stored secret admits nobody


class Verifier:
    """The one place the data plane checks a password. See the module docstring."""

    def __init__(
        self,
        cache: CredentialCache | None = None,
        throttle: FailureThrottle | None = None,
        *,
        workers: int = 2,
        queue: int = 32,
        per_source: int = 2,
        per_user: int = 2,
        max_waiters: int = 8,
        wait: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        kdf: Callable[[str, str], bool] = _kdf,
    ) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("workers must be at least 1 and queue at least 0")
        if wait <= 0:
            raise ValueError("wait must be positive")
        self.cache = cache if cache is not None else CredentialCache()
        self.throttle = throttle if throttle is not None else FailureThrottle()
        self.capacity = workers + queue
        self.wait = float(wait)
        self.by_source = KeyedSlots(per_source, max_waiters)
        self.by_user = KeyedSlots(per_user, max_waiters)
        self.pending = 0  # checks in the pool, running or queued
        self.kdf_runs = 0
        self.refused_busy = 0
        self._clock = clock
        self._kdf = kdf
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"Verifier(pending={self.pending}, capacity={self.capacity}, kdf_runs={self.kdf_runs})"

    def known(self, user_key: str | None, password: str, client_ip: str) -> Check | None:
        """The outcome without hashing when it can be had: a throttled client, an unknown user
        (``user_key`` None) or a cached result. None: call ``verify``."""
        source = throttle_key(client_ip)
        now = self._clock()
        wait = self.throttle.blocked(source, now)
        if wait > 0:
            return Check(Outcome.THROTTLED, wait)
        if user_key is None:
            self.throttle.failed(source, now)
            return _WRONG
        cached = self.cache.check(user_key, password, now)
        if cached is None:
            return None
        if cached:
            self.throttle.succeeded(source)
            return _OK
        self.throttle.failed(source, now)
        return _WRONG

    async def verify(self, user_key: str, stored: str, password: str, client_ip: str) -> Check:
        """Check ``password`` against the ``stored`` secret of ``user_key``, within the bounds."""
        source = throttle_key(client_ip)
        if not await self.by_source.acquire(source, self.wait):
            self.refused_busy += 1
            return _BUSY
        try:
            got_user = await self.by_user.acquire(user_key, self.wait)
        except BaseException:
            self.by_source.give(source)
            raise
        if not got_user:
            self.by_source.give(source)
            self.refused_busy += 1
            return _BUSY
        handed_over = False
        try:
            # The checks ahead of this one may have blocked the client or verified this password.
            early = self.known(user_key, password, client_ip)
            if early is not None:
                return early
            if self.pending >= self.capacity:
                self.refused_busy += 1
                return _BUSY
            self.throttle.failed(source, self._clock())  # counted before hashing; a success forgets it
            job = asyncio.get_running_loop().run_in_executor(self._executor(), self._kdf, stored, password)
            self.pending += 1
            self.kdf_runs += 1
            job.add_done_callback(lambda j: self._done(j, user_key, password, source))
            handed_over = True  # the slots are returned when the KDF ends, even if this task is cancelled
            ok = await asyncio.shield(job)
            return _OK if ok else _WRONG
        finally:
            if not handed_over:
                self.by_user.give(user_key)
                self.by_source.give(source)

    def _done(self, job: asyncio.Future[bool], user_key: str, password: str, source: str) -> None:
        self.pending -= 1
        self.by_user.give(user_key)
        self.by_source.give(source)
        if job.cancelled() or job.exception() is not None:
            return
        ok = job.result()
        self.cache.remember(user_key, password, ok, self._clock())
        if ok:
            self.throttle.succeeded(source)

    def info(self) -> dict:
        """For ``ctl stats``: checks in the pool now, KDF runs and refusals so far, keys tracked."""
        return {
            "pending": self.pending,
            "kdf_runs": self.kdf_runs,
            "refused_busy": self.refused_busy,
            "throttled_keys": len(self.throttle),
            "cached": len(self.cache),
        }

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="arcus-kdf")
        return self._pool

    def close(self) -> None:
        """Stop the pool: checks not started are cancelled, a running one ends on its own."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
