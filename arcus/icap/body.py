"""A body the ICAP stage holds while it streams in, and cursors that read it for the ICAP server.

The stage appends what arrives (decoded: an ICAP server gets the body's bytes, not its HTTP
chunking) and ``finish``es it; a ``Cursor`` reads from the start and waits for more when it
catches up, so the ICAP request streams while the origin (or the client) still sends, and a
retry on another server reads it again from the start. The stage refuses to hold more than the
tenant's bound (``size`` tells it), so memory per exchange is bounded.
"""

from __future__ import annotations

import asyncio


class Held:
    __slots__ = ("pieces", "size", "complete", "_waiters")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0
        self.complete = False
        self._waiters: list[asyncio.Future[None]] = []

    def add(self, data: bytes) -> None:
        if data:
            self.pieces.append(data)
            self.size += len(data)
            self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def wait(self) -> None:
        """Until something is added or the body is complete."""
        w = asyncio.get_running_loop().create_future()
        self._waiters.append(w)
        await w

    def data(self) -> bytes:
        return b"".join(self.pieces)


class Cursor:
    """Reads a ``Held`` from its start."""

    __slots__ = ("held", "index", "offset")

    def __init__(self, held: Held) -> None:
        self.held = held
        self.index = 0  # the piece being read
        self.offset = 0  # within it

    async def take(self, n: int, fill: bool = False) -> bytes:
        """Up to ``n`` bytes, b"" at the end: waits for something to send (``fill``: for all
        ``n``, or the end of the body: a preview)."""
        held = self.held
        out: list[bytes] = []
        want = n
        while want > 0:
            if self.index < len(held.pieces):
                piece = held.pieces[self.index]
                part = piece[self.offset : self.offset + want]
                out.append(part)
                want -= len(part)
                self.offset += len(part)
                if self.offset >= len(piece):
                    self.index += 1
                    self.offset = 0
                continue
            if held.complete:
                break
            if out and not fill:  # something to send now: do not wait for a full ``n``
                break
            await held.wait()
        return b"".join(out)

    async def at_end(self) -> bool:
        """Whether everything was read (waits to know: more may come, or the end)."""
        held = self.held
        while self.index >= len(held.pieces) and not held.complete:
            await held.wait()
        return self.index >= len(held.pieces) and held.complete
