"""The one tunnel relay and its flow control, on real loopback sockets: bytes both ways,
early bytes, half-close, accounting, the ClientHello's name, and a shaper that resume_writing
cannot undo."""

from __future__ import annotations

import asyncio
import socket

from arcus.limit import Shaper
from arcus.serve.context import Snapshot
from arcus.serve.flow import CLIENT_FULL, SHAPER, Flow
from arcus.serve.tunnel import Tunnel
from arcus.serve.upstream import UpstreamConnection


class Counters:
    bytes_up = 0
    bytes_down = 0


class Owner(asyncio.Protocol):
    """The smallest tunnel owner: an accepted client socket whose events go to the tunnel."""

    def __init__(self) -> None:
        self.transport = None
        self.bytes_up = self.bytes_down = 0
        self.srv_stats, self.ten_stats = Counters(), Counters()
        self.deadline = self.idle_window = 0.0
        self.seen_activity = 0
        self.tunnel_check = None
        self.tunnel: Tunnel | None = None
        self.ended = asyncio.get_running_loop().create_future()
        self.flow = Flow()
        self.made = asyncio.get_running_loop().create_future()
        self.snap = Snapshot(0, None, {}, {})  # type: ignore[arg-type]  # no interception: tunnels splice

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.flow.client = transport
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.tunnel.from_client(data)

    def eof_received(self) -> bool:
        self.tunnel.from_client_eof()
        return True

    def tunnel_ended(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)
        self.transport.close()


async def _pair(early_up: bytes = b"", early_down: bytes = b""):
    """(client socket, origin socket, owner): the tunnel in between, started."""
    loop = asyncio.get_running_loop()
    origin_l = socket.create_server(("127.0.0.1", 0))
    accepted: asyncio.Future[Owner] = loop.create_future()

    def make() -> Owner:
        owner = Owner()
        accepted.set_result(owner)
        return owner

    server = await loop.create_server(make, "127.0.0.1", 0)
    client = socket.create_connection(server.sockets[0].getsockname())
    client.setblocking(False)
    owner = await asyncio.wait_for(accepted, 10)
    await owner.made
    _, up = await loop.create_connection(UpstreamConnection, *origin_l.getsockname())
    origin, _ = await loop.sock_accept(origin_l)
    owner.tunnel = Tunnel(owner, owner.flow, up)
    owner.tunnel.start(30.0, early_up, early_down)
    origin_l.close()
    server.close()
    return client, origin, owner


async def _read_until(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < n:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        if not chunk:
            break
        data += chunk
    return data


def test_bytes_both_ways_early_bytes_half_close_and_accounting() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, origin, owner = await _pair(early_up=b"hello ", early_down=b"banner\n")
        assert await _read_until(client, 7) == b"banner\n"  # server-first bytes delivered
        await loop.sock_sendall(client, b"world")
        assert await _read_until(origin, 11) == b"hello world"  # early client bytes first
        await loop.sock_sendall(origin, b"x" * 100_000)
        assert len(await _read_until(client, 100_000)) == 100_000
        client.shutdown(socket.SHUT_WR)  # the client's EOF reaches the origin...
        assert await asyncio.wait_for(loop.sock_recv(origin, 10), 5) == b""
        await loop.sock_sendall(origin, b"last words")  # ...which may still answer
        assert await _read_until(client, 10) == b"last words"
        assert not owner.ended.done()
        origin.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(owner.ended, 5)  # both EOFs: the tunnel is over
        assert (owner.bytes_up, owner.bytes_down) == (11, 7 + 100_000 + 10)
        assert owner.srv_stats.bytes_up == owner.ten_stats.bytes_up == 11
        client.close()
        origin.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_the_first_client_bytes_name_the_tls_server() -> None:

    async def main() -> None:
        import ssl

        ctx = ssl.create_default_context()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname="tunnelled.example")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        client_hello = outgoing.read()
        client, origin, owner = await _pair()
        await asyncio.get_running_loop().sock_sendall(client, client_hello)
        assert await _read_until(origin, len(client_hello)) == client_hello  # spliced untouched
        assert owner.tunnel.sni == "tunnelled.example"
        client.close()
        origin.close()
        await asyncio.wait_for(owner.ended, 5)

    asyncio.run(asyncio.wait_for(main(), 20))


class FakeTransport:
    """A transport whose reading is paused and resumed (the flow's view of one)."""

    def __init__(self) -> None:
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False


def test_resume_writing_never_lifts_a_shapers_pause() -> None:
    async def main() -> None:
        flow = Flow()
        up = FakeTransport()
        flow.attach(up)
        flow.shape_down = (Shaper(1000.0, burst_bytes=1000.0),)
        flow.sent_down(10_000)  # 10 s worth at 1000 B/s: the upstream is paused by the shaper
        assert not up.reading and flow.upstream_paused == SHAPER
        flow.client_full()
        flow.client_drained()  # the client's buffer drained: the shaper's pause stays
        assert not up.reading and flow.upstream_paused == SHAPER
        flow.resume_upstream(SHAPER)
        assert up.reading
        flow.client_full()
        fresh = FakeTransport()
        flow.attach(fresh)  # a new upstream while the client is still full starts paused
        assert not fresh.reading and flow.upstream_paused == CLIENT_FULL

    asyncio.run(main())


def test_a_limit_raised_during_a_shapers_pause_takes_effect_at_the_next_look(monkeypatch) -> None:
    """The pause is looked at again every RECHECK seconds: removing the limit ends a pause that
    the old rate had made nine seconds long; a limit still owed keeps it."""
    from arcus.serve import flow as flow_module
    from arcus.testing.wait import async_wait_until

    monkeypatch.setattr(flow_module, "RECHECK", 0.05)

    async def main() -> None:
        flow = Flow()
        up = FakeTransport()
        flow.attach(up)
        shaper = Shaper(1000.0, burst_bytes=1000.0)
        flow.shape_down = (shaper,)
        flow.sent_down(10_000)  # 9 s of debt at 1000 B/s
        assert not up.reading
        looks = []
        owed = flow_module._owed
        monkeypatch.setattr(flow_module, "_owed", lambda shapers: looks.append(1) or owed(shapers))
        await async_wait_until(lambda: len(looks) >= 3, timeout=5, what="three looks at the pause")
        assert not up.reading and flow.upstream_paused == SHAPER  # still owed at each
        shaper.set_rate(None)  # the tenant's limit removed
        await async_wait_until(lambda: up.reading, timeout=5, what="the upstream read again")
        assert flow.upstream_paused == 0

    asyncio.run(asyncio.wait_for(main(), 20))
