"""File descriptors: the soft limit raised at start, and a warning when the process runs out.

Why: with no free descriptor the event loop cannot take a connection. libuv (under uvloop)
then accepts and closes the pending connections at once (its "EMFILE trick", so that a full
backlog does not spin the loop) and asyncio's own loop pauses accepting for a second; either
way the client sees a reset and the application is told nothing, so no per-connection count
or log line can be had. What Arcus does instead:

1. ``raise_limit``: at start the soft ``RLIMIT_NOFILE`` is raised to the hard limit (as Go's
   runtime and nginx's ``worker_rlimit_nofile`` do); the usual soft default of 1024 is far
   below what a proxy holding two descriptors per connection needs.
2. ``FdWatch.check``: the daemon's sweeper calls it once a second. It reads how many
   descriptors are open (the size of ``/proc/self/fd``: constant time on Linux 6.2 and later;
   on older kernels, where that size is 0, by listing the directory, at most every 10 s) and,
   when fewer than ``reserve`` remain, counts the check in ``low`` and logs a warning at most
   once a minute, with the figures and what to change. ``ctl stats`` shows ``fds``.

Resets while the count stays under the reserve between two checks (a burst shorter than a
second) are not seen: this is a watch, not an accounting.
"""

from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger("arcus.daemon")

WARN_EVERY = 60.0
SLOW_COUNT_EVERY = 10.0


def raise_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one (when allowed); return (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # e.g. RLIM_INFINITY hard above fs.nr_open
            log.debug("cannot raise the descriptor limit to %s: %s", target, exc)
    return soft, hard


def count_open(path: str = "/proc/self/fd") -> int:
    """Open descriptors of this process (0 when unknown: no /proc)."""
    try:
        return os.stat(path).st_size or len(os.listdir(path))
    except OSError:
        return 0


class FdWatch:
    __slots__ = ("limit", "reserve", "open", "low", "_warned", "_fast", "_counted", "_path")

    def __init__(self, limit: int | None = None, *, reserve: int | None = None, path: str = "/proc/self/fd") -> None:
        self.limit = limit if limit is not None else resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        # 5% of the limit, at least 32: room for the store, logs, resolvers and an upstream or two
        self.reserve = reserve if reserve is not None else max(32, self.limit // 20)
        self.open = 0
        self.low = 0  # checks that found fewer than ``reserve`` descriptors free
        self._warned = float("-inf")
        self._counted = float("-inf")
        self._path = path
        try:
            self._fast = os.stat(path).st_size > 0  # Linux 6.2+: st_size is the count
        except OSError:
            self._fast = False

    def check(self, now: float) -> bool:
        """Look at the count (cheaply); True when the process is short of descriptors."""
        if not self._fast:
            if now - self._counted < SLOW_COUNT_EVERY:
                return False
            self._counted = now
        self.open = count_open(self._path)
        if self.limit <= 0 or self.open < self.limit - self.reserve:
            return False
        self.low += 1
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "%d of %d file descriptors open: new connections are closed unanswered (the event "
                "loop cannot accept them, and nothing else logs them); raise the limit "
                "(LimitNOFILE=, ulimit -n) or lower max_conns (counted in `ctl stats` fds.low)",
                self.open,
                self.limit,
            )
        return True

    def info(self) -> dict:
        """For ``ctl stats``: the count now, the limit, and how many checks found it low."""
        return {"open": count_open(self._path), "limit": self.limit, "low": self.low}
