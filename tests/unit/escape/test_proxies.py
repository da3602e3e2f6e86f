"""proxy_http, proxy_https and proxy_socks5 against small loopback peers speaking each protocol:
the bytes we send, what we make of each answer, bytes after the handshake, TLS inside the tunnel.

(The real peers, tinyproxy, dante and a second Arcus, are in tests/integration/test_escapers.py.)
"""

from __future__ import annotations

import asyncio
import base64
import ssl

import pytest

from arcus.config.escaper.proxy_http import ProxyHttpEscaperConfig
from arcus.config.escaper.proxy_https import ProxyHttpsEscaperConfig
from arcus.config.escaper.proxy_socks5 import ProxySocks5EscaperConfig
from arcus.errors import EscapeError
from arcus.escape.base import hop_failed
from arcus.escape.proxy_http import ProxyHttpEscaper
from arcus.escape.proxy_https import ProxyHttpsEscaper
from arcus.escape.proxy_socks5 import ProxySocks5Escaper
from tests.integration.tls_peers import LocalCA
from tests.unit.escape.peers import Recorder, closed_port


class Scripted:
    """A peer that records what it reads and answers with ``script(data_so_far) -> bytes | None``
    (None: wait for more); after the script is done it echoes."""

    def __init__(self, script, ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.ssl = ssl_ctx
        self.received = bytearray()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader, writer):
        try:
            for step in self.script:
                while True:
                    answer = step(bytes(self.received))
                    if answer is not None:
                        break
                    data = await asyncio.wait_for(reader.read(4096), 5)
                    if not data:
                        return
                    self.received += data
                if answer == b"<close>":
                    writer.close()
                    return
                self.received.clear()
                writer.write(answer)
            while data := await asyncio.wait_for(reader.read(4096), 5):
                writer.write(data)
        except (TimeoutError, ConnectionError):
            pass
        writer.close()


def head_done(answer: bytes):
    return lambda buf: answer if b"\r\n\r\n" in buf else None


def http_escaper(port: int, **kw) -> ProxyHttpEscaper:
    return ProxyHttpEscaper(ProxyHttpEscaperConfig(name="up", type="proxy_http", proxy=f"127.0.0.1:{port}", **kw), None)


def test_connect_request_carries_our_credentials_and_early_bytes_reach_the_protocol():
    async def main():
        seen = {}

        def connect(buf):
            if b"\r\n\r\n" not in buf:
                return None
            seen["head"] = buf
            return b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-early\r\n"

        async with Scripted([connect]) as peer:
            esc = http_escaper(peer.port, username="arcus", password="s3cret")
            rec = Recorder()
            conn = await esc.connect("origin.example", 8443, "10.0.0.1", lambda: rec, timeout=2)
            await rec.read_until(b"SSH-2.0-early\r\n")
            conn.transport.write(b"ping")
            await rec.read_until(b"ping")
            conn.transport.close()
            return seen["head"], conn

    head, conn = asyncio.run(main())
    token = base64.b64encode(b"arcus:s3cret")
    assert head == (b"CONNECT origin.example:8443 HTTP/1.1\r\nHost: origin.example:8443\r\n"
                    b"Proxy-Authorization: Basic " + token + b"\r\n\r\n")
    assert conn.via == "up" and conn.peer.startswith("127.0.0.1:")


def test_connect_to_an_ipv6_literal_is_bracketed_and_checked():
    async def main():
        seen = {}

        def connect(buf):
            if b"\r\n\r\n" not in buf:
                return None
            seen["head"] = buf
            return b"HTTP/1.1 200 OK\r\n\r\n"

        async with Scripted([connect]) as peer:
            esc = http_escaper(peer.port)
            with pytest.raises(EscapeError) as refused:
                await esc.connect("2001:db8::1", 443, "10.0.0.1", Recorder, timeout=2, check=lambda a: f"{a} is blocked")
            asked = []
            conn = await esc.connect("app.example", 443, "10.0.0.1", Recorder, timeout=2, check=asked.append)
            conn.transport.close()
            conn = await esc.connect("2001:db8::1", 443, "10.0.0.1", Recorder, timeout=2)
            conn.transport.close()
            return refused.value, asked, seen["head"]

    refused, asked, head = asyncio.run(main())
    assert refused.status == 403 and "2001:db8::1 is blocked" in refused.message
    assert asked == []  # a name is the upstream's to resolve: no address to check here
    assert head.startswith(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n")


@pytest.mark.parametrize(
    "answer, status, code, hop",
    [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", 502, "upstream_auth", True),
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403, "upstream_denied", False),
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", 502, "upstream_connect", False),
        (b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n", 504, "upstream_timeout", False),
        (b"SSH-2.0-not-a-proxy\r\n\r\n", 502, "upstream_protocol", True),
        (b"<close>", 502, "upstream_connect", True),
    ],
    ids=["407", "403", "502", "504", "garbage", "closed"],
)
def test_each_connect_answer_is_an_error_saying_whose_fault(answer, status, code, hop):
    async def main():
        async with Scripted([head_done(answer)]) as peer:
            with pytest.raises(EscapeError) as info:
                await http_escaper(peer.port).connect("x.example", 80, "10.0.0.1", Recorder, timeout=2)
            return info.value

    err = asyncio.run(main())
    assert (err.status, err.code) == (status, code), err.message
    assert (hop_failed(err) == "up") is hop
    assert "upstream proxy 127.0.0.1:" in err.message


def test_a_silent_proxy_is_a_504_within_the_timeout_and_a_dead_one_a_502():
    async def main():
        async with Scripted([lambda buf: None]) as peer:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(EscapeError) as slow:
                await http_escaper(peer.port).connect("x.example", 80, "10.0.0.1", Recorder, timeout=0.4)
            took = loop.time() - t0
        with pytest.raises(EscapeError) as dead:
            await http_escaper(closed_port()).connect("x.example", 80, "10.0.0.1", Recorder, timeout=1)
        return slow.value, took, dead.value

    slow, took, dead = asyncio.run(main())
    assert slow.status == 504 and took < 1.2
    assert dead.status == 502 and "Connection refused" in dead.message and hop_failed(dead) == "up"


def socks_escaper(port: int, **kw) -> ProxySocks5Escaper:
    return ProxySocks5Escaper(
        ProxySocks5EscaperConfig(name="socks", type="proxy_socks5", proxy=f"127.0.0.1:{port}", **kw), None
    )


def test_socks5_with_username_and_password_then_connect_by_name():
    async def main():
        script = [
            lambda b: b"\x05\x02" if len(b) >= 4 else None,  # choose USERPASS
            lambda b: b"\x01\x00" if len(b) >= 2 and len(b) >= 3 + b[1] and len(b) >= 3 + b[1] + b[2 + b[1]] else None,
            lambda b: (b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38" + b"after") if len(b) >= 7 and len(b) >= 7 + b[4] else None,
        ]
        async with Scripted(script) as peer:
            esc = socks_escaper(peer.port, username="bob", password="pw")
            rec = Recorder()
            conn = await esc.connect("origin.example", 443, "10.0.0.1", lambda: rec, timeout=2)
            await rec.read_until(b"after")
            conn.transport.close()
        return True

    assert asyncio.run(main())


@pytest.mark.parametrize(
    "reply, status, code",
    [(2, 403, "upstream_denied"), (4, 502, "upstream_connect"), (5, 502, "upstream_connect"), (6, 504, "upstream_timeout"),
     (7, 502, "upstream_protocol")],
)
def test_socks5_failure_replies(reply, status, code):
    async def main():
        script = [
            lambda b: b"\x05\x00" if len(b) >= 3 else None,
            lambda b: bytes([5, reply, 0, 1, 0, 0, 0, 0, 0, 0]) if len(b) >= 10 else None,
        ]
        async with Scripted(script) as peer:
            with pytest.raises(EscapeError) as info:
                await socks_escaper(peer.port).connect("10.1.2.3", 80, "10.0.0.1", Recorder, timeout=2)
            return info.value

    err = asyncio.run(main())
    assert (err.status, err.code) == (status, code)
    assert hop_failed(err) is None  # the proxy is fine: the destination failed behind it


def test_socks5_proxy_wanting_credentials_we_do_not_have():
    async def main():
        async with Scripted([lambda b: b"\x05\xff" if len(b) >= 3 else None]) as peer:
            with pytest.raises(EscapeError) as info:
                await socks_escaper(peer.port).connect("x.example", 80, "10.0.0.1", Recorder, timeout=2)
            return info.value

    err = asyncio.run(main())
    assert err.code == "upstream_auth" and "set username and password" in err.message


def test_proxy_https_verifies_the_proxy_and_runs_the_origin_tls_inside(tmp_path):
    ca = LocalCA(tmp_path / "ca")
    proxy_cert, proxy_key = ca.issue("proxy.test", stem="proxy")
    origin_cert, origin_key = ca.issue("origin.test", stem="origin")
    proxy_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    proxy_ctx.load_cert_chain(proxy_cert, proxy_key)
    origin_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    origin_ctx.load_cert_chain(origin_cert, origin_key)

    async def main():
        origin = await asyncio.start_server(
            lambda r, w: w.write(b"hello over tls\n"), "127.0.0.1", 0, ssl=origin_ctx
        )
        origin_port = origin.sockets[0].getsockname()[1]

        async def proxy_handle(reader, writer):  # a TLS proxy that CONNECTs for real
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ")[1].decode()
            r2, w2 = await asyncio.open_connection("127.0.0.1", int(target.rsplit(":", 1)[1]))
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n")

            async def pipe(a, b):
                while data := await a.read(65536):
                    b.write(data)
                    await b.drain()

            await asyncio.gather(pipe(reader, w2), pipe(r2, writer), return_exceptions=True)

        proxy = await asyncio.start_server(proxy_handle, "127.0.0.1", 0, ssl=proxy_ctx)
        proxy_port = proxy.sockets[0].getsockname()[1]
        try:
            def esc(**kw):
                config = ProxyHttpsEscaperConfig(name="tls", type="proxy_https", proxy=f"127.0.0.1:{proxy_port}", **kw)
                return ProxyHttpsEscaper(config, None)

            client_ctx = ssl.create_default_context(cafile=str(ca.cert_path))
            rec = Recorder()
            good = esc(ca_file=str(ca.cert_path), tls_name="proxy.test")
            conn = await good.connect("origin.test", origin_port, "10.0.0.1", lambda: rec, timeout=5, ssl=client_ctx)
            await rec.read_until(b"hello over tls\n")
            inner = conn.transport.get_extra_info("ssl_object")
            conn.transport.close()
            with pytest.raises(EscapeError) as untrusted:
                await esc(tls_name="proxy.test").connect("origin.test", origin_port, "10.0.0.1", Recorder, timeout=5)
            with pytest.raises(EscapeError) as wrong_name:
                await esc(ca_file=str(ca.cert_path), tls_name="other.test").connect(
                    "origin.test", origin_port, "10.0.0.1", Recorder, timeout=5
                )
            with pytest.raises(EscapeError) as origin_name:
                await good.connect("wrong.test", origin_port, "10.0.0.1", Recorder, timeout=5, ssl=client_ctx)
            return inner.server_hostname, untrusted.value, wrong_name.value, origin_name.value
        finally:
            for s in (origin, proxy):
                s.close()
                await s.wait_closed()

    sni, untrusted, wrong_name, origin_name = asyncio.run(main())
    assert sni == "origin.test"  # the origin's TLS, inside the proxy's
    assert untrusted.code == "upstream_tls" and "certificate not trusted" in untrusted.message
    assert wrong_name.code == "upstream_tls" and hop_failed(wrong_name) == "tls"
    assert origin_name.code == "upstream_tls" and "wrong.test" in origin_name.message
