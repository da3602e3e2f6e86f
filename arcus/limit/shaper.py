"""Bandwidth shaping by pausing reads: data already received is never dropped.

A ``Shaper`` is a token bucket of bytes that may go into debt. The data plane cannot refuse
bytes the kernel already handed over, so ``consume`` always accepts them and answers how long
to stop reading so that, over time, the average stays at the rate: the debt divided by the
rate. TCP's own flow control then slows the sender while the socket is not read.

``burst_bytes`` is how far ahead of the rate a connection may run after being idle; it
defaults to a quarter second of the rate, and at least 64 KiB (one large read), so a shaped
connection does not stop after every read.
"""

from __future__ import annotations

import math

MIN_BURST = 64 * 1024


def _check(rate: float | None, burst: float | None) -> tuple[float | None, float]:
    if rate is None:
        return None, 0.0
    rate = float(rate)
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a positive number of bytes per second, not {rate!r}")
    burst = max(rate / 4, MIN_BURST) if burst is None else float(burst)
    if not math.isfinite(burst) or burst <= 0:
        raise ValueError(f"burst must be a positive number of bytes, not {burst!r}")
    return rate, burst


class Shaper:
    """``consume(now, nbytes)`` returns the pause in seconds (0.0 under the rate).

    ``rate_bytes_per_s`` None means unlimited: no pause ever, nothing counted. One shaper per
    direction (up, down) and per level (global, tenant, user); combine levels with
    ``max_pause``.
    """

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate_bytes_per_s: float | None, burst_bytes: float | None = None) -> None:
        self.rate, self.burst = _check(rate_bytes_per_s, burst_bytes)
        self._tokens = self.burst
        self._last: float | None = None

    def __repr__(self) -> str:
        return f"Shaper(rate={self.rate}, burst={self.burst})"

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
            return
        elapsed = now - self._last
        if elapsed > 0:
            assert self.rate is not None
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now

    def consume(self, now: float, nbytes: float) -> float:
        if self.rate is None or nbytes <= 0:
            return 0.0
        self._refill(now)
        self._tokens -= nbytes
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    def pause(self, now: float) -> float:
        """The pause still owed at ``now`` without consuming anything (0.0 when none)."""
        if self.rate is None:
            return 0.0
        self._refill(now)
        return -self._tokens / self.rate if self._tokens < 0 else 0.0

    def set_rate(self, rate_bytes_per_s: float | None, burst_bytes: float | None = None, now: float | None = None) -> None:
        """Change the rate live. Earned bytes (with ``now``) are credited at the old rate; the
        fill, or the debt, is kept in bytes and capped at the new burst, so a debt is paid off
        at the new rate. A shaper that was unlimited starts full."""
        rate, burst = _check(rate_bytes_per_s, burst_bytes)
        if self.rate is not None and now is not None:
            self._refill(now)
        was_unlimited = self.rate is None
        self.rate, self.burst = rate, burst
        if rate is None:
            return
        self._tokens = burst if was_unlimited else min(self._tokens, burst)


def max_pause(now: float, nbytes: float, *shapers: Shaper | None) -> float:
    """Charge ``nbytes`` to every shaper (global, tenant, user...) and return the longest pause.

    Every level is charged, since the bytes did cross every level; ``None`` entries (no
    shaper at that level) are skipped.
    """
    pause = 0.0
    for shaper in shapers:
        if shaper is not None:
            p = shaper.consume(now, nbytes)
            if p > pause:
                pause = p
    return pause
