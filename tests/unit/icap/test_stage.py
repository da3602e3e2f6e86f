"""The ICAP stage's own logic, with a recording upstream and owner in place of the connection
(pure logic: no ICAP server is reached; the paths that need one are in tests/integration/test_icap.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from arcus.config.schema import IcapServer, IcapServiceConfig, Timeouts
from arcus.errors import ErrorCode
from arcus.icap.stage import IcapPolicy, Stage, plan
from arcus.proto import http1, icap
from arcus.testing.wait import async_wait_until


class Up:
    def __init__(self) -> None:
        self.written = b""
        self.owner = None
        self.closed = False
        self.transport = None

    def write(self, data) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    abort = close


class Owner:
    def __init__(self) -> None:
        self.data = b""
        self.eof = False
        self.errors: list[ErrorCode] = []
        self.deadline = 0.0
        self.idle_window = 0.0

    def upstream_data(self, data: bytes) -> None:
        self.data += data

    def upstream_eof(self) -> None:
        self.eof = True

    def upstream_lost(self, exc) -> None:
        pass

    def count_error(self, code: ErrorCode) -> None:
        self.errors.append(code)


def exchange(raw: bytes):
    req, _ = http1.parse_request_head(raw, http1.Limits())
    return SimpleNamespace(req=req, id="r-1", unread=req.framing != http1.NO_BODY, decision="allow", rule=None, error="")


# a service whose verdict cannot come before the test has fed the stage (nothing listens on port
# 9; the connect fails only once the test yields to the loop)
PENDING = IcapServiceConfig("av", (IcapServer("127.0.0.1", 9, "/av"),), connect_timeout=0.5)


def stage(raw: bytes, service: IcapServiceConfig | None = PENDING, **policy) -> tuple[Stage, Up, Owner]:
    ex = exchange(raw)
    s = plan(IcapPolicy("av", service, **policy), ex, lambda reason, rule: f"<p>{reason} ({rule})</p>".encode(), Timeouts())
    assert s is not None
    up, owner = Up(), Owner()
    s.attach(up)
    s.owner = owner
    return s, up, owner


GET = b"GET http://o/f.bin HTTP/1.1\r\nHost: o\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def run(coro_fn) -> None:
    async def main() -> None:
        await coro_fn()
        await asyncio.sleep(0)  # answers of the stage's own arrive on the next loop turn

    asyncio.run(main())


def decoded(stream: bytes) -> tuple[bytes, bool]:
    d = icap.ChunkDecoder()
    pieces, _ = d.feed(stream)
    return b"".join(pieces), d.done


def test_a_chunked_response_beyond_the_bound_streams_on_rechunked_byte_for_byte():
    async def go() -> None:
        s, up, owner = stage(GET, max_body=10, oversize="pass")
        s.write(GET)
        assert up.written == GET  # a request without a body goes at once
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"abcd", b"efghij", b"klmnopq", b"rs"))
        stream = CHUNKED + body + b"0\r\nX-Trailer: 1\r\n\r\n"
        for i in range(0, len(stream), 3):  # split anywhere, even inside size lines
            s.upstream_data(stream[i : i + 3])
        assert owner.data.startswith(CHUNKED)
        content, done = decoded(owner.data[len(CHUNKED):])
        assert (content, done, s.verdict) == (b"abcdefghijklmnopqrs", True, "oversize:pass")

    run(go)


def test_a_response_beyond_the_bound_refused_spoils_the_connection():
    async def go() -> None:
        s, up, owner = stage(GET, max_body=10, oversize="refuse")
        s.write(GET)
        s.upstream_data(CHUNKED + b"8\r\n12345678\r\n8\r\n12345678\r\n")
        await asyncio.sleep(0)
        assert owner.data.startswith(b"HTTP/1.1 403 Forbidden\r\n") and b"X-Arcus-Error: icap_too_large" in owner.data
        assert b"larger than 10 bytes" in owner.data and owner.errors == [ErrorCode.ICAP_TOO_LARGE]
        assert s.ex.decision == "deny" and s.ex.rule == "icap:av"
        s.upstream_data(b"0\r\n\r\n")  # the rest of the origin's response goes nowhere
        assert owner.data.count(b"HTTP/1.1") == 1
        assert s.unwrap() is None and up.closed

    run(go)


def test_announced_too_large_passes_untouched():
    async def go() -> None:
        s, up, owner = stage(GET, max_body=10)
        s.write(GET)
        resp = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + b"x" * 20
        s.upstream_data(resp)
        assert owner.data == resp and s.verdict == "oversize:pass"

    run(go)


def test_no_such_service_fails_open_with_the_original_bytes_or_closed_with_a_503():
    async def go() -> None:
        s, up, owner = stage(GET, None, fail="open")
        s.write(GET)
        resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        s.upstream_data(resp)
        assert owner.data == resp and s.verdict.startswith("fail_open:") and "no icap service" in s.verdict
        s, up, owner = stage(GET, None, fail="closed")
        s.write(GET)
        s.upstream_data(resp)
        await asyncio.sleep(0)
        assert owner.data.startswith(b"HTTP/1.1 503 ") and b"X-Arcus-Error: icap_failed" in owner.data
        assert s.ex.error == ErrorCode.ICAP_FAILED

    run(go)


def test_an_upload_announced_too_large_is_refused_before_anything_goes_upstream():
    async def go() -> None:
        put = b"PUT http://o/up HTTP/1.1\r\nHost: o\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
        s, up, owner = stage(put, max_body=50, oversize="refuse")
        s.write(put)
        s.write(b"y" * 100)
        await asyncio.sleep(0)
        assert up.written == b""
        assert owner.data.startswith(b"HTTP/1.1 403") and s.verdict == "oversize:refused"
        assert s.unwrap() is up  # nothing was sent on it: it can be pooled

    run(go)


def test_an_upload_with_expect_gets_its_100_from_the_stage_and_the_origin_is_not_asked():
    async def go() -> None:
        put = b"PUT http://o/up HTTP/1.1\r\nHost: o\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        s, up, owner = stage(put, None, fail="open")
        s.write(put)  # no service: fail open at once, the head goes without its Expect
        await asyncio.sleep(0)
        assert owner.data == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert b"Expect" not in up.written and up.written.startswith(b"PUT http://o/up HTTP/1.1\r\n")

    run(go)


def test_not_sampled_and_tunnels_get_no_stage():
    ex = exchange(GET)
    render = lambda reason, rule: b""  # noqa: E731
    assert plan(IcapPolicy("av", None, sample=0.5), ex, render, Timeouts(), rand=lambda: 0.7) is None
    assert plan(IcapPolicy("av", None, sample=0.5), ex, render, Timeouts(), rand=lambda: 0.2) is not None
    assert plan(IcapPolicy("av", None), exchange(b"CONNECT o:443 HTTP/1.1\r\nHost: o:443\r\n\r\n"), render, Timeouts()) is None


def test_the_record_keeps_the_worse_of_the_request_and_the_response_verdicts():
    """An upload passed unscanned (or modified, or failed open) stays so in the record when its
    response is then scanned clean; a block or an error of the response wins over anything."""
    s, _, _ = stage(GET)
    s._set_verdict("oversize:pass")  # the request
    s._set_verdict("clean")  # the response
    assert s.verdict == "oversize:pass"
    s._set_verdict("fail_open:no server answered")
    s._set_verdict("modified")
    assert s.verdict == "fail_open:no server answered"
    s._set_verdict("blocked:Eicar")
    assert s.verdict == "blocked:Eicar"
    t, _, _ = stage(GET)
    t._set_verdict("clean")
    t._set_verdict("skipped:Transfer-Ignore: jpg")
    assert t.verdict == "skipped:Transfer-Ignore: jpg"


def test_a_close_delimited_response_lost_without_close_notify_ends_there_and_is_scanned():
    """A TLS origin that closes without close_notify ends its connection with an error, not an
    EOF: for a close-delimited body that is its end, as the connection takes it without ICAP
    (it was answered 502 'closed before answering' with ICAP on)."""
    import ssl

    async def go() -> None:
        s, up, owner = stage(GET)  # the service cannot be reached: fail open, once it has the body
        s.write(GET)
        resp = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close"
        s.upstream_data(resp)
        assert owner.data == b""  # held for the scan
        s.upstream_lost(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
        # the connect to the closed port fails on a later loop turn
        await async_wait_until(lambda: owner.data, timeout=5, what="the response replayed")
        assert owner.data == resp and owner.eof
        assert s.verdict.startswith("fail_open:")

    run(go)
