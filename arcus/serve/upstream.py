"""The upstream side of a proxied connection: hands every event to its owner (the client side)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from arcus.serve.pool import UpstreamPool


class Owner(Protocol):
    def upstream_data(self, data: bytes) -> None: ...
    def upstream_eof(self) -> None: ...
    def upstream_lost(self, exc: Exception | None) -> None: ...
    def upstream_pause(self) -> None: ...
    def upstream_resume(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "transport", "owner", "key", "pooled", "idle_until", "closed", "eof", "pool", "reused", "peer", "cleared_for",
    )

    def __init__(self, key: tuple = ()) -> None:
        self.transport: asyncio.Transport | None = None
        self.owner: Owner | None = None
        self.key = key
        self.pooled = False
        self.idle_until = 0.0
        self.closed = False
        self.eof = False
        self.pool: UpstreamPool | None = None  # set while idle in a pool, to leave it on close
        self.reused = False
        self.peer: str | None = None  # the address it is connected to (the pool's re-check reads it)
        self.cleared_for: tuple | None = None  # (client, escaper, pool generation) the pool last checked it for

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).split("%", 1)[0] if peer else None

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:  # idle in the pool: an origin must not speak unasked
            self.close()
            return
        owner.upstream_data(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        owner = self.owner
        if owner is None:
            return False
        owner.upstream_eof()
        # the owner decides when to close (tunnels half-close) where a half-close exists: a TLS
        # transport closes after its EOF whatever we answer, and asyncio writes a bare warning
        # line to stderr (outside the daemon's log format) for a True
        transport = self.transport
        return transport is not None and transport.can_write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        owner, self.owner = self.owner, None
        if self.pool is not None:
            self.pool.discard(self)
            self.pool = None
        if owner is not None:
            owner.upstream_lost(exc)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_pause()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_resume()

    # used by the client side and the pool
    def usable(self) -> bool:
        return not self.closed and not self.eof and self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        self.owner = None
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        self.owner = None
        if self.transport is not None and not self.closed:
            self.transport.abort()


MAX_EARLY = 256 * 1024  # upstream bytes kept before a tunnel takes its upstream (then reading pauses)


class Early:
    """The owner of a tunnel's upstream connection until the tunnel takes it: keeps what it says.

    A server-first protocol (SSH, SMTP, FTP...) greets as soon as it accepts, which can be before
    the escaper's connect returns to the connection that asked; an escaper racing several
    addresses closes the losers. Bounded: past MAX_EARLY bytes the upstream's reading pauses.
    """

    __slots__ = ("up", "data", "eof", "paused")

    def __init__(self, up: UpstreamConnection) -> None:
        self.up = up
        self.data = bytearray()
        self.eof = False
        self.paused = False

    def upstream_data(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > MAX_EARLY and not self.paused and self.up.transport is not None:
            self.paused = True
            self.up.transport.pause_reading()

    def upstream_eof(self) -> None:
        self.eof = True

    def upstream_lost(self, exc: Exception | None) -> None:
        pass

    def upstream_pause(self) -> None:
        pass

    def upstream_resume(self) -> None:
        pass


def tunnel_upstream() -> UpstreamConnection:
    """An upstream connection for a tunnel, owned from the start by an :class:`Early` buffer."""
    up = UpstreamConnection(("tunnel",))
    up.owner = Early(up)
    return up


def take_early(up: UpstreamConnection) -> tuple[bytes, bool, bool]:
    """(bytes, eof, paused) an :class:`Early` owner kept for ``up`` (nothing for another owner);
    the caller becomes the owner next, and resumes reading if it was paused."""
    early = up.owner
    if isinstance(early, Early):
        return bytes(early.data), early.eof, early.paused
    return b"", False, False
