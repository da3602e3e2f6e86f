"""Freed memory goes back to the system after a burst of large buffers (glibc only).

Bodies held for an ICAP scan, a slow client's buffered response, a burst of tunnels: their
buffers are allocated by glibc's malloc (Python's own allocator takes only small objects), and
glibc gives freed memory back only from the top of its heap. Freed blocks below a block still in
use stay in the process: four parallel 60 MB scans left the daemon at 545 MB RSS for good,
though nothing held them any more. ``malloc_trim(0)`` hands such free pages back (madvise).

:class:`MemoryTrim` looks every ``interval`` seconds (in a worker thread: ``mallinfo2`` walks
the arenas) at how much memory malloc holds free, and trims when it is over ``threshold``. The
look is cheap; the trim takes the arenas' locks for a few milliseconds per hundred megabytes,
which is why it is not done at every look. On a C library without ``malloc_trim`` and
``mallinfo2`` (musl, glibc before 2.33) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Callable

log = logging.getLogger("arcus.runtime")

INTERVAL = 30.0
"""Seconds between two looks."""
THRESHOLD = 64 << 20
"""Free bytes held by malloc above which a look trims."""
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc_functions() -> tuple[Callable[[], int], Callable[[], int]] | None:
    """(free bytes malloc holds, trim) from this process's C library; None where it has not both."""
    try:
        libc = ctypes.CDLL(None)
        mallinfo2 = libc.mallinfo2
        malloc_trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    mallinfo2.argtypes = []
    malloc_trim.restype = ctypes.c_int
    malloc_trim.argtypes = [ctypes.c_size_t]

    def free_bytes() -> int:
        # free chunks in the arenas (a freed mmapped block is unmapped at once: not counted). A
        # trimmed chunk stays free here, its pages given back: see MemoryTrim.look
        return int(mallinfo2().fordblks)

    return free_bytes, lambda: int(malloc_trim(0))


def resident_bytes() -> int:
    """This process's resident set (0 where /proc is not)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


class MemoryTrim:
    """Trims malloc's free memory when a look finds more than ``threshold`` bytes of it.

    A trimmed chunk stays free in malloc's books (only its pages went back), so after a trim the
    next one waits until the resident set has grown ``threshold`` past what the last left: the
    freed memory was used (and freed) again. ``functions``: (free bytes, trim) -- this process's
    C library's by default; tests pass their own, and ``rss``. ``trims`` and ``trimmed`` say how
    often and how much (resident bytes before - after)."""

    def __init__(self, functions: tuple[Callable[[], int], Callable[[], int]] | None | bool = True,
                 threshold: int = THRESHOLD, rss: Callable[[], int] = resident_bytes) -> None:
        self.functions = _libc_functions() if functions is True else (functions or None)
        self.threshold = threshold
        self.rss = rss
        self.trims = 0
        self.trimmed = 0
        self._left: int | None = None  # the resident set the last trim left

    @property
    def available(self) -> bool:
        return self.functions is not None

    def look(self) -> int:
        """One look (blocking: run it in a thread); the resident bytes given back, 0 when no
        trim was due."""
        if self.functions is None:
            return 0
        free_bytes, trim = self.functions
        free = free_bytes()
        if free <= self.threshold:
            return 0
        before = self.rss()
        if self._left is not None and before < self._left + self.threshold:
            return 0  # what is free was given back by the last trim and not used since
        trim()
        self._left = after = self.rss()
        given = max(0, before - after)
        self.trims += 1
        self.trimmed += given
        log.debug("malloc held %d free bytes; %d resident bytes given back to the system", free, given)
        return given

    async def run(self, interval: float = INTERVAL) -> None:
        """Look every ``interval`` seconds, for ever (the daemon's task; cancelled at shutdown)."""
        if self.functions is None:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.look)
            except Exception:  # pragma: no cover - a C library call that fails must not end the daemon
                log.exception("memory trim failed")
                return
