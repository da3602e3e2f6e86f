"""Flow control of one client<->upstream pair: why each side's reading is paused, and shaping.

Reading from the client stops for any of several reasons at once (a bit mask): the upstream
cannot take more (``UPSTREAM_FULL``), too much early or pipelined data is buffered
(``BUFFER``), or a bandwidth shaper asked for a pause (``SHAPER``). Reading from the upstream
stops while the client's socket buffer is full (``CLIENT_FULL``), while the downstream shaper
asks for a pause (``SHAPER``) or while early upstream bytes are buffered (``BUFFER``). A side
resumes only when no reason is left: ``resume_writing`` can never undo a shaper's pause.

The transports are plugged in and out (``client``, ``attach``/``detach``): an HTTP connection
changes upstream between requests, a pooled upstream leaves with its reading resumed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from arcus.limit import max_pause

# reasons to stop reading (a bit mask per side)
UPSTREAM_FULL = 1  # client side: the upstream cannot take more
CLIENT_FULL = 1  # upstream side: the client cannot take more
BUFFER = 2  # too much early / pipelined data buffered
SHAPER = 4  # over a bandwidth limit: reading resumes when the shaper says so


class Flow:
    __slots__ = ("client", "upstream", "client_paused", "upstream_paused", "shape_up", "shape_down", "closed")

    def __init__(self) -> None:
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.client_paused = 0  # why the client's reading is paused
        self.upstream_paused = 0  # why the upstream's reading is paused
        self.shape_up: tuple = ()  # shapers for client -> upstream bytes
        self.shape_down: tuple = ()
        self.closed = False

    # -- the client's reading

    def pause_client(self, why: int) -> None:
        if not self.client_paused and self.client is not None:
            self.client.pause_reading()
        self.client_paused |= why

    def resume_client(self, why: int) -> None:
        if not self.client_paused & why:
            return
        self.client_paused &= ~why
        if not self.client_paused and self.client is not None and not self.closed:
            self.client.resume_reading()

    # -- the upstream's reading

    def attach(self, upstream: asyncio.Transport | None) -> None:
        """A new upstream transport: paused at once if the client is still full."""
        self.upstream = upstream
        self.upstream_paused &= CLIENT_FULL  # the client's state carries over, nothing else
        if self.upstream_paused and upstream is not None:
            upstream.pause_reading()

    def detach(self) -> None:
        """The upstream leaves (to the pool, or closed): its reading resumed for its next owner."""
        up, self.upstream = self.upstream, None
        if self.upstream_paused and up is not None and not up.is_closing():
            up.resume_reading()
        self.upstream_paused &= CLIENT_FULL

    def pause_upstream(self, why: int) -> None:
        if not self.upstream_paused and self.upstream is not None:
            self.upstream.pause_reading()
        self.upstream_paused |= why

    def resume_upstream(self, why: int) -> None:
        if not self.upstream_paused & why:
            return
        self.upstream_paused &= ~why
        if not self.upstream_paused and self.upstream is not None and not self.closed:
            self.upstream.resume_reading()

    # the client's write buffer (asyncio.Protocol.pause_writing / resume_writing of the client side)

    def client_full(self) -> None:
        self.pause_upstream(CLIENT_FULL)

    def client_drained(self) -> None:
        self.resume_upstream(CLIENT_FULL)  # a shaper's pause stays in force

    # -- shaping

    def sent_up(self, n: int) -> None:
        """``n`` client bytes went upstream: pause the client for as long as the shapers say."""
        if self.shape_up:
            pause = max_pause(time.monotonic(), n, *self.shape_up)
            if pause > 0 and not self.client_paused & SHAPER:
                self.pause_client(SHAPER)
                asyncio.get_running_loop().call_later(min(pause, RECHECK), self._owed_up)

    def sent_down(self, n: int) -> None:
        """``n`` upstream bytes went to the client: pause the upstream as the shapers say."""
        if self.shape_down:
            pause = max_pause(time.monotonic(), n, *self.shape_down)
            if pause > 0 and not self.upstream_paused & SHAPER:
                self.pause_upstream(SHAPER)
                asyncio.get_running_loop().call_later(min(pause, RECHECK), self._owed_down)

    # A pause is looked at again at least every RECHECK seconds: a limit changed meanwhile (raised,
    # removed) takes effect then, not when a debt computed at the old rate is paid.

    def _owed_up(self) -> None:
        self._look_again(self.shape_up, self._owed_up, self.resume_client)

    def _owed_down(self) -> None:
        self._look_again(self.shape_down, self._owed_down, self.resume_upstream)

    def _look_again(self, shapers: tuple, again: Callable[[], None], resume: Callable[[int], None]) -> None:
        owed = _owed(shapers)
        if owed > 0 and not self.closed:
            asyncio.get_running_loop().call_later(min(owed, RECHECK), again)
        else:
            resume(SHAPER)


RECHECK = 1.0
"""Seconds at most between two looks at a shaper's pause (see ``Flow._owed_down``)."""


def _owed(shapers: tuple) -> float:
    now = time.monotonic()
    return max((s.pause(now) for s in shapers if s is not None), default=0.0)
