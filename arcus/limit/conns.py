"""Concurrent connection counting: global, per tenant and per user.

A refusal maps to HTTP 503 or the SOCKS "connection not allowed by ruleset" reply. Lowering a
limit below the current count never closes anything: new connections are refused until
enough old ones end.
"""

from __future__ import annotations


def _check(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
    return limit


class ConcurrencyLimit:
    """A counter with a ceiling; ``limit`` None means unlimited (still counted, for display)."""

    __slots__ = ("limit", "active")

    def __init__(self, limit: int | None) -> None:
        self.limit = _check(limit)
        self.active = 0

    def __repr__(self) -> str:
        return f"ConcurrencyLimit(active={self.active}, limit={self.limit})"

    def try_acquire(self) -> bool:
        if self.limit is not None and self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        """Give back one slot. Releasing more than was acquired is a bug and raises."""
        if self.active <= 0:
            raise RuntimeError("ConcurrencyLimit released more often than acquired")
        self.active -= 1

    def set_limit(self, limit: int | None) -> None:
        self.limit = _check(limit)


def try_acquire_all(*limits: ConcurrencyLimit) -> ConcurrencyLimit | None:
    """Acquire every limit or none: returns None on success, else the limit that refused.

    Pass them from the widest to the narrowest (global, tenant, user) and the refusing one
    tells the caller which to name in the 503 page and the audit event.
    """
    for i, limit in enumerate(limits):
        if not limit.try_acquire():
            for held in limits[:i]:
                held.release()
            return limit
    return None


def release_all(*limits: ConcurrencyLimit) -> None:
    for limit in limits:
        limit.release()
