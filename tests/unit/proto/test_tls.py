"""TLS ClientHello reader (arcus.proto.tls).

Real ClientHellos come from Python's ssl module (OpenSSL) through memory BIOs; the same
handshake bytes are then re-split into many small records, as a client or a middlebox may send
them. Malformed hellos are built by hand, one defect each, asserting the refusal. Hypothesis
feeds arbitrary bytes, mutated real hellos and random record splits.
"""

from __future__ import annotations

import ssl
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arcus.errors import ProtocolError
from arcus.proto.tls import MAX_HELLO_BYTES, MAX_RECORD, ClientHello, looks_like_tls, parse_client_hello

CCS_RECORD = b"\x14\x03\x03\x00\x01\x01"
TRAILING = CCS_RECORD + b"\x17\x03\x03\x00\x05early"


def real_hello(
    server_hostname: str | None = "example.com",
    alpn: tuple[str, ...] = ("h2", "http/1.1"),
    maximum: ssl.TLSVersion | None = None,
) -> bytes:
    """The first flight of an OpenSSL client, as it would go on the wire."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if server_hostname is None:
        ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if maximum is not None:
        ctx.maximum_version = maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def handshake_of(records: bytes) -> bytes:
    """The handshake bytes carried by a run of handshake records."""
    out, pos = [], 0
    while pos < len(records):
        assert records[pos] == 0x16
        (length,) = struct.unpack_from(">H", records, pos + 3)
        out.append(records[pos + 5 : pos + 5 + length])
        pos += 5 + length
    return b"".join(out)


def split(handshake: bytes, sizes: int | list[int], version: bytes = b"\x03\x01") -> bytes:
    """``handshake`` in records of ``sizes`` bytes (one size repeated, or a list cycled)."""
    sizes = [sizes] if isinstance(sizes, int) else sizes
    out, pos, i = [], 0, 0
    while pos < len(handshake):
        chunk = handshake[pos : pos + sizes[i % len(sizes)]]
        out.append(b"\x16" + version + struct.pack(">H", len(chunk)) + chunk)
        pos += len(chunk)
        i += 1
    return b"".join(out)


# --- hand-built hellos ---------------------------------------------------------------------------


def u16(n: int) -> bytes:
    return struct.pack(">H", n)


def ext(kind: int, data: bytes) -> bytes:
    return u16(kind) + u16(len(data)) + data


def sni(*names: bytes, kind: int = 0) -> bytes:
    entries = b"".join(bytes((kind,)) + u16(len(n)) + n for n in names)
    return ext(0, u16(len(entries)) + entries)


def alpn(*names: bytes) -> bytes:
    body = b"".join(bytes((len(n),)) + n for n in names)
    return ext(16, u16(len(body)) + body)


def versions(*vs: int) -> bytes:
    body = b"".join(u16(v) for v in vs)
    return ext(43, bytes((len(body),)) + body)


def body(
    *extensions: bytes,
    legacy: int = 0x0303,
    sid: bytes = b"S" * 32,
    suites: bytes = b"\x13\x01\x13\x02\xc0\x2f",
    compression: bytes = b"\x00",
    no_extensions: bool = False,
    ext_len_delta: int = 0,
) -> bytes:
    out = u16(legacy) + b"R" * 32 + bytes((len(sid),)) + sid + u16(len(suites)) + suites
    out += bytes((len(compression),)) + compression
    if no_extensions:
        return out
    exts = b"".join(extensions)
    return out + u16(len(exts) + ext_len_delta) + exts


def hs(payload: bytes, kind: int = 1) -> bytes:
    return bytes((kind,)) + len(payload).to_bytes(3, "big") + payload


def record(payload: bytes, version: bytes = b"\x03\x01", kind: int = 0x16) -> bytes:
    return bytes((kind,)) + version + u16(len(payload)) + payload


def hello(*extensions: bytes, **kw) -> bytes:
    return record(hs(body(*extensions, **kw)))


# --- helpers --------------------------------------------------------------------------------------


def parse_three_ways(data: bytes, bytewise: bool = True) -> ClientHello:
    """Whole, one byte at a time (None until the last), bytearray, with trailing bytes."""
    whole = parse_client_hello(data)
    assert whole is not None
    assert whole.consumed == len(data)
    if bytewise:
        for i in range(len(data)):
            assert parse_client_hello(data[:i]) is None, f"complete after {i} of {len(data)} bytes"
    assert parse_client_hello(bytearray(data)) == whole
    assert parse_client_hello(data + TRAILING) == whole
    return whole


def refused(data: bytes, match: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_hello(data)
    assert (info.value.side, info.value.status) == ("client", 400)
    assert match in info.value.message, info.value.message
    return info.value


def refused_at(data: bytes) -> int:
    for i in range(1, len(data) + 1):
        try:
            result = parse_client_hello(data[:i])
        except ProtocolError:
            return i
        assert result is None, "malformed hello accepted"
    raise AssertionError("never raised")


# --- real hellos ----------------------------------------------------------------------------------


def test_real_tls13_hello() -> None:
    data = real_hello("example.com")
    got = parse_three_ways(data)
    assert got.sni == "example.com"
    assert got.alpn == ("h2", "http/1.1")
    assert got.legacy_version == 0x0303
    assert 0x0304 in got.supported_versions and 0x0303 in got.supported_versions


def test_real_tls12_hello_has_no_supported_versions() -> None:
    got = parse_three_ways(real_hello("www.example.org", alpn=(), maximum=ssl.TLSVersion.TLSv1_2))
    assert (got.sni, got.alpn, got.legacy_version, got.supported_versions) == ("www.example.org", (), 0x0303, ())


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_real_hello_to_an_ip_address_has_no_sni(address: str) -> None:
    """OpenSSL (through Python) sends no server_name for an IP address, as RFC 6066 wants."""
    got = parse_three_ways(real_hello(address), bytewise=False)
    assert got.sni is None


@pytest.mark.parametrize("sizes", [1, 2, 7, 64, 200, [3, 1, 250], [511, 1]])
def test_real_hello_fragmented_into_small_records(sizes: int | list[int]) -> None:
    original = real_hello("fragmented.example.net")
    expected = parse_client_hello(original)
    data = split(handshake_of(original), sizes)
    got = parse_three_ways(data, bytewise=sizes != 1)
    assert got == ClientHello(expected.sni, expected.alpn, expected.legacy_version, expected.supported_versions, len(data))
    assert got.sni == "fragmented.example.net"


def test_one_byte_records_byte_by_byte() -> None:
    """The worst fragmentation, fed in the worst way: still None until the very last byte."""
    data = split(handshake_of(real_hello("a.example")), 1)
    assert len(data) == 6 * len(handshake_of(real_hello("a.example")))
    for i in range(0, len(data), 5):
        assert parse_client_hello(data[:i]) is None
    assert parse_client_hello(data[:-1]) is None
    assert parse_client_hello(data).sni == "a.example"


@pytest.mark.parametrize("version", [b"\x03\x00", b"\x03\x01", b"\x03\x03"])
def test_record_versions_accepted(version: bytes) -> None:
    data = split(handshake_of(real_hello()), 300, version)
    assert parse_client_hello(data).sni == "example.com"


# --- hand-built valid hellos ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (b"example.com", "example.com"),
        (b"Example.COM", "example.com"),
        (b"localhost", "localhost"),
        (b"xn--bcher-kva.example", "xn--bcher-kva.example"),
        (b"_acme-challenge.x.example", "_acme-challenge.x.example"),
        (b"r3---sn-abc.googlevideo.com", "r3---sn-abc.googlevideo.com"),
        (b"1.2.3.example", "1.2.3.example"),
        (b"123.com", "123.com"),
        (b"a" * 63 + b".example", "a" * 63 + ".example"),
        ((b"a" * 62 + b".") * 4 + b"b", ("a" * 62 + ".") * 4 + "b"),  # 253 bytes, the most
    ],
)
def test_sni_names_accepted(name: bytes, expected: str) -> None:
    assert parse_three_ways(hello(sni(name))).sni == expected


def test_hello_without_extensions() -> None:
    got = parse_three_ways(hello(no_extensions=True, legacy=0x0301))
    assert got == ClientHello(None, (), 0x0301, (), got.consumed)


def test_hello_with_empty_extension_block_and_unknown_extensions() -> None:
    assert parse_three_ways(hello()).sni is None
    got = parse_three_ways(hello(ext(0x0A0A, b""), ext(65281, b"\x00"), sni(b"x.example"), ext(21, bytes(100))))
    assert got.sni == "x.example"


def test_alpn_and_versions_as_sent() -> None:
    got = parse_three_ways(hello(alpn(b"h2", b"http/1.1", b"\x8a\x8a"), versions(0x3A3A, 0x0304, 0x0303)))
    assert got.alpn == ("h2", "http/1.1", "\udc8a\udc8a")  # GREASE kept, bytes round-trip
    assert got.alpn[2].encode("ascii", "surrogateescape") == b"\x8a\x8a"
    assert got.supported_versions == (0x3A3A, 0x0304, 0x0303)


def test_handshake_header_split_across_records() -> None:
    hs_bytes = hs(body(sni(b"split.example")))
    data = record(hs_bytes[:1]) + record(hs_bytes[1:3]) + record(hs_bytes[3:10]) + record(hs_bytes[10:])
    assert parse_three_ways(data).sni == "split.example"


# --- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match", "at"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not a TLS handshake (first byte 0x47)", 1),
        (b"\x05\x01\x00", "not a TLS handshake (first byte 0x05)", 1),
        (b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10", "SSLv2", 1),
        (b"\x15\x03\x01\x00\x02\x02\x28", "content type 21", 1),
        (b"\x17\x03\x03\x00\x05hello", "content type 23", 1),
        (b"\x16\x02\x00\x00\x05", "version 2", 2),
        (b"\x16\x03\x05\x00\x05", "version 3.5", 3),
        (b"\x16\x03\x01\x00\x00", "empty TLS handshake record", 5),
        (b"\x16\x03\x01\x40\x01" + b"\x01", "16385 bytes", 5),
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "type 2, not ClientHello", 6),
        (b"\x16\x03\x01\x00\x04\x01\x01\x00\x00", "does not fit", 9),
        (b"\x16\x03\x01\x00\x08\x01\x00\x00\x03abc" + b"\x16", "data after the ClientHello", 9),
    ],
)
def test_refused_early(data: bytes, match: str, at: int) -> None:
    refused(data, match)
    assert refused_at(data) == at


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (hello(sni(b"127.0.0.1")), "IP literal in SNI"),
        (hello(sni(b"::1")), "IP literal in SNI"),
        (hello(sni(b"[2001:db8::1]")), "IP literal in SNI"),
        (hello(sni(b"10.1")), "numeric last label"),
        (hello(sni(b"example.0x7f")), "numeric last label"),
        (hello(sni(b"2130706433")), "numeric last label"),
        (hello(sni(b"example.com.")), "trailing dot"),
        (hello(sni(b"")), "not a DNS host name"),
        (hello(sni(b"exa mple.com")), "not a DNS host name"),
        (hello(sni(b"example..com")), "not a DNS host name"),
        (hello(sni(b".example.com")), "not a DNS host name"),
        (hello(sni(b"-bad.example")), "not a DNS host name"),
        (hello(sni(b"bad-.example")), "not a DNS host name"),
        (hello(sni(b"a" * 64 + b".example")), "not a DNS host name"),
        (hello(sni(b"b\xc3\xbccher.example")), "not a DNS host name"),
        (hello(sni(b"nul\x00.example")), "not a DNS host name"),
        (hello(sni(b"user@example.com")), "not a DNS host name"),
        (hello(sni((b"a" * 62 + b".") * 4 + b"bb")), "longer than 253"),
        (hello(sni(b"a.example", b"b.example")), "more than one host_name"),
        (hello(sni(b"a.example", kind=1)), "unknown type 1"),
        (hello(ext(0, b"")), "malformed server_name"),
        (hello(ext(0, b"\x00\x00")), "empty server_name list"),
        (hello(ext(0, b"\x00\x05\x00\x00\x09abc")), "malformed server_name"),
        (hello(ext(0, b"\x00\x02\x00\x00")), "malformed server_name"),
        (hello(ext(0, b"\x00\x06\x00\x00\x01a\x00\x00")), "malformed server_name"),
        (hello(sni(b"a.example"), sni(b"b.example")), "duplicate TLS extension 0"),
        (hello(ext(77, b""), ext(77, b"x")), "duplicate TLS extension 77"),
        (hello(ext(16, b"\x00\x00")), "malformed ALPN extension"),
        (hello(ext(16, b"\x00\x03\x00\x01a")), "malformed ALPN protocol name"),
        (hello(ext(16, b"\x00\x03\x05h2")), "malformed ALPN protocol name"),
        (hello(ext(16, b"\x00\x09\x02h2")), "malformed ALPN extension"),
        (hello(ext(43, b"\x03\x03\x04\x03")), "malformed supported_versions"),
        (hello(ext(43, b"\x00")), "malformed supported_versions"),
        (hello(ext(43, b"\x04\x03\x04")), "malformed supported_versions"),
        (hello(legacy=0x0200), "legacy_version 0x0200"),
        (hello(sid=b"s" * 33), "session id of 33 bytes"),
        (hello(suites=b""), "cipher_suites of 0 bytes"),
        (hello(suites=b"\x13\x01\x13"), "cipher_suites of 3 bytes"),
        (hello(compression=b""), "without a compression method"),
        (hello(sni(b"a.example"), ext_len_delta=1), "extensions length"),
        (hello(sni(b"a.example"), ext_len_delta=-1), "extensions length"),
        (hello(sni(b"a.example")[:-2], ext_len_delta=0), "truncated"),
        (record(hs(b"\x03\x03" + b"R" * 20)), "truncated in its random"),
        (record(hs(body(no_extensions=True) + b"\x00")), "truncated in its extensions"),
        (record(hs(body(no_extensions=True)[:-1])), "truncated"),
        (record(hs(b"")), "truncated"),
    ],
)
def test_malformed_hellos(data: bytes, match: str) -> None:
    refused(data, match)


def test_truncated_extension_list() -> None:
    ext_bytes = sni(b"a.example")
    data = record(hs(body(no_extensions=True) + u16(len(ext_bytes)) + ext_bytes[:3]))
    refused(data, "extensions length")
    # A header saying 9 bytes of extension where 5 remain.
    inner = u16(0) + u16(9) + b"abcde"
    refused(record(hs(body(no_extensions=True) + u16(len(inner)) + inner)), "truncated in its extension 0")


def test_non_handshake_record_between_fragments() -> None:
    hs_bytes = handshake_of(real_hello())
    data = record(hs_bytes[:100]) + CCS_RECORD + record(hs_bytes[100:])
    refused(data, "content type 20 before the ClientHello is complete")
    assert refused_at(data) == 106


def test_data_after_the_hello_in_its_last_record() -> None:
    hs_bytes = handshake_of(real_hello())
    refused(record(hs_bytes + b"\x16"), "data after the ClientHello")
    data = record(hs_bytes[:100]) + record(hs_bytes[100:] + b"\x01\x00\x00\x00")
    refused(data, "data after the ClientHello")
    assert refused_at(data) == 110  # as soon as the last record's header says too much


def test_total_is_bounded() -> None:
    # A declared hello that cannot fit is refused at its handshake header.
    refused(b"\x16\x03\x01\x00\x04\x01\x00\xff\xfc", "does not fit")
    # A hello that fits, spread over so many records that the records do not: refused as soon
    # as a record header points past the bound.
    big = hs(body(ext(21, bytes(40000))))
    assert parse_client_hello(split(big, MAX_RECORD)) is not None
    data = split(big, 4)
    assert parse_client_hello(data[: MAX_HELLO_BYTES - 9]) is None
    refused(data[:MAX_HELLO_BYTES], f"exceed {MAX_HELLO_BYTES} bytes")
    refused(data, f"exceed {MAX_HELLO_BYTES} bytes")


@pytest.mark.parametrize(
    "stream",
    [
        split(hs(bytes(70000)), MAX_RECORD),  # declares too much
        split(hs(body(ext(21, bytes(60000)))), 1),  # declares little enough, in too many records
        split(hs(body(ext(21, bytes(65440)))), MAX_RECORD),  # fits by its own count, not with 5 headers
    ],
    ids=["declared", "records", "headers"],
)
def test_never_need_more_past_the_bound(stream: bytes) -> None:
    """With MAX_HELLO_BYTES + 5 bytes in, the answer is a hello or a refusal, never 'need more'."""
    refused(stream[: MAX_HELLO_BYTES + 5], "")


# --- looks_like_tls ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"\x16", None),
        (b"\x16\x03", None),
        (b"\x16\x03\x01", True),
        (b"\x16\x03\x00\x00", True),
        (b"\x16\x03\x04", True),
        (b"\x16\x03\x05", False),
        (b"\x16\x02", False),
        (b"G", False),
        (b"GET / HTTP/1.1\r\n", False),
        (b"\x05\x01\x00", False),
        (b"\x80\x2e\x01", False),
    ],
)
def test_looks_like_tls(data: bytes, expected: bool | None) -> None:
    assert looks_like_tls(data) is expected


def test_looks_like_tls_on_a_real_hello() -> None:
    assert looks_like_tls(real_hello()) is True


# --- hypothesis -------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REAL = real_hello("fuzz.example")
REAL_HS = handshake_of(REAL)
EXPECTED = parse_client_hello(REAL)


def _parse_or_protocol_error(data: bytes) -> ClientHello | ProtocolError | None:
    try:
        return parse_client_hello(data)
    except ProtocolError as e:
        assert (e.side, e.status) == ("client", 400) and e.message
        return e


@given(data=st.binary(max_size=2000) | st.builds(lambda t: b"\x16\x03\x01" + t, st.binary(max_size=2000)))
@FUZZ
def test_arbitrary_bytes(data: bytes) -> None:
    result = _parse_or_protocol_error(data)
    if isinstance(result, ClientHello):
        assert 0 < result.consumed <= len(data)


@given(
    edits=st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, len(REAL)),
)
@FUZZ
def test_mutated_real_hello(edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(REAL)
    for index, value in edits:
        data[index] = value
    result = _parse_or_protocol_error(bytes(data[:cut]) if cut else bytes(data))
    if isinstance(result, ClientHello):
        assert 0 < result.consumed <= len(data)


@given(sizes=st.lists(st.integers(1, 600), min_size=1, max_size=30))
@FUZZ
def test_any_record_split_reads_the_same_hello(sizes: list[int]) -> None:
    data = split(REAL_HS, sizes)
    got = parse_client_hello(data + TRAILING)
    assert got == ClientHello(EXPECTED.sni, EXPECTED.alpn, EXPECTED.legacy_version, EXPECTED.supported_versions, len(data))
    assert parse_client_hello(data[:-1]) is None


@given(data=st.binary(max_size=300) | st.builds(lambda t: REAL[:60] + t, st.binary(max_size=200)))
@FUZZ
def test_refusal_is_monotone(data: bytes) -> None:
    """Once a prefix is refused, no longer input is accepted."""
    refused_once = False
    for i in range(len(data) + 1):
        result = _parse_or_protocol_error(data[:i])
        if refused_once:
            assert isinstance(result, ProtocolError), f"prefix {i} accepted after a refusal"
        refused_once = isinstance(result, ProtocolError)
