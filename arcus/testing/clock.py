"""A clock a test moves by hand, for code that takes ``clock: Callable[[], float]``.

    clock = ManualClock()
    resolver = build_resolver(config, clock=clock)
    ...
    clock.advance(30)  # the cache entry's TTL is over, without waiting 30 s

Advance by binary fractions (0.25, 0.5) when a test compares exact expiry instants: it starts at
1000.0, so such sums stay exact in floating point.
"""

from __future__ import annotations


class ManualClock:
    """Monotonic seconds that only move when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self.now += seconds
        return self.now
