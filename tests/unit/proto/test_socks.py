"""SOCKS4, SOCKS4a and SOCKS5 parsers and builders (arcus.proto.socks).

Every valid message is parsed three ways (whole, one byte at a time with None until the last
byte, and with trailing bytes); every malformed one is its own case asserting the side and the
status (the SOCKS5 reply code the server will send, or 400/502 when none applies); builders
round-trip through the parsers; hypothesis feeds arbitrary bytes to every parser.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arcus.errors import ProtocolError
from arcus.names import ip_text
from arcus.proto import socks
from arcus.proto.socks import (
    ADDRESS_TYPE_NOT_SUPPORTED,
    ATYP_DOMAIN,
    ATYP_IPV4,
    ATYP_IPV6,
    BIND,
    COMMAND_NOT_SUPPORTED,
    CONNECT,
    CONNECTION_REFUSED,
    GENERAL_FAILURE,
    HOST_UNREACHABLE,
    MAX_DOMAIN,
    MAX_USERID,
    NO_ACCEPTABLE,
    NO_AUTH,
    NOT_ALLOWED,
    SUCCEEDED,
    TTL_EXPIRED,
    UDP_ASSOCIATE,
    USERPASS,
    Socks4Request,
    Socks5Reply,
    Socks5Request,
    UdpHeader,
    build_udp_datagram,
    detect_version,
    parse_auth_status,
    parse_method_selection,
    parse_socks4_request,
    parse_socks5_greeting,
    parse_socks5_reply,
    parse_socks5_request,
    parse_udp_datagram,
    parse_userpass,
    socks4_reply,
    socks5_auth_status,
    socks5_client_greeting,
    socks5_client_request,
    socks5_client_userpass,
    socks5_method_selection,
    socks5_rep_for,
    socks5_reply,
)

TRAILING = b"\x05\x01\x00\x01NEXT-MESSAGE-OR-TUNNEL-DATA"


def parse_three_ways(parse, data: bytes):
    """Whole, one byte at a time (None until the last), bytearray, and with trailing bytes
    (consumed stays the message length); all agree. Returns the parsed value without consumed."""
    whole = parse(data)
    assert whole is not None
    assert whole[-1] == len(data)
    for i in range(len(data)):
        assert parse(data[:i]) is None, f"complete after {i} of {len(data)} bytes"
    assert parse(bytearray(data)) == whole
    assert parse(data + TRAILING) == whole
    return whole[0] if len(whole) == 2 else whole[:-1]


def raises(parse, data: bytes, status: int, side: str = "client", match: str = "") -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(data)
    assert (info.value.status, info.value.side) == (status, side), info.value.message
    assert match in info.value.message
    return info.value


def refused_at(parse, data: bytes) -> int:
    """Length of the shortest prefix that raises: refusal comes as soon as the bad byte arrives."""
    for i in range(1, len(data) + 1):
        try:
            result = parse(data[:i])
        except ProtocolError:
            return i
        assert result is None, "malformed input was accepted"
    raise AssertionError("never raised")


# --- version detection ------------------------------------------------------------------------


def test_detect_version() -> None:
    assert detect_version(b"") is None
    assert detect_version(b"\x04") == 4
    assert detect_version(b"\x05\x01\x00") == 5
    assert detect_version(bytearray(b"\x04\x01")) == 4


@pytest.mark.parametrize("first", [b"\x00", b"\x03", b"\x06", b"G", b"\x16", b"\xff"])
def test_detect_version_refuses_other_first_bytes(first: bytes) -> None:
    err = raises(detect_version, first + b"xx", 400)
    assert f"0x{first[0]:02x}" in err.message


# --- SOCKS5 greeting and method selection ------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "methods"),
    [
        (b"\x05\x01\x00", [NO_AUTH]),
        (b"\x05\x02\x00\x02", [NO_AUTH, USERPASS]),
        (b"\x05\x01\x02", [USERPASS]),
        (b"\x05\x03\x00\x01\x02", [0, 1, 2]),
        (b"\x05\xff" + bytes(range(255)), list(range(255))),
    ],
)
def test_greeting(data: bytes, methods: list[int]) -> None:
    assert parse_three_ways(parse_socks5_greeting, data) == methods


def test_greeting_refusals() -> None:
    raises(parse_socks5_greeting, b"\x04\x01\x00", 400, match="version 4")
    assert refused_at(parse_socks5_greeting, b"\x04\x01\x00") == 1
    raises(parse_socks5_greeting, b"\x05\x00", 400, match="no authentication method")
    assert refused_at(parse_socks5_greeting, b"\x05\x00\x00") == 2


def test_method_selection_builder() -> None:
    assert socks5_method_selection(NO_AUTH) == b"\x05\x00"
    assert socks5_method_selection(USERPASS) == b"\x05\x02"
    assert socks5_method_selection(NO_ACCEPTABLE) == b"\x05\xff"


@pytest.mark.parametrize("method", [NO_AUTH, USERPASS, NO_ACCEPTABLE])
def test_method_selection_round_trip(method: int) -> None:
    assert parse_three_ways(parse_method_selection, socks5_method_selection(method)) == method


def test_method_selection_from_a_non_socks5_server() -> None:
    raises(parse_method_selection, b"\x04\x00", 502, "upstream", "version 4")
    raises(parse_method_selection, b"HTTP/1.1 400", 502, "upstream")


def test_client_greeting() -> None:
    assert socks5_client_greeting(False) == b"\x05\x01\x00"
    assert socks5_client_greeting(True) == b"\x05\x02\x00\x02"
    assert parse_socks5_greeting(socks5_client_greeting(True)) == ([NO_AUTH, USERPASS], 4)
    assert parse_socks5_greeting(socks5_client_greeting(False)) == ([NO_AUTH], 3)


# --- RFC 1929 username/password ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "user", "password"),
    [
        (b"\x01\x05alice\x06s3cret", "alice", "s3cret"),
        (b"\x01\x01a\x01b", "a", "b"),
        (b"\x01\x05alice\x00", "alice", ""),  # empty password: the user group decides
        (b"\x01\x00\x00", "", ""),
        (b"\x01\x07j\xc3\xbcrgen\x02\xff\xfe", "jürgen", "\udcff\udcfe"),  # utf-8; raw bytes survive
        (b"\x01\xff" + b"u" * 255 + b"\xff" + b"p" * 255, "u" * 255, "p" * 255),
    ],
)
def test_userpass(data: bytes, user: str, password: str) -> None:
    assert parse_three_ways(parse_userpass, data) == (user, password)


def test_userpass_wrong_version_and_no_password_in_errors() -> None:
    err = raises(parse_userpass, b"\x05\x05alice\x0bhunter2-pwd", 400, match="version 5")
    assert "hunter2" not in err.message
    assert refused_at(parse_userpass, b"\x05\x05alice\x0bhunter2-pwd") == 1


@given(user=st.text(max_size=60), password=st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_userpass_round_trip(user: str, password: str) -> None:
    try:
        data = socks5_client_userpass(user, password)
    except ValueError:
        assert len(user.encode("utf-8", "surrogateescape")) > 255 or len(password.encode("utf-8", "surrogateescape")) > 255
        return
    assert parse_userpass(data) == (user, password, len(data))


def test_userpass_builder_bounds_never_show_the_password() -> None:
    with pytest.raises(ValueError, match="user name longer than 255"):
        socks5_client_userpass("u" * 256, "x")
    with pytest.raises(ValueError) as info:
        socks5_client_userpass("bob", "hunter2" * 40)
    assert "hunter2" not in str(info.value) and "bob" in str(info.value)
    assert socks5_client_userpass("u" * 255, "p" * 255)[1] == 255


def test_auth_status() -> None:
    assert socks5_auth_status(True) == b"\x01\x00"
    assert socks5_auth_status(False) == b"\x01\x01"
    assert parse_three_ways(parse_auth_status, socks5_auth_status(True)) is True
    assert parse_three_ways(parse_auth_status, socks5_auth_status(False)) is False
    assert parse_auth_status(b"\x01\x7f") == (False, 2)
    assert parse_auth_status(b"\x05\x00") == (True, 2)  # servers that answer with the SOCKS version
    raises(parse_auth_status, b"\x02\x00", 502, "upstream")


# --- SOCKS5 requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", Socks5Request(CONNECT, "127.0.0.1", 80, ATYP_IPV4)),
        (b"\x05\x01\x00\x01\xc0\x00\x02\x01\xff\xff", Socks5Request(CONNECT, "192.0.2.1", 65535, ATYP_IPV4)),
        (
            b"\x05\x01\x00\x04" + bytes(15) + b"\x01\x01\xbb",
            Socks5Request(CONNECT, "::1", 443, ATYP_IPV6),
        ),
        (
            b"\x05\x01\x00\x04\x20\x01\x0d\xb8" + bytes(11) + b"\x01\x00\x16",
            Socks5Request(CONNECT, "2001:db8::1", 22, ATYP_IPV6),
        ),
        (  # IPv4-mapped: written dotted, as the HTTP parser writes it
            b"\x05\x01\x00\x04" + bytes(10) + b"\xff\xff\x7f\x00\x00\x01\x00\x50",
            Socks5Request(CONNECT, "::ffff:127.0.0.1", 80, ATYP_IPV6),
        ),
        (b"\x05\x01\x00\x03\x0bexample.com\x01\xbb", Socks5Request(CONNECT, "example.com", 443, ATYP_DOMAIN)),
        (b"\x05\x01\x00\x03\x0bExample.COM\x01\xbb", Socks5Request(CONNECT, "example.com", 443, ATYP_DOMAIN)),
        # the trailing dot names the same host: one spelling for policy, logs and the resolver
        (b"\x05\x01\x00\x03\x0cexample.com.\x00\x50", Socks5Request(CONNECT, "example.com", 80, ATYP_DOMAIN)),
        (b"\x05\x01\x00\x03\x01a\x00\x50", Socks5Request(CONNECT, "a", 80, ATYP_DOMAIN)),
        (b"\x05\x01\x00\x03\x09127.0.0.1\x00\x50", Socks5Request(CONNECT, "127.0.0.1", 80, ATYP_DOMAIN)),
        (b"\x05\x01\x00\x03\x05[::1]\x00\x50", Socks5Request(CONNECT, "::1", 80, ATYP_DOMAIN)),
        (b"\x05\x01\x00\x03\x0b2001:DB8::1\x00\x50", Socks5Request(CONNECT, "2001:db8::1", 80, ATYP_DOMAIN)),
        (b"\x05\x01\x00\x03\x0e_srv.my-host.x\x00\x50", Socks5Request(CONNECT, "_srv.my-host.x", 80, ATYP_DOMAIN)),
        (b"\x05\x01\x00\x03\xff" + b"a" * 255 + b"\x00\x50", Socks5Request(CONNECT, "a" * 255, 80, ATYP_DOMAIN)),
        (b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00", Socks5Request(BIND, "0.0.0.0", 0, ATYP_IPV4)),
        (b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00", Socks5Request(UDP_ASSOCIATE, "0.0.0.0", 0, ATYP_IPV4)),
        (b"\x05\x03\x00\x01\x0a\x00\x00\x05\x13\x88", Socks5Request(UDP_ASSOCIATE, "10.0.0.5", 5000, ATYP_IPV4)),
    ],
)
def test_socks5_request(data: bytes, expected: Socks5Request) -> None:
    assert parse_three_ways(parse_socks5_request, data) == expected


@pytest.mark.parametrize(
    ("data", "status", "match", "at"),
    [
        (b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50", GENERAL_FAILURE, "version 4", 1),
        (b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50", COMMAND_NOT_SUPPORTED, "command 0", 2),
        (b"\x05\x04\x00\x01\x7f\x00\x00\x01\x00\x50", COMMAND_NOT_SUPPORTED, "command 4", 2),
        (b"\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50", GENERAL_FAILURE, "reserved", 3),
        (b"\x05\x01\x00\x02\x7f\x00\x00\x01\x00\x50", ADDRESS_TYPE_NOT_SUPPORTED, "address type 2", 4),
        (b"\x05\x01\x00\x00\x7f\x00\x00\x01\x00\x50", ADDRESS_TYPE_NOT_SUPPORTED, "address type 0", 4),
        (b"\x05\x01\x00\x03\x00\x00\x50", GENERAL_FAILURE, "empty domain", 5),
        (b"\x05\x01\x00\x03\x0bexam\x00le.com\x00\x50", GENERAL_FAILURE, "control character", 10),
        (b"\x05\x01\x00\x03\x0bexam\nle.com\x00\x50", GENERAL_FAILURE, "control character", 10),
        (b"\x05\x01\x00\x03\x0bexam\x7fle.com\x00\x50", GENERAL_FAILURE, "control character", 10),
        (b"\x05\x01\x00\x03\x0bexam le.com\x00\x50", GENERAL_FAILURE, "invalid host name", 18),
        (b"\x05\x01\x00\x03\x0bexam%le.com\x00\x50", GENERAL_FAILURE, "invalid host name", 18),
        (b"\x05\x01\x00\x03\x0bu@example.c\x00\x50", GENERAL_FAILURE, "invalid host name", 18),
        (b"\x05\x01\x00\x03\x06b\xc3\xbccher\x00\x50", GENERAL_FAILURE, "invalid host name", 13),
        (b"\x05\x01\x00\x03\x0a2130706433\x00\x50", GENERAL_FAILURE, "ambiguous numeric host", 17),
        (b"\x05\x01\x00\x03\x05127.1\x00\x50", GENERAL_FAILURE, "ambiguous numeric host", 12),
        (b"\x05\x01\x00\x03\x040x7f\x00\x50", GENERAL_FAILURE, "ambiguous numeric host", 11),
        (b"\x05\x01\x00\x03\x04[::1\x00\x50", GENERAL_FAILURE, "invalid host name", 11),
        (b"\x05\x01\x00\x03\x04:::1\x00\x50", GENERAL_FAILURE, "invalid host name", 11),
        (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00", GENERAL_FAILURE, "port 0", 10),
    ],
)
def test_socks5_request_refusals(data: bytes, status: int, match: str, at: int) -> None:
    raises(parse_socks5_request, data, status, match=match)
    assert refused_at(parse_socks5_request, data) == at


# --- SOCKS5 replies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "data"),
    [
        ((SUCCEEDED,), b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
        ((SUCCEEDED, "10.1.2.3", 4321), b"\x05\x00\x00\x01\x0a\x01\x02\x03\x10\xe1"),
        ((NOT_ALLOWED, "::1", 80), b"\x05\x02\x00\x04" + bytes(15) + b"\x01\x00\x50"),
        ((SUCCEEDED, "[2001:db8::1]", 1), b"\x05\x00\x00\x04\x20\x01\x0d\xb8" + bytes(11) + b"\x01\x00\x01"),
        ((HOST_UNREACHABLE, "proxy.example", 1080), b"\x05\x04\x00\x03\x0dproxy.example\x04\x38"),
    ],
)
def test_socks5_reply_builder(args: tuple, data: bytes) -> None:
    assert socks5_reply(*args) == data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x05\x00\x00\x01\x0a\x01\x02\x03\x10\xe1", Socks5Reply(SUCCEEDED, "10.1.2.3", 4321, ATYP_IPV4)),
        (b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", Socks5Reply(CONNECTION_REFUSED, "0.0.0.0", 0, ATYP_IPV4)),
        (b"\x05\x00\x00\x04" + bytes(15) + b"\x01\x00\x50", Socks5Reply(SUCCEEDED, "::1", 80, ATYP_IPV6)),
        # A server's BND.ADDR is shown, never resolved: kept as sent.
        (b"\x05\x00\x00\x03\x0dProxy.Example\x04\x38", Socks5Reply(SUCCEEDED, "Proxy.Example", 1080, ATYP_DOMAIN)),
        (b"\x05\x00\x00\x03\x00\x04\x38", None),
    ],
)
def test_socks5_reply_parser(data: bytes, expected: Socks5Reply | None) -> None:
    if expected is None:
        raises(parse_socks5_reply, data, 502, "upstream", "empty domain")
    else:
        assert parse_three_ways(parse_socks5_reply, data) == expected


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x04\x5a\x00\x00\x00\x00\x00\x00", "version 4"),
        (b"HTTP/1.1 200 OK\r\n", "version 72"),
        (b"\x05\x00\x01\x01\x00\x00\x00\x00\x00\x00", "reserved"),
        (b"\x05\x00\x00\x07\x00\x00\x00\x00\x00\x00", "address type 7"),
        (b"\x05\x00\x00\x03\x03a\nb\x00\x01", "control character"),
    ],
)
def test_socks5_reply_parser_refusals(data: bytes, match: str) -> None:
    raises(parse_socks5_reply, data, 502, "upstream", match)


@given(
    rep=st.integers(0, 255),
    host=st.one_of(st.ip_addresses().map(str), st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,60}[a-z]", fullmatch=True)),
    port=st.integers(0, 65535),
)
@settings(max_examples=200, deadline=None)
def test_reply_round_trip(rep: int, host: str, port: int) -> None:
    data = socks5_reply(rep, host, port)
    reply, consumed = parse_socks5_reply(data + b"tunnel")
    assert consumed == len(data)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        atyp = ATYP_DOMAIN
    else:
        atyp = ATYP_IPV4 if ip.version == 4 else ATYP_IPV6
        host = ip_text(ip)  # an IPv4-mapped address comes back dotted
    assert reply == Socks5Reply(rep, host, port, atyp)


def test_reply_builder_refuses_our_own_mistakes() -> None:
    with pytest.raises(ValueError):
        socks5_reply(256)
    with pytest.raises(ValueError):
        socks5_reply(0, "0.0.0.0", 65536)
    with pytest.raises(ValueError):
        socks5_reply(0, "bücher.example", 1)
    with pytest.raises(ValueError):
        socks5_reply(0, "", 1)
    with pytest.raises(ValueError):
        socks5_reply(0, "a" * 256, 1)


# --- client requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "host", "port", "atyp", "parsed_host"),
    [
        (CONNECT, "127.0.0.1", 80, ATYP_IPV4, "127.0.0.1"),
        (CONNECT, "::1", 443, ATYP_IPV6, "::1"),
        (CONNECT, "[2001:DB8::1]", 443, ATYP_IPV6, "2001:db8::1"),
        (CONNECT, "example.com", 443, ATYP_DOMAIN, "example.com"),
        (UDP_ASSOCIATE, "0.0.0.0", 0, ATYP_IPV4, "0.0.0.0"),
        (BIND, "a" * 255, 1, ATYP_DOMAIN, "a" * 255),
    ],
)
def test_client_request_round_trip(cmd: int, host: str, port: int, atyp: int, parsed_host: str) -> None:
    data = socks5_client_request(cmd, host, port)
    assert data[3] == atyp
    assert parse_three_ways(parse_socks5_request, data) == Socks5Request(cmd, parsed_host, port, atyp)


def test_client_request_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown SOCKS5 command"):
        socks5_client_request(9, "example.com", 80)
    with pytest.raises(ValueError, match="port"):
        socks5_client_request(CONNECT, "example.com", -1)
    with pytest.raises(ValueError, match="1 to 255"):
        socks5_client_request(CONNECT, "a" * 256, 80)


# --- SOCKS4 and SOCKS4a ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", Socks4Request(CONNECT, "127.0.0.1", 80, "", False)),
        (b"\x04\x01\x01\xbb\xc0\x00\x02\x01alice\x00", Socks4Request(CONNECT, "192.0.2.1", 443, "alice", False)),
        (b"\x04\x02\x00\x00\x00\x00\x00\x00\x00", Socks4Request(BIND, "0.0.0.0", 0, "", False)),
        (
            b"\x04\x01\x00\x50\x00\x00\x00\x01\x00Example.com\x00",
            Socks4Request(CONNECT, "example.com", 80, "", True),
        ),
        (
            b"\x04\x01\x00\x50\x00\x00\x00\xffbob\x00example.com\x00",
            Socks4Request(CONNECT, "example.com", 80, "bob", True),
        ),
        (
            b"\x04\x01\x00\x50\x7f\x00\x00\x01" + b"u" * MAX_USERID + b"\x00",
            Socks4Request(CONNECT, "127.0.0.1", 80, "u" * MAX_USERID, False),
        ),
        (
            b"\x04\x01\x00\x50\x00\x00\x00\x01\x00" + b"h" * MAX_DOMAIN + b"\x00",
            Socks4Request(CONNECT, "h" * MAX_DOMAIN, 80, "", True),
        ),
        (
            b"\x04\x01\x00\x50\x7f\x00\x00\x01\xc3\xa9\xff\x00",
            Socks4Request(CONNECT, "127.0.0.1", 80, "é\udcff", False),
        ),
    ],
)
def test_socks4_request(data: bytes, expected: Socks4Request) -> None:
    assert parse_three_ways(parse_socks4_request, data) == expected


@pytest.mark.parametrize(
    ("data", "match", "at"),
    [
        (b"\x05\x01\x00\x50\x7f\x00\x00\x01\x00", "version 5", 1),
        (b"\x04\x03\x00\x50\x7f\x00\x00\x01\x00", "command 3", 2),
        (b"\x04\x00\x00\x50\x7f\x00\x00\x01\x00", "command 0", 2),
        (b"\x04\x01\x00\x50\x7f\x00\x00\x01" + b"u" * (MAX_USERID + 1) + b"\x00", "user id longer than 255", 8 + 256),
        (
            b"\x04\x01\x00\x50\x00\x00\x00\x01\x00" + b"h" * (MAX_DOMAIN + 1) + b"\x00",
            "host name longer than 255",
            9 + 256,
        ),
        (b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00", "empty host name", 10),
        (b"\x04\x01\x00\x50\x00\x00\x00\x01\x00exa mple\x00", "invalid host name", 18),
        (b"\x04\x01\x00\x50\x00\x00\x00\x01\x00ex\x01ample\x00", "control character", 18),
        (b"\x04\x01\x00\x50\x00\x00\x00\x01\x00127.1\x00", "ambiguous numeric host", 15),
        (b"\x04\x01\x00\x00\x7f\x00\x00\x01\x00", "port 0", 9),
    ],
)
def test_socks4_request_refusals(data: bytes, match: str, at: int) -> None:
    raises(parse_socks4_request, data, 400, match=match)
    assert refused_at(parse_socks4_request, data) == at


def test_socks4_endless_userid_is_refused_without_waiting() -> None:
    """A client streaming user id bytes without a NUL is refused once the bound is passed."""
    head = b"\x04\x01\x00\x50\x7f\x00\x00\x01"
    assert parse_socks4_request(head + b"u" * MAX_USERID) is None
    raises(parse_socks4_request, head + b"u" * (MAX_USERID + 1), 400)
    raises(parse_socks4_request, head + b"u" * 100_000, 400)
    a4 = b"\x04\x01\x00\x50\x00\x00\x00\x01id\x00"
    assert parse_socks4_request(a4 + b"h" * MAX_DOMAIN) is None
    raises(parse_socks4_request, a4 + b"h" * (MAX_DOMAIN + 1), 400)


def test_socks4_reply() -> None:
    assert socks4_reply(True) == b"\x00\x5a\x00\x00\x00\x00\x00\x00"
    assert socks4_reply(False) == b"\x00\x5b\x00\x00\x00\x00\x00\x00"
    assert socks4_reply(True, "10.0.0.1", 1080) == b"\x00\x5a\x04\x38\x0a\x00\x00\x01"
    with pytest.raises(ValueError, match="IPv4"):
        socks4_reply(True, "::1", 1)
    with pytest.raises(ValueError, match="port"):
        socks4_reply(True, "0.0.0.0", 70000)


# --- UDP datagrams -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "header"),
    [
        ("8.8.8.8", 53, UdpHeader(0, "8.8.8.8", 53, ATYP_IPV4)),
        ("2001:db8::53", 53, UdpHeader(0, "2001:db8::53", 53, ATYP_IPV6)),
        ("dns.example", 5353, UdpHeader(0, "dns.example", 5353, ATYP_DOMAIN)),
    ],
)
@pytest.mark.parametrize("payload", [b"", b"\x12\x34query", bytes(range(256)) * 4])
def test_udp_round_trip(host: str, port: int, header: UdpHeader, payload: bytes) -> None:
    data = build_udp_datagram(host, port, payload)
    parsed, body = parse_udp_datagram(data)
    assert parsed == header
    assert isinstance(body, memoryview) and body.tobytes() == payload
    assert parse_udp_datagram(memoryview(data))[1].tobytes() == payload
    assert parse_udp_datagram(bytearray(data))[1].tobytes() == payload


def test_udp_payload_is_a_view_not_a_copy() -> None:
    data = bytearray(build_udp_datagram("1.2.3.4", 9, b"abc"))
    _, body = parse_udp_datagram(data)
    data[-1] = ord("z")
    assert body.tobytes() == b"abz"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "shorter than its header"),
        (b"\x00\x00\x00", "shorter than its header"),
        (b"\x00\x00\x01\x01\x08\x08\x08\x08\x00\x35data", "fragmented SOCKS5 UDP datagram (FRAG=1)"),
        (b"\x00\x00\x81\x01\x08\x08\x08\x08\x00\x35data", "does not reassemble"),
        (b"\x00\x01\x00\x01\x08\x08\x08\x08\x00\x35data", "reserved"),
        (b"\x00\x00\x00\x01\x08\x08\x08\x08\x00", "truncated address"),
        (b"\x00\x00\x00\x03\x0bexample", "truncated address"),
        (b"\x00\x00\x00\x05\x08\x08\x08\x08\x00\x35", "address type 5"),
        (b"\x00\x00\x00\x03\x00\x00\x35", "empty domain"),
        (b"\x00\x00\x00\x03\x03a\x00b\x00\x35", "control character"),
    ],
)
def test_udp_refusals(data: bytes, match: str) -> None:
    raises(parse_udp_datagram, data, 400, "client", match)
    raises(lambda d: parse_udp_datagram(d, side="upstream"), data, 502, "upstream", match)


# --- reply codes for our errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "rep"),
    [
        ("denied", NOT_ALLOWED),
        ("upstream_connect", CONNECTION_REFUSED),
        ("upstream_timeout", TTL_EXPIRED),
        ("resolve_failed", HOST_UNREACHABLE),
        ("resolve_timeout", HOST_UNREACHABLE),
        ("busy", GENERAL_FAILURE),
        ("anything-else", GENERAL_FAILURE),
        (403, NOT_ALLOWED),
        (407, NOT_ALLOWED),
        (504, TTL_EXPIRED),
        (502, GENERAL_FAILURE),
        (400, GENERAL_FAILURE),
        (503, GENERAL_FAILURE),
        (COMMAND_NOT_SUPPORTED, COMMAND_NOT_SUPPORTED),
        (ADDRESS_TYPE_NOT_SUPPORTED, ADDRESS_TYPE_NOT_SUPPORTED),
    ],
)
def test_rep_for(given: int | str, rep: int) -> None:
    assert socks5_rep_for(given) == rep


def test_constants_match_the_rfcs() -> None:
    assert (CONNECT, BIND, UDP_ASSOCIATE) == (1, 2, 3)
    assert [SUCCEEDED, GENERAL_FAILURE, NOT_ALLOWED, socks.NETWORK_UNREACHABLE, HOST_UNREACHABLE,
            CONNECTION_REFUSED, TTL_EXPIRED, COMMAND_NOT_SUPPORTED, ADDRESS_TYPE_NOT_SUPPORTED] == list(range(9))
    assert (NO_AUTH, USERPASS, NO_ACCEPTABLE) == (0, 2, 0xFF)
    assert (socks.SOCKS4_GRANTED, socks.SOCKS4_REJECTED) == (90, 91)


# --- a whole pipelined exchange ----------------------------------------------------------------


def test_pipelined_client_flight() -> None:
    """Greeting, credentials and request in one packet: each parser consumes exactly its part."""
    flight = (
        socks5_client_greeting(True)
        + socks5_client_userpass("alice", "pw")
        + socks5_client_request(CONNECT, "example.com", 443)
        + b"\x16\x03\x01"
    )
    assert detect_version(flight) == 5
    methods, n1 = parse_socks5_greeting(flight)
    assert methods == [NO_AUTH, USERPASS]
    user, password, n2 = parse_userpass(flight[n1:])
    assert (user, password) == ("alice", "pw")
    request, n3 = parse_socks5_request(flight[n1 + n2 :])
    assert request == Socks5Request(CONNECT, "example.com", 443, ATYP_DOMAIN)
    assert flight[n1 + n2 + n3 :] == b"\x16\x03\x01"


# --- hypothesis: arbitrary bytes ---------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STREAM_PARSERS = [
    detect_version,
    parse_socks5_greeting,
    parse_userpass,
    parse_socks5_request,
    parse_socks4_request,
    parse_method_selection,
    parse_auth_status,
    parse_socks5_reply,
]
# Arbitrary bytes, and arbitrary bytes after a valid-looking head so the fuzz reaches past byte 0.
HEADS = [b"", b"\x05", b"\x05\x01\x00", b"\x05\x01\x00\x03", b"\x04\x01\x00\x50", b"\x04\x01\x00\x50\x00\x00\x00\x01", b"\x01"]
fuzz_bytes = st.builds(lambda head, tail: head + tail, st.sampled_from(HEADS), st.binary(max_size=600))


def _parse_or_protocol_error(parse, data):
    try:
        return parse(data)
    except ProtocolError as e:
        assert e.side in ("client", "upstream") and e.message
        return e


@pytest.mark.parametrize("parse", STREAM_PARSERS, ids=lambda p: p.__name__)
@given(data=fuzz_bytes)
@FUZZ
def test_arbitrary_bytes_parse_or_raise_protocol_error(parse, data: bytes) -> None:
    result = _parse_or_protocol_error(parse, data)
    if isinstance(result, tuple) and result and isinstance(result[-1], int):
        assert 0 < result[-1] <= len(data)


@pytest.mark.parametrize("parse", STREAM_PARSERS[1:], ids=lambda p: p.__name__)
@given(data=fuzz_bytes)
@FUZZ
def test_refusal_is_monotone_and_acceptance_is_stable(parse, data: bytes) -> None:
    """Once a prefix is refused, no longer input is accepted; once one parses, longer input
    parses to the same value (the parser never waits after it could answer)."""
    first = None
    for i in range(len(data) + 1):
        result = _parse_or_protocol_error(parse, data[:i])
        if first is None:
            if result is not None:
                first = result
            continue
        if isinstance(first, ProtocolError):
            assert isinstance(result, ProtocolError), f"prefix {i} accepted after a refusal"
        else:
            assert result == first


@given(data=st.binary(max_size=600) | st.builds(lambda t: b"\x00\x00\x00" + t, st.binary(max_size=300)))
@FUZZ
def test_udp_arbitrary_bytes(data: bytes) -> None:
    try:
        header, body = parse_udp_datagram(data)
    except ProtocolError as e:
        assert e.status == 400
    else:
        assert header.frag == 0 and len(body) <= len(data)


def test_an_ipv4_mapped_destination_is_written_dotted() -> None:
    assert ip_text(ipaddress.IPv6Address("::ffff:7f00:1")) == "::ffff:127.0.0.1"
    assert ip_text(ipaddress.IPv6Address("2001:DB8::1")) == "2001:db8::1"
    assert ip_text(ipaddress.IPv4Address("10.0.0.1")) == "10.0.0.1"
