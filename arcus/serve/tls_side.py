"""A TLS server side terminated in memory over a raw transport.

TLS interception (``arcus.serve.intercept``) decides on a ClientHello it has already read from
the client socket, so the handshake cannot start over on the socket (``loop.start_tls``): it
runs on memory BIOs instead, fed with the bytes the tunnel received; bytes on the wire are
counted on the owner (the tunnel's record). A TLS listener (``arcus.serve.tls_listen``) ends
its clients' TLS the same way, so that a client's close_notify is a half-close, not the end.
:class:`TlsSide` is transport-shaped (write, close, pause/resume, extra info), so the HTTP
connection above writes to it as to a socket, and may go on writing after the client's
close_notify.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

READ = 256 * 1024


class TlsSide:
    """The client's TLS, terminated in memory over the raw client transport; transport-shaped,
    so the decrypted HTTP connection writes to it as to a socket."""

    __slots__ = ("raw", "obj", "inc", "out", "owner", "closing", "eof")

    def __init__(self, raw: asyncio.Transport, ctx: ssl.SSLContext, owner: Any = None) -> None:
        self.raw = raw
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)
        # interception: the tunnel's owner, whose record counts the bytes on the wire (the
        # connection is then ``arcus_intercepted``); None for a listener's TLS, whose session
        # counts what it relays
        self.owner = owner
        self.closing = False
        self.eof = False  # the client sent close_notify

    def _flush(self) -> None:
        data = self.out.read()
        if data:
            owner = self.owner
            if owner is not None:
                owner.bytes_down += len(data)
            self.raw.write(data)

    def handshake(self, data: bytes) -> bool:
        """Feed handshake bytes; True once it is done (raises ssl.SSLError if it failed)."""
        if data:
            self.inc.write(data)
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        finally:
            if self.out.pending:
                self._flush()
        return True

    def feed(self, data: bytes) -> bytes:
        """Decrypt what arrived (raises ssl.SSLError for broken TLS)."""
        if data:
            self.inc.write(data)
        chunks = []
        obj = self.obj
        while True:
            try:
                chunk = obj.read(READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
        if self.out.pending:  # TLS 1.3 key updates
            self._flush()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- asyncio.Transport, as far as the HTTP connection and the tunnel use it

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing or self.raw.is_closing():
            return
        self.obj.write(data)
        self._flush()

    def writelines(self, chunks: Any) -> None:
        for c in chunks:
            self.write(c)

    def is_closing(self) -> bool:
        return self.closing or self.raw.is_closing()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            try:
                self.obj.unwrap()
            except ssl.SSLError:
                pass
            try:
                self._flush()
            except Exception:  # noqa: BLE001 - the raw transport may be gone already
                pass
        self.raw.close()

    def abort(self) -> None:
        self.closing = True
        self.raw.abort()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS cannot be half-closed")

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.raw.set_write_buffer_limits(high=high, low=low)

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.obj
        if name == "arcus_intercepted":
            return self.owner is not None
        return self.raw.get_extra_info(name, default)
