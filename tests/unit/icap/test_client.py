"""The ICAP client against a scripted ICAP server on a loopback socket: OPTIONS cached per TTL,
the pool bounded by Max-Connections, preview then 204, a block, failover and the error verdict."""

from __future__ import annotations

import asyncio

from arcus.config.schema import IcapServer, IcapServiceConfig
from arcus.icap.body import Cursor, Held
from arcus.icap.client import IcapService
from arcus.proto import icap

OPTIONS = (
    b"ICAP/1.0 200 OK\r\nMethods: RESPMOD, REQMOD\r\nISTag: \"t1\"\r\nPreview: 4\r\nAllow: 204\r\n"
    b"Options-TTL: %d\r\nMax-Connections: %d\r\nEncapsulated: null-body=0\r\n\r\n"
)
RES_HDR = b"HTTP/1.1 403 Forbidden\r\n\r\n"
BLOCK = (b"ICAP/1.0 200 OK\r\nX-Infection-Found: Type=0; Resolution=2; Threat=Bad.Thing;\r\n"
         b"Encapsulated: res-hdr=0, res-body=%d\r\n\r\n" % len(RES_HDR)) + RES_HDR + b"3\r\nno!\r\n0\r\n\r\n"


CUT_HDR = b"HTTP/1.0 200 OK\r\nContent-Length: 2068\r\n\r\n"
CUT = (b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=%d\r\n\r\n" % len(CUT_HDR)) + CUT_HDR + b"0\r\n\r\n"
"""What c-icap's antivirus answers when it finds a virus after it began answering: the original
head, its length, no body, no X-Infection-Found."""


class Scripted:
    """An ICAP server that answers OPTIONS, then each modification: 100 after a preview unless
    the body is in it, then 204, or the block answer when the body holds b"EVIL"."""

    def __init__(self, ttl: int = 60, max_conns: int = 2, delay: float = 0.0) -> None:
        self.ttl, self.max_conns, self.delay = ttl, max_conns, delay
        self.options = 0
        self.requests: list[bytes] = []
        self.open = 0
        self.most_open = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"OPTIONS"):
                    self.options += 1
                    writer.write(OPTIONS % (self.ttl, self.max_conns))
                    continue
                encap = icap.parse_encapsulated(next(ln for ln in head.split(b"\r\n") if ln.startswith(b"Encapsulated")).split(b":", 1)[1].strip())
                await reader.readexactly(encap[-1][1])
                body, ieof = await self.chunks(reader)
                self.requests.append(head)
                if b"Preview" in head and not ieof and b"EVIL" not in body:
                    writer.write(b"ICAP/1.0 100 Continue\r\n\r\n")
                    more, _ = await self.chunks(reader)
                    body += more
                await asyncio.sleep(self.delay)
                writer.write(BLOCK if b"EVIL" in body else CUT if b"CUT" in body else b"ICAP/1.0 204 No Content\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def chunks(self, reader: asyncio.StreamReader) -> tuple[bytes, bool]:
        out = b""
        while True:
            line = await reader.readuntil(b"\r\n")
            size, _, ext = line.strip().partition(b";")
            n = int(size, 16)
            if n == 0:
                await reader.readuntil(b"\r\n")
                return out, b"ieof" in ext
            out += await reader.readexactly(n)
            await reader.readexactly(2)


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def service(*ports: int, **kw) -> IcapService:
    return IcapService(IcapServiceConfig("av", tuple(IcapServer("127.0.0.1", p, "/av") for p in ports), **kw))


def held(data: bytes) -> Held:
    h = Held()
    h.add(data)
    h.finish()
    return h


def test_preview_then_204_options_cached_and_a_block():
    async def main() -> None:
        peer = Scripted()
        svc = service(await peer.start())
        v = await svc.modify(b"RESPMOD", b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", held(b"abcdefgh"), "txt", 1000)
        assert v.action == "pass"
        v = await svc.modify(b"RESPMOD", b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", held(b"xxEVIL"), "txt", 1000)
        assert (v.action, v.threat) == ("block", "Bad.Thing")
        v = await svc.modify(b"REQMOD", b"PUT / HTTP/1.1\r\n\r\n", None, held(b"ok"), "", 1000)  # fits the preview: ieof
        assert v.action == "pass"
        assert peer.options == 1  # one OPTIONS for all three: cached for its TTL
        assert all(b"Allow: 204" in r for r in peer.requests)
        # only the body that fits the preview goes as one (ieof); the larger ones go whole
        assert [b"Preview: 4" in r for r in peer.requests] == [False, False, True]
        assert peer.most_open == 1  # one persistent connection did it all

    asyncio.run(asyncio.wait_for(main(), 10))


def test_an_answer_cut_short_of_its_own_content_length_is_a_block():
    async def main() -> None:
        peer = Scripted()
        svc = service(await peer.start())
        v = await svc.modify(b"RESPMOD", b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", held(b"x" * 100 + b"CUT"), "", 10_000)
        assert (v.action, v.threat) == ("block", "unnamed (the ICAP server cut the body it answered)")

    asyncio.run(asyncio.wait_for(main(), 10))


def test_options_expire_after_their_ttl():
    async def main() -> None:
        peer = Scripted(ttl=0)
        svc = service(await peer.start())
        for _ in range(3):
            await svc.modify(b"RESPMOD", b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", held(b"a"), "", 100)
        assert peer.options == 3

    asyncio.run(asyncio.wait_for(main(), 10))


def test_the_pool_honours_max_connections():
    async def main() -> None:
        peer = Scripted(max_conns=2, delay=0.05)
        svc = service(await peer.start(), max_connections=16)
        verdicts = await asyncio.gather(*(
            svc.modify(b"RESPMOD", b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", held(b"abc"), "", 100) for _ in range(10)
        ))
        assert {v.action for v in verdicts} == {"pass"}
        assert peer.most_open == 2
        assert svc.servers[0].limit == 2

    asyncio.run(asyncio.wait_for(main(), 10))


def test_failover_and_then_the_error_verdict():
    async def main() -> None:
        peer = Scripted()
        good = await peer.start()
        dead = closed_port()
        svc = service(dead, good, connect_timeout=1.0)
        v = await svc.modify(b"RESPMOD", b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", held(b"EVIL"), "", 100)
        assert v.action == "block" and "1 failed" in v.detail
        assert svc.candidates()[0].server.port == good  # the failed one is tried last for a while
        peer.server.close()
        await peer.server.wait_closed()
        for s in svc.servers:
            for c in s.idle:
                c.close()
            s.idle.clear()
        v = await service(dead, connect_timeout=1.0).modify(b"RESPMOD", b"GET / HTTP/1.1\r\n\r\n", None, None, "", 100)
        assert v.action == "error" and "cannot connect" in v.detail

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_slow_server_times_out():
    async def main() -> None:
        peer = Scripted(delay=5)
        svc = service(await peer.start(), timeout=0.2)
        v = await svc.modify(b"RESPMOD", b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", held(b"abcdefgh"), "", 100)
        assert v.action == "error" and "did not answer within 0.2s" in v.detail

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_cursor_streams_what_arrives_and_a_preview_waits_to_fill():
    async def main() -> None:
        h = Held()
        c = Cursor(h)
        preview = asyncio.ensure_future(c.take(5, fill=True))
        h.add(b"ab")
        await asyncio.sleep(0)
        assert not preview.done()
        h.add(b"cdefg")
        assert await preview == b"abcde"
        assert await c.take(100) == b"fg"
        rest = asyncio.ensure_future(c.at_end())
        await asyncio.sleep(0)
        assert not rest.done()
        h.finish()
        assert await rest is True and await c.take(10) == b""
        assert await Cursor(h).take(100) == b"abcdefg"  # a retry reads it all again

    asyncio.run(asyncio.wait_for(main(), 5))
