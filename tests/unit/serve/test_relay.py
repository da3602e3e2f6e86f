"""The tunnel base on real loopback sockets: a minimal subclass whose handshake is one line
"host port\\n", answered "OK\\n" or "NO <code>\\n"."""

from __future__ import annotations

import asyncio

import pytest

from arcus.config.loader import parse_profile
from arcus.errors import Refusal
from arcus.runtime.snapshot import StoreView, build_snapshot
from arcus.serve.context import Shared
from arcus.serve.relay import CLOSED, RelayConnection, relay_factory

PROFILE = """\
servers:
  - name: t
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: direct
escapers:
  - name: direct
    type: direct_fixed
resolvers:
  - name: system
    type: system
timeouts:
  client_header: 1s
  tunnel_idle: 2s
  upstream_connect: 2s
"""


class LineRelay(RelayConnection):
    def handshake_data(self) -> None:
        end = self.buf.find(b"\n")
        if end < 0:
            return
        host, port = bytes(self.buf[:end]).decode().split()
        del self.buf[: end + 1]
        self.open(host, int(port))

    def upstream_ready(self) -> None:
        self.transport.write(b"OK\n")

    def refused(self, failure: Refusal) -> None:
        self.transport.write(f"NO {failure.code}\n".encode())


async def _serve(handler):
    return await asyncio.start_server(handler, "127.0.0.1", 0)


async def _setup():
    profile = parse_profile(PROFILE, "test.yaml")
    shared = Shared(build_snapshot(1, profile, StoreView([], {}, {}), frozenset()))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(relay_factory(LineRelay)(shared, "t"), "127.0.0.1", 0)
    return shared, server, server.sockets[0].getsockname()[1]


async def _echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()  # half-close answered with a half-close
        await writer.drain()
    finally:
        writer.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_relays_both_ways_with_half_close_and_accounts():
    async def main():
        shared, server, port = await _setup()
        origin = await _serve(_echo)
        oport = origin.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        payload = bytes(range(256)) * 8192  # 2 MiB: exercises backpressure both ways
        w.write(f"127.0.0.1 {oport}\n".encode() + b"early")  # pipelined after the handshake
        assert await r.readexactly(3) == b"OK\n"
        assert await r.readexactly(5) == b"early"

        async def send():
            w.write(payload)
            await w.drain()
            w.write_eof()

        sender = asyncio.create_task(send())
        got = await r.read(-1)  # until the origin's half-close reaches us
        await sender
        assert got == payload
        w.close()
        for _ in range(100):
            if not shared.connections:
                break
            await asyncio.sleep(0.01)
        assert not shared.connections
        c = shared.server_counters.get("t")
        assert c.bytes_up == len(payload) + 5 and c.bytes_down == len(payload) + 5
        assert c.conns_active == 0 and c.requests == 1
        server.close()
        origin.close()

    run(main())


def test_connect_refused_and_guarded_destination_are_refused_with_their_codes():
    async def main():
        shared, server, port = await _setup()
        probe = await _serve(_echo)
        dead = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"127.0.0.1 {dead}\n".encode())
        assert await r.read(-1) == b"NO upstream_connect\n"
        w.close()
        # the metadata address is refused by the egress guard, never connected to
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"169.254.169.254 80\n")
        assert await r.read(-1) == b"NO denied\n"
        w.close()
        errors = shared.server_counters.get("t").errors
        assert errors["upstream_connect"] == 1 and errors["denied"] == 1
        server.close()

    run(main())


def test_server_first_upstream_is_not_lost():
    async def main():
        shared, server, port = await _setup()

        async def banner(reader, writer):
            writer.write(b"220 hello\r\n")
            await writer.drain()
            await reader.read(-1)
            writer.close()

        origin = await _serve(banner)
        oport = origin.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"127.0.0.1 {oport}\n".encode())
        assert await r.readexactly(3) == b"OK\n"
        assert await r.readexactly(11) == b"220 hello\r\n"
        w.close()
        server.close()
        origin.close()

    run(main())


def test_handshake_deadline_and_kill():
    async def main():
        shared, server, port = await _setup()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"127.0.0.1")  # never finishes its line
        await asyncio.sleep(0.1)
        (conn,) = shared.connections.values()
        assert conn.state_name() == "handshake"
        shared.sweep(conn.deadline + 0.01)
        assert await r.read(-1) == b""
        assert conn.state == CLOSED and not shared.connections
        assert shared.server_counters.get("t").errors["client_timeout"] == 1
        server.close()

    run(main())


@pytest.mark.parametrize("limit", [1])
def test_tenant_connection_slots_are_held_and_released(limit):
    async def main():
        shared, server, port = await _setup()
        from arcus.limit import ConcurrencyLimit  # noqa: F401 - the limiter the slot lives in
        from arcus.tenancy.views import BOX, Limits, LimitSpec

        shared.limits[BOX] = Limits(LimitSpec(max_conns=limit))
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        assert await r2.read(-1) == b"NO box_conn_limit\n"
        w1.close()
        for _ in range(100):
            if shared.limits[BOX].conns.active == 0:
                break
            await asyncio.sleep(0.01)
        assert shared.limits[BOX].conns.active == 0
        server.close()

    run(main())
