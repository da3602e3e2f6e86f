"""Finding the end of a chunked body (arcus.proto.http1_chunked.ChunkedScanner, re-exported by http1).

The scanner must report exactly the body's length however the bytes are split, refuse every
malformed framing (a bad chunk size is how requests get smuggled), and never raise anything but
ProtocolError.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arcus.errors import ProtocolError
from arcus.proto.http1 import ChunkedScanner, Limits

LIMITS = Limits()
BODY = (
    b"5\r\nhello\r\n"
    b"1a;name=value;quoted=\"a \\\"b\\\" c\"  ;  flag\r\n" + b"x" * 26 + b"\r\n"
    b"000F\r\n" + b"\r\n" * 7 + b"!\r\n"  # chunk data may hold CRLFs: it is skipped by count
    b"0;last\r\n"
    b"Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
    b"X-Checksum:  abc  \r\n"
    b"\r\n"
)
TRAILERS = [(b"Expires", b"Wed, 21 Oct 2015 07:28:00 GMT"), (b"X-Checksum", b"abc")]
AFTER = b"GET /next HTTP/1.1\r\n\r\n"


def feed_pieces(pieces: list[bytes | bytearray | memoryview], limits: Limits = LIMITS) -> tuple[int, ChunkedScanner]:
    scanner = ChunkedScanner(limits)
    total = 0
    for piece in pieces:
        n = scanner.feed(piece)
        assert 0 <= n <= len(piece)
        if n < len(piece):
            assert scanner.done, "stopped early without being done"
        total += n
    return total, scanner


def test_whole_body_at_once() -> None:
    total, scanner = feed_pieces([BODY])
    assert (total, scanner.done, scanner.trailers) == (len(BODY), True, TRAILERS)


def test_body_with_trailing_bytes_stops_at_its_end() -> None:
    scanner = ChunkedScanner(LIMITS)
    assert scanner.feed(BODY + AFTER) == len(BODY)
    assert scanner.done and scanner.trailers == TRAILERS
    assert scanner.feed(AFTER) == 0


def test_every_split_position() -> None:
    data = BODY + AFTER
    for i in range(len(data) + 1):
        scanner = ChunkedScanner(LIMITS)
        first = scanner.feed(data[:i])
        second = scanner.feed(data[first:]) if first == i else 0
        assert first + second == len(BODY), f"split at {i}"
        assert scanner.done and scanner.trailers == TRAILERS


def test_every_pair_of_split_positions() -> None:
    for i in range(len(BODY) + 1):
        for j in range(i, len(BODY) + 1):
            total, scanner = feed_pieces([BODY[:i], BODY[i:j], BODY[j:]])
            assert total == len(BODY) and scanner.done, (i, j)


def test_one_byte_at_a_time() -> None:
    scanner = ChunkedScanner(LIMITS)
    for i, byte in enumerate(BODY):
        assert not scanner.done, f"done after {i} bytes"
        assert scanner.feed(bytes([byte])) == 1
    assert scanner.done and scanner.trailers == TRAILERS


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_buffer_types(kind) -> None:
    total, scanner = feed_pieces([kind(BODY[:40]), kind(BODY[40:] + AFTER)])
    assert total == len(BODY) and scanner.trailers == TRAILERS


def test_memoryview_slice_of_a_larger_buffer() -> None:
    buf = memoryview(b"junk" + BODY + AFTER)[4:]
    scanner = ChunkedScanner(LIMITS)
    assert scanner.feed(buf) == len(BODY)


def test_empty_body_and_empty_feeds() -> None:
    scanner = ChunkedScanner(LIMITS)
    assert scanner.feed(b"") == 0
    assert scanner.feed(b"0\r\n\r\n") == 5
    assert scanner.done and scanner.trailers == []


def test_large_chunk_is_skipped_by_count() -> None:
    size = 10 * 1024 * 1024
    scanner = ChunkedScanner(LIMITS)
    assert scanner.feed(b"%x\r\n" % size) == len(b"%x\r\n" % size)
    block = memoryview(bytes(64 * 1024))
    for _ in range(size // len(block)):
        assert scanner.feed(block) == len(block)
    assert scanner.feed(b"\r\n0\r\n\r\nnext") == 7
    assert scanner.done


def test_sixteen_hex_digits_is_the_maximum() -> None:
    scanner = ChunkedScanner(LIMITS)
    assert scanner.feed(b"ffffffffffffffff\r\nabc") == 21  # a huge chunk: all of it is body
    scanner = ChunkedScanner(LIMITS)
    assert scanner.feed(b"0000000000000003\r\nabc\r\n0\r\n\r\n") == 28
    assert scanner.done


def test_extension_up_to_its_bound() -> None:
    ext = b";" + b"e" * 4095
    scanner = ChunkedScanner(LIMITS)
    data = b"1" + ext + b"\r\na\r\n0\r\n\r\n"
    assert scanner.feed(data) == len(data) and scanner.done


BAD_BODIES = {
    "0x prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "plus sign": b"+5\r\nhello\r\n0\r\n\r\n",
    "minus sign": b"-5\r\nhello\r\n0\r\n\r\n",
    "space before size": b" 5\r\nhello\r\n0\r\n\r\n",
    "tab before size": b"\t5\r\nhello\r\n0\r\n\r\n",
    "space after size": b"5 \r\nhello\r\n0\r\n\r\n",
    "not hex": b"g\r\nhello\r\n0\r\n\r\n",
    "empty size line": b"\r\nhello\r\n0\r\n\r\n",
    "underscore in size": b"1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n",
    "17 hex digits": b"00000000000000005\r\nhello\r\n0\r\n\r\n",
    "LF without CR after size": b"5\nhello\r\n0\r\n\r\n",
    "CR without LF after size": b"5\rhello\r\n0\r\n\r\n",
    "LF in extension": b"5;a\nb\r\nhello\r\n0\r\n\r\n",
    "NUL in extension": b"5;a\x00\r\nhello\r\n0\r\n\r\n",
    "extension without name": b"5;\r\nhello\r\n0\r\n\r\n",
    "extension with bad value": b"5;a=b c\r\nhello\r\n0\r\n\r\n",
    "unterminated quoted extension": b'5;a="b\r\nhello\r\n0\r\n\r\n',
    "extension too long": b"5;" + b"e" * 4096 + b"\r\nhello\r\n0\r\n\r\n",
    "data longer than size": b"5\r\nhello!\r\n0\r\n\r\n",
    "data shorter than size": b"5\r\nhell\r\n0\r\n\r\n",
    "data followed by LF only": b"5\r\nhello\n0\r\n\r\n",
    "data followed by CR only": b"5\r\nhello\r0\r\n\r\n",
    "LF without CR in last chunk": b"0\n\r\n",
    "bare LF ends trailers": b"0\r\n\n",
    "bare LF after trailer": b"0\r\nX: y\n\r\n",
    "trailer obs-fold": b"0\r\nX: y\r\n z\r\n\r\n",
    "trailer space before colon": b"0\r\nX : y\r\n\r\n",
    "trailer without colon": b"0\r\nXy\r\n\r\n",
    "trailer with CTL": b"0\r\nX: \x01\r\n\r\n",
    "HTTP request instead of a chunk": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    # long lines: checked by byte class while they arrive, whole at their LF
    "long extension with bad value": b"5;a=" + b"b" * 100 + b" c\r\nhello\r\n0\r\n\r\n",
    "NUL late in a long extension": b"5;a=" + b"b" * 100 + b"\x00\r\nhello\r\n0\r\n\r\n",
    "bare CR late in a long extension": b"5;a=" + b"b" * 100 + b"\rb\r\nhello\r\n0\r\n\r\n",
    "long trailer with space before colon": b"0\r\nX" + b"x" * 100 + b" : y\r\n\r\n",
    "CTL late in a long trailer": b"0\r\nX: " + b"y" * 100 + b"\x7f\r\n\r\n",
}


@pytest.mark.parametrize("data", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_malformed_body_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        ChunkedScanner(LIMITS).feed(data)
    assert (info.value.side, info.value.status) == ("client", 400)


@pytest.mark.parametrize("data", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_malformed_body_fed_byte_by_byte_is_refused(data: bytes) -> None:
    scanner = ChunkedScanner(LIMITS, side="upstream", status=502)
    with pytest.raises(ProtocolError) as info:
        for byte in data:
            scanner.feed(bytes([byte]))
    assert (info.value.side, info.value.status) == ("upstream", 502)
    with pytest.raises(ProtocolError):  # a broken body stays broken
        scanner.feed(b"0\r\n\r\n")


@pytest.mark.parametrize(
    ("data", "refused_at"),
    [
        (b"zz", 1),  # garbage is refused on its first byte, not after a line's worth of it
        (b"0x", 2),
        (b"5;\x00", 3),
        (b"5\r\nhelloX", 9),
        (b"12345678901234567", 17),
        (b"0\r\nX : y", 5),
        (b"5;a=" + b"b" * 100 + b"\x01", 105),
        (b"0\r\nX: " + b"y" * 100 + b"\rz", 108),
    ],
)
def test_garbage_is_refused_at_once(data: bytes, refused_at: int) -> None:
    scanner = ChunkedScanner(LIMITS)
    for i in range(len(data)):
        try:
            scanner.feed(data[i : i + 1])
        except ProtocolError:
            assert i + 1 == refused_at
            return
    raise AssertionError("never refused")


def test_trailer_count_is_bounded() -> None:
    limits = Limits(max_headers=3)
    ok = b"0\r\n" + b"X: y\r\n" * 3 + b"\r\n"
    scanner = ChunkedScanner(limits)
    assert scanner.feed(ok) == len(ok) and len(scanner.trailers) == 3
    with pytest.raises(ProtocolError, match="trailer"):
        ChunkedScanner(limits).feed(b"0\r\n" + b"X: y\r\n" * 4 + b"\r\n")


def test_trailer_size_is_bounded() -> None:
    """Trailer lines (CRLFs included) may total max_header_bytes; one byte more is refused."""
    limits = Limits(max_header_bytes=100)
    line = b"X: " + b"y" * 20 + b"\r\n"  # 25 bytes
    scanner = ChunkedScanner(limits)
    scanner.feed(b"0\r\n" + line * 4)
    assert len(scanner.trailers) == 4 and scanner.feed(b"\r\n") == 2 and scanner.done
    scanner = ChunkedScanner(limits)
    scanner.feed(b"0\r\n" + line * 4)
    with pytest.raises(ProtocolError, match="longer than"):
        scanner.feed(b"X")


def test_unending_size_line_is_refused_by_its_bound() -> None:
    scanner = ChunkedScanner(LIMITS)
    scanner.feed(b"1;e=")
    with pytest.raises(ProtocolError, match="longer than"):
        for _ in range(10):
            scanner.feed(b"v" * 1000)


# --- hypothesis ------------------------------------------------------------------------------

chunk_sizes = st.lists(st.integers(1, 300), max_size=8)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def encode(sizes: list[int], ext: bytes, trailers: list[tuple[bytes, bytes]]) -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (n, ext, bytes([65 + n % 26]) * n) for n in sizes)
    return out + b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in trailers) + b"\r\n"


@FUZZ
@given(
    sizes=chunk_sizes,
    ext=st.sampled_from([b"", b";a", b";a=b", b' ; a = "q\\"" ;b']),
    trailers=st.lists(st.tuples(st.sampled_from([b"X-A", b"Etag", b"x"]), st.sampled_from([b"", b"v", b"a b"])), max_size=3),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
)
def test_any_split_of_a_valid_body_gives_its_exact_length(sizes, ext, trailers, cuts) -> None:
    body = encode(sizes, ext, trailers)
    data = body + AFTER
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    scanner = ChunkedScanner(LIMITS)
    total = 0
    for piece in pieces:
        total += scanner.feed(piece)
        if scanner.done:
            break
    assert total == len(body)
    assert scanner.done and scanner.trailers == trailers


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.lists(st.sampled_from([b"0", b"5", b"f", b"\r\n", b"\n", b"\r", b";", b"=", b"x", b" ", b":", b"\x00"]),
                 max_size=60).map(b"".join),
    ),
    cut=st.integers(0, 400),
)
def test_arbitrary_bytes_consume_or_raise_protocol_error(data: bytes, cut: int) -> None:
    scanner = ChunkedScanner(Limits(max_header_bytes=200, max_headers=4))
    try:
        first = scanner.feed(data[:cut])
        assert 0 <= first <= len(data[:cut])
        if not scanner.done:
            second = scanner.feed(memoryview(data)[cut:])
            assert 0 <= second <= len(data[cut:])
    except ProtocolError as exc:
        assert (exc.side, exc.status) == ("client", 400)
