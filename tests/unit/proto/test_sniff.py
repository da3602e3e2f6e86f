"""Protocol recognition from a tunnel's first bytes (arcus.proto.sniff).

Client bytes are real captures (tests/unit/proto/sniff_captures.py: openssl s_client, curl, the
OpenSSH client, curl's SMTP/IMAP/POP3/FTP commands); server greetings, the RDP request (the
example of MS-RDPBCGR 4.1.1), the BitTorrent handshake (BEP 3) and the DNS query (RFC 1035 4.2.2)
are built as their specifications spell them. Every capture is also fed whole, one byte at a
time, cut in two everywhere, and with trailing bytes; hostile inputs must give a bounded answer
and never raise.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcus.proto.sniff import (
    MAX_CHUNKS,
    MAX_CLIENT_BYTES,
    MAX_SERVER_BYTES,
    PROTOCOLS,
    Sniffed,
    Sniffer,
    sniff_client,
    sniff_server,
)
from tests.unit.proto.sniff_captures import CAPTURED, GREETINGS

RDP_REQUEST = bytes.fromhex(
    "0300002c27e00000000000436f6f6b69653a206d737473686173683d656c746f6e730d0a0100080000000000"
)
BT_HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + bytes(range(20)) + b"-AR0001-" + b"123456789012"


def dns_query(name: str = "www.example.com", qtype: int = 1, edns: bool = False) -> bytes:
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    msg = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 1 if edns else 0) + qname + struct.pack(">HH", qtype, 1)
    if edns:
        msg += b"\x00" + struct.pack(">HHIH", 41, 1232, 0, 0)
    return struct.pack(">H", len(msg)) + msg


CLIENT_FIRST = {
    "openssl_s_client": Sniffed("tls", sni="www.example.com", alpn=("h2", "http/1.1")),
    "curl_https": Sniffed("tls", sni="api.example.org", alpn=("h2", "http/1.1")),
    "curl_http1": Sniffed("http", method="GET"),
    "curl_h2_prior_knowledge": Sniffed("http2"),
    "ssh_client": Sniffed("ssh", banner="SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6"),
}
BUILT = {
    "rdp": (RDP_REQUEST, Sniffed("rdp")),
    "bittorrent": (BT_HANDSHAKE, Sniffed("bittorrent")),
    "dns": (dns_query(), Sniffed("dns")),
    "dns_edns": (dns_query("example.org", 28, edns=True), Sniffed("dns")),
}


def client_cases() -> list[tuple[str, bytes, Sniffed]]:
    return [(k, CAPTURED[k], v) for k, v in CLIENT_FIRST.items()] + [(k, b, v) for k, (b, v) in BUILT.items()]


@pytest.mark.parametrize(("name", "data", "expected"), client_cases(), ids=[c[0] for c in client_cases()])
def test_client_first_protocols_whole_and_with_trailing_bytes(name: str, data: bytes, expected: Sniffed) -> None:
    assert sniff_client(data) == expected
    if expected.protocol != "tls":  # a hello's last record must end with it (arcus.proto.tls)
        assert sniff_client(data + b"\x00trailing") == expected


@pytest.mark.parametrize(("name", "data", "expected"), client_cases(), ids=[c[0] for c in client_cases()])
def test_every_prefix_is_undecided_or_the_same_protocol(name: str, data: bytes, expected: Sniffed) -> None:
    decided_at = None
    for n in range(1, len(data) + 1):
        got = sniff_client(data[:n])
        if got is not None:
            assert got.protocol == expected.protocol, (n, got)
            decided_at = decided_at or n
    assert decided_at is not None


@pytest.mark.parametrize(("name", "data", "expected"), client_cases(), ids=[c[0] for c in client_cases()])
def test_sniffer_cut_in_two_anywhere_gives_the_whole_answer(name: str, data: bytes, expected: Sniffed) -> None:
    for cut in range(1, len(data)):
        s = Sniffer()
        first = s.client_data(data[:cut])
        second = s.client_data(data[cut:])
        assert (first or second) == expected or s.result == expected, cut
        assert s.finish() == expected


@pytest.mark.parametrize(("name", "data", "expected"), client_cases(), ids=[c[0] for c in client_cases()])
def test_one_byte_at_a_time_is_bounded_and_never_wrong(name: str, data: bytes, expected: Sniffed) -> None:
    s = Sniffer()
    calls = 0
    for i in range(len(data)):
        calls += 1
        if s.client_data(data[i : i + 1]) is not None:
            break
    assert calls <= MAX_CHUNKS  # the watch ends after MAX_CHUNKS chunks at the latest
    got = s.finish()
    # the protocol is named (or unknown when eight bytes could not tell), never a wrong one
    assert got.protocol in (expected.protocol, "unknown")
    if name in ("ssh_client", "curl_http1", "openssl_s_client", "curl_https"):
        assert got.protocol == expected.protocol  # eight bytes say "SSH-2.0-", "GET /", a TLS record


@pytest.mark.parametrize(
    ("greeting", "client", "expected"),
    [
        (GREETINGS["smtp_client"], CAPTURED["curl_smtp_after_greeting"], "smtp"),
        (GREETINGS["imap_client"], CAPTURED["curl_imap_after_greeting"], "imap"),
        (GREETINGS["pop3_client"], CAPTURED["curl_pop3_after_greeting"], "pop3"),
        (GREETINGS["ftp_client"], CAPTURED["curl_ftp_after_greeting"], "ftp"),
        (b"220-FileZilla Server 1.8.0\r\n220 Please visit https://filezilla-project.org/\r\n", b"AUTH TLS\r\n", "ftp"),
        (b"220 mail.example.net Microsoft ESMTP MAIL Service ready\r\n", b"EHLO x\r\n", "smtp"),
        (b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", b"SSH-2.0-OpenSSH_9.2p1\r\n", "ssh"),
        (b"* PREAUTH IMAP4rev1 server logged in as alice\r\n", b"a CAPABILITY\r\n", "imap"),
        # 220 naming neither: the client's first command says which
        (b"220 host ready\r\n", CAPTURED["curl_smtp_after_greeting"], "smtp"),
        (b"220 host ready\r\n", CAPTURED["curl_ftp_after_greeting"], "ftp"),
        (b"220 host ready\r\n", b"HELLO\r\n", "unknown"),
    ],
)
def test_server_first_greetings(greeting: bytes, client: bytes, expected: str) -> None:
    s = Sniffer()
    for i in range(0, len(greeting), 16):  # the greeting in pieces, as a slow server sends it
        s.server_data(greeting[i : i + 16])
    s.client_data(client)
    got = s.finish()
    assert got.protocol == expected
    assert got.side == "server"
    assert got.banner == greeting.split(b"\r\n")[0].decode()


def test_a_server_greeting_is_ignored_once_the_client_spoke_first() -> None:
    s = Sniffer()
    assert s.client_data(b"GE") is None
    assert s.server_data(b"+OK hello\r\n") is None
    assert s.client_data(b"T / HTTP/1.1\r\n") == Sniffed("http", method="GET")


def test_client_bytes_are_ignored_once_the_server_spoke_first() -> None:
    s = Sniffer()
    assert s.server_data(b"* O") is None
    assert s.client_data(CAPTURED["curl_http1"]) is None
    assert s.server_data(b"K ready\r\n") == Sniffed("imap", "server", banner="* OK ready")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", "tls"),  # a TLS header, a hello we refuse: tls, no name
        (b"GET\t/ HTTP/1.1\r\n", "unknown"),
        (b"GET / HTTP/2.0\r\n", "unknown"),
        (b"GET /a b HTTP/1.1\r\n", "unknown"),
        (b"FETCH / HTTP/1.1\r\n", "unknown"),
        (b"CONNECT  x HTTP/1.1\r\n", "unknown"),
        (b"SSH-3.0-x\r\n", "unknown"),
        (b"\x03\x00\x00\x2c\x27\xd0", "unknown"),  # TPKT with a confirm, not a request
        (b"\x00\x05\x00", "unknown"),  # a DNS length too short for a question
        (dns_query()[:4] + b"\x81\x80" + dns_query()[6:], "unknown"),  # a response, not a query
        (b"\x00\x1d" + bytes(4) + b"\x00\x01" + bytes(6) + b"\x40" + bytes(14), "unknown"),  # label of 64
        (b"\x13BitTorrent protocoL", "unknown"),
        (bytes(range(256)), "unknown"),
    ],
)
def test_hostile_or_near_miss_client_bytes(data: bytes, expected: str) -> None:
    s = Sniffer()
    s.client_data(data)
    assert s.finish().protocol == expected


def test_a_request_line_that_never_ends_is_http_at_the_bound_and_memory_stays_bounded() -> None:
    s = Sniffer()
    assert s.client_data(b"GET /" + b"a" * 100) is None
    for _ in range(3):
        assert s.client_data(b"a" * MAX_CLIENT_BYTES) is None or s.done
    assert s.result == Sniffed("http", method="GET")
    assert len(s._client) == 0  # released once decided


def test_a_greeting_that_never_ends_is_unknown_at_the_bound() -> None:
    s = Sniffer()
    s.server_data(b"220 " + b"x" * (MAX_SERVER_BYTES + 10))
    assert s.result == Sniffed("unknown", "server")


def test_a_tls_hello_longer_than_the_bound_is_tls_without_a_name() -> None:
    head = b"\x16\x03\x01\x40\x00\x01\x00\x3f\xfc\x03\x03"
    s = Sniffer()
    s.client_data(head + bytes(MAX_CLIENT_BYTES))
    assert s.result == Sniffed("tls")


def test_finish_without_bytes_is_unknown_and_results_are_given_once() -> None:
    assert Sniffer().finish() == Sniffed("unknown")
    s = Sniffer()
    assert s.client_data(CAPTURED["ssh_client"]) is not None
    assert s.client_data(b"more") is None and s.server_data(b"SSH-2.0-x\r\n") is None
    assert s.finish().protocol == "ssh"


def test_server_prefix_rules() -> None:
    assert sniff_server(b"+O") is None
    assert sniff_server(b"+OK ready") is None  # the line goes on
    assert sniff_server(b"+OK ready\r\n") == Sniffed("pop3", "server", banner="+OK ready")
    assert sniff_server(b"220") is None
    assert sniff_server(b"2201 x\r\n") == Sniffed("unknown", "server")
    assert sniff_server(b"HTTP/1.1 200 OK\r\n") == Sniffed("unknown", "server")
    assert sniff_server(b"220 x\x00\xff ESMTP\r\n") == Sniffed("smtp", "server", banner="220 x?? ESMTP")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_client_bytes_never_raise(data: bytes) -> None:
    got = sniff_client(data)
    assert got is None or got.protocol in PROTOCOLS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=300)), max_size=20))
def test_arbitrary_chunks_both_ways_never_raise_and_stay_bounded(chunks: list[tuple[bool, bytes]]) -> None:
    s = Sniffer()
    for from_client, data in chunks:
        (s.client_data if from_client else s.server_data)(data)
        assert len(s._client) <= MAX_CLIENT_BYTES and len(s._server) <= MAX_SERVER_BYTES
    assert s.finish().protocol in PROTOCOLS


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_captures_split_at_random_never_give_another_protocol(data: st.DataObject) -> None:
    name, raw, expected = data.draw(st.sampled_from(client_cases()))
    cuts = sorted(data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=MAX_CHUNKS - 1, unique=True)))
    s = Sniffer()
    for a, b in zip([0, *cuts], [*cuts, len(raw)]):
        s.client_data(raw[a:b])
    assert s.finish() == expected
