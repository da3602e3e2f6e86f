"""Real loopback peers for the escaper tests: listeners, a port whose connects hang, and a
resolver with fixed answers (the DNS part is not under test here)."""

from __future__ import annotations

import asyncio
import socket
from contextlib import contextmanager

from arcus.config.schema import ResolverConfig
from arcus.resolve.base import Resolver


class FixedResolver(Resolver):
    """Answers from a table; a name not in it fails like NXDOMAIN."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        super().__init__(ResolverConfig(name="fixed", type="fixed", cache_ttl=0.001, negative_ttl=0.001))
        self.table = table
        self.queries: list[str] = []

    async def _query(self, host: str) -> list[str]:
        self.queries.append(host)
        if host not in self.table:
            raise OSError("Name or service not known")
        return list(self.table[host])


@contextmanager
def hanging_port(host: str = "127.0.0.2"):
    """A port on ``host`` where a TCP connect hangs (its accept queue is full: SYNs dropped)."""
    server = socket.socket()
    server.bind((host, 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect((host, port))
            except BlockingIOError:
                pass
            fillers.append(c)
        yield port
    finally:
        for c in fillers:
            c.close()
        server.close()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on (connects are refused at once)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Recorder(asyncio.Protocol):
    """Client side protocol handed to escapers: records what arrives."""

    def __init__(self) -> None:
        self.transport = None
        self.data = bytearray()
        self.eof = False
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.eof = True
        return True

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)

    async def read_until(self, needle: bytes, timeout: float = 5.0) -> bytes:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while needle not in self.data:
            if loop.time() > end:
                raise TimeoutError(f"waited for {needle!r}, got {bytes(self.data)!r}")
            await asyncio.sleep(0.01)
        return bytes(self.data)


class Listener:
    """An asyncio TCP server on loopback that records peers and answers with a fixed greeting
    then echoes (so a test sees which listener and which source address it reached)."""

    def __init__(self, host: str = "127.0.0.1", greeting: bytes = b"hello\n") -> None:
        self.host = host
        self.greeting = greeting
        self.peers: list[str] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(writer.get_extra_info("peername")[0])
        writer.write(self.greeting + writer.get_extra_info("peername")[0].encode() + b"\n")
        try:
            while data := await asyncio.wait_for(reader.read(65536), 10):
                writer.write(data)
        except (TimeoutError, ConnectionError):
            pass
        writer.close()
