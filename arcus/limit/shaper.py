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

from arcus.limit.bucket import TokenBucket

MIN_BURST = 64 * 1024


class Shaper(TokenBucket):
    """``consume(now, nbytes)`` returns the pause in seconds (0.0 under the rate).

    A token bucket of bytes (refill and live rate changes are ``TokenBucket``'s) that may go
    into debt. ``rate_bytes_per_s`` None means unlimited: no pause ever, nothing counted. One
    shaper per direction (up, down) and per level (global, tenant, user); combine levels with
    ``max_pause``.
    """

    __slots__ = ()
    _unit = " of bytes per second"

    def __init__(self, rate_bytes_per_s: float | None, burst_bytes: float | None = None) -> None:
        super().__init__(rate_bytes_per_s, burst_bytes)

    @classmethod
    def _default_burst(cls, rate: float) -> float:
        return max(rate / 4, MIN_BURST)

    def set_rate(self, rate_bytes_per_s: float | None, burst_bytes: float | None = None, now: float | None = None) -> None:
        """Change the rate live: a debt is kept in bytes (capped at the new burst) and paid
        off at the new rate; a shaper that was unlimited starts full."""
        super().set_rate(rate_bytes_per_s, burst_bytes, now)

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
