"""Token bucket for request rates: allow ``burst`` at once, then ``rate`` per second.

Pure and clock-free: every call takes ``now`` (seconds, from ``loop.time()``), so tests drive
it with simulated time and the data plane pays no syscall for a clock. Time that goes
backwards (it should not with a monotonic clock) is treated as no time passing.
"""

from __future__ import annotations

import math

# Float slack when comparing the fill to a request: waiting exactly the time ``take`` asked
# for must then succeed even if ``tokens + wait * rate`` rounds to a hair under ``n``.
_EPSILON = 1e-9


def _check(rate: float | None, burst: float | None, unit: str = "") -> tuple[float | None, float]:
    if rate is None:
        return None, 0.0
    rate = float(rate)
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a positive number{unit}, not {rate!r}")
    if burst is None:
        raise ValueError("burst is required")  # pragma: no cover - callers fill the default
    burst = float(burst)
    if not math.isfinite(burst) or burst <= 0:
        raise ValueError(f"burst must be a positive number, not {burst!r}")
    return rate, burst


class TokenBucket:
    """``take(now)`` returns 0.0 when allowed (tokens taken), else the seconds to wait.

    ``rate`` None means unlimited (every ``take`` is allowed). ``burst`` defaults to one
    second's worth (at least one token). The bucket starts full.

    The wait returned on refusal is what an HTTP 429 puts in ``Retry-After`` (rounded up to
    whole seconds by the caller); nothing is taken on refusal, so a refused client does not
    push back its own next chance. A request larger than ``burst`` can never pass and gets
    ``math.inf``.
    """

    __slots__ = ("rate", "burst", "_tokens", "_last")
    _unit = ""

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.rate, self.burst = self._limits(rate, burst)
        self._tokens = self.burst
        self._last: float | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, burst={self.burst})"

    @classmethod
    def _default_burst(cls, rate: float) -> float:
        return max(1.0, rate)  # one second's worth, at least one token

    @classmethod
    def _limits(cls, rate: float | None, burst: float | None) -> tuple[float | None, float]:
        if rate is not None and burst is None:
            r = float(rate)
            burst = cls._default_burst(r) if math.isfinite(r) and r > 0 else 1.0
        return _check(rate, burst, cls._unit)

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
            return
        elapsed = now - self._last
        if elapsed > 0:
            assert self.rate is not None
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (for display: ``tenant show``); ``inf`` when unlimited."""
        if self.rate is None:
            return math.inf
        self._refill(now)
        return self._tokens

    def wait(self, now: float, n: float = 1.0) -> float:
        """What ``take`` would return, without taking anything."""
        if self.rate is None:
            return 0.0
        self._refill(now)
        if self._tokens + _EPSILON * max(1.0, n) >= n:
            return 0.0
        if n > self.burst:
            return math.inf
        return (n - self._tokens) / self.rate

    def take(self, now: float, n: float = 1.0) -> float:
        wait = self.wait(now, n)
        if wait == 0.0 and self.rate is not None:
            self._tokens = max(0.0, self._tokens - n)
        return wait

    def set_rate(self, rate: float | None, burst: float | None = None, now: float | None = None) -> None:
        """Change the limit live, keeping the current fill.

        With ``now``, tokens earned so far are credited at the old rate first. The count of
        tokens is then kept, capped at the new burst: lowering a limit bites at once, raising
        it does not hand out a sudden extra burst (the bucket fills up at the new rate). A
        bucket that was unlimited starts full.
        """
        rate, burst = self._limits(rate, burst)
        if self.rate is not None and now is not None:
            self._refill(now)
        was_unlimited = self.rate is None
        self.rate, self.burst = rate, burst
        if rate is None:
            return
        self._tokens = burst if was_unlimited else min(self._tokens, burst)


def take_all(now: float, *buckets: TokenBucket | None, n: float = 1.0) -> float:
    """Take ``n`` from every bucket (global, tenant, user) or from none.

    Returns 0.0 when all allowed it, else the longest wait; on refusal nothing is taken from
    any level, so a tenant refused by its own limit does not use up the global budget.
    ``None`` entries (no limit at that level) are skipped.
    """
    longest = 0.0
    for bucket in buckets:
        if bucket is not None:
            wait = bucket.wait(now, n)
            if wait > longest:
                longest = wait
    if longest > 0.0:
        return longest
    for bucket in buckets:
        if bucket is not None:
            bucket.take(now, n)
    return 0.0
