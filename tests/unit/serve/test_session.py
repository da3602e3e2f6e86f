"""The client session on real loopback sockets: slots held and released, reject at accept,
and the graceful close after a refusal (RFC 9112 9.6): the client reads why, not a reset."""

from __future__ import annotations

import asyncio
import socket

from arcus.errors import Refusal
from arcus.serve.session import Session
from arcus.tenancy.views import BOX, Limits, LimitSpec
from tests.unit.serve.test_relay import PROFILE


class Refuser(Session):
    """Answers every client "NO <code>" at once, while the client may still be sending."""

    def accepted(self) -> None:
        self.transport.write(b"NO refused\n")
        self.close(linger=True)

    def rejected(self, refusal: Refusal) -> None:
        self.transport.write(f"NO {refusal.code}\n".encode())
        self.close(linger=True)

    def data_received(self, data: bytes) -> None:
        self.linger_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc) -> None:
        self.teardown()

    def state_name(self) -> str:
        return "test"


async def _server(shared):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Refuser(shared, "t"), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _shared():
    from arcus.config.loader import parse_profile
    from arcus.runtime.snapshot import StoreView, build_snapshot
    from arcus.serve.context import Shared

    return Shared(build_snapshot(1, parse_profile(PROFILE, "test.yaml"), StoreView([], {}, {}), frozenset()))


def test_a_refused_client_that_keeps_sending_reads_the_answer_not_a_reset() -> None:
    async def main() -> None:
        shared = _shared()
        server, port = await _server(shared)
        loop = asyncio.get_running_loop()
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        # a big request the server never reads as a request: 2 MiB more than any socket buffer
        await loop.sock_sendall(s, b"x" * (2 * 1024 * 1024))
        got = b""
        while True:
            chunk = await asyncio.wait_for(loop.sock_recv(s, 65536), 5)  # ConnectionResetError fails the test
            if not chunk:
                break
            got += chunk
        assert got == b"NO refused\n"
        s.close()
        for _ in range(200):
            if not shared.connections:
                break
            await asyncio.sleep(0.01)
        assert not shared.connections
        server.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_box_slots_are_held_for_the_connection_and_released_once() -> None:
    async def main() -> None:
        shared = _shared()
        shared.limits[BOX] = Limits(LimitSpec(max_conns=1))

        class Holder(Refuser):
            def accepted(self) -> None:
                self.transport.write(b"OK\n")

        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Holder(shared, "t"), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        assert await r1.readline() == b"OK\n"
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        assert await r2.readline() == b"NO box_conn_limit\n"
        assert await r2.read() == b""
        assert shared.limits[BOX].conns.active == 1
        w1.close()
        for _ in range(200):
            if shared.limits[BOX].conns.active == 0 and not shared.connections:
                break
            await asyncio.sleep(0.01)
        assert shared.limits[BOX].conns.active == 0 and not shared.connections
        counters = shared.server_counters.get("t")
        assert (counters.conns_total, counters.conns_active) == (2, 0)
        w2.close()
        server.close()

    asyncio.run(asyncio.wait_for(main(), 20))
