"""Sans-io SOCKS4, SOCKS4a and SOCKS5 (RFC 1928) with username/password (RFC 1929), both sides.

Pure functions over bytes, for the socks_proxy server (the ``parse_*`` server-side parsers and
the reply builders), its UDP ASSOCIATE relay (``parse_udp_datagram``/``build_udp_datagram``)
and the proxy_socks5 escaper (the ``socks5_client_*`` builders and the reply parsers). No
sockets, clocks or logging; every message is length-prefixed or bounded, so a parser answers
"need more" (None) only while the bytes seen so far can still become valid, and refuses at once
otherwise: a client that sends endless bytes without a NUL terminator is refused once the bound
is passed, never waited for.

A parser returns ``(value, consumed)`` once the whole message is in the buffer (bytes after it
are left to the caller: a client may pipeline its greeting, auth and request in one packet).

Error convention (``arcus.errors.ProtocolError``):

- ``side="client"``: the SOCKS client broke the protocol. ``status`` is the SOCKS5 reply code
  to send before closing (GENERAL_FAILURE for a malformed request, COMMAND_NOT_SUPPORTED,
  ADDRESS_TYPE_NOT_SUPPORTED) when the error is in a SOCKS5 request, where RFC 1928 6 defines
  a reply; it is 400 when no reply applies: a bad first byte or greeting (close, or answer
  ``socks5_method_selection(NO_ACCEPTABLE)``), a bad RFC 1929 sub-negotiation (answer
  ``socks5_auth_status(False)`` and close), a bad SOCKS4 request (answer
  ``socks4_reply(False)``) and a bad UDP datagram (drop it).
- ``side="upstream"``: an upstream SOCKS5 server broke the protocol (the client-side parsers,
  and ``parse_udp_datagram(..., side="upstream")``). ``status`` is 502, as for a bad HTTP
  upstream (arcus.errors); the escaper turns it into an EscapeError, and ``socks5_rep_for(502)``
  gives GENERAL_FAILURE for a SOCKS client.

Builders raise ValueError for arguments Arcus itself got wrong (a port out of range, a user
name over 255 bytes): those are bugs or operator errors, not a peer's. No error message ever
contains a password. What is accepted and refused, and why, is in docs/socks-and-sni.md.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from arcus.errors import ProtocolError
from arcus.names import ip_text
from arcus.proto.http1_syntax import IPV4_DOTTED, NUMERIC_LAST_LABEL

__all__ = [
    "ADDRESS_TYPE_NOT_SUPPORTED",
    "ATYP_DOMAIN",
    "ATYP_IPV4",
    "ATYP_IPV6",
    "BIND",
    "COMMAND_NOT_SUPPORTED",
    "CONNECT",
    "CONNECTION_REFUSED",
    "GENERAL_FAILURE",
    "HOST_UNREACHABLE",
    "MAX_DOMAIN",
    "MAX_USERID",
    "NETWORK_UNREACHABLE",
    "NO_ACCEPTABLE",
    "NO_AUTH",
    "NOT_ALLOWED",
    "SOCKS4_GRANTED",
    "SOCKS4_REJECTED",
    "SUCCEEDED",
    "TTL_EXPIRED",
    "UDP_ASSOCIATE",
    "USERPASS",
    "Socks4Request",
    "Socks5Reply",
    "Socks5Request",
    "UdpHeader",
    "build_udp_datagram",
    "detect_version",
    "parse_auth_status",
    "parse_method_selection",
    "parse_socks4_request",
    "parse_socks5_greeting",
    "parse_socks5_reply",
    "parse_socks5_request",
    "parse_udp_datagram",
    "parse_userpass",
    "socks4_reply",
    "socks5_auth_status",
    "socks5_client_greeting",
    "socks5_client_request",
    "socks5_client_userpass",
    "socks5_method_selection",
    "socks5_rep_for",
    "socks5_reply",
]

# Commands (RFC 1928 4; SOCKS4 uses 1 and 2 with the same meaning)
CONNECT = 1
BIND = 2
UDP_ASSOCIATE = 3

# Address types (RFC 1928 4)
ATYP_IPV4 = 1
ATYP_DOMAIN = 3
ATYP_IPV6 = 4

# Reply codes (RFC 1928 6)
SUCCEEDED = 0
GENERAL_FAILURE = 1
NOT_ALLOWED = 2
NETWORK_UNREACHABLE = 3
HOST_UNREACHABLE = 4
CONNECTION_REFUSED = 5
TTL_EXPIRED = 6
COMMAND_NOT_SUPPORTED = 7
ADDRESS_TYPE_NOT_SUPPORTED = 8

# Authentication methods (RFC 1928 3)
NO_AUTH = 0
USERPASS = 2
NO_ACCEPTABLE = 0xFF

# SOCKS4 reply codes
SOCKS4_GRANTED = 90
SOCKS4_REJECTED = 91

MAX_USERID = 255  # SOCKS4 USERID bytes, NUL excluded
MAX_DOMAIN = 255  # SOCKS4a host name bytes, NUL excluded (SOCKS5 has a one-byte length anyway)

_CLIENT = "client"
_UPSTREAM = "upstream"
_NO_REPLY = 400  # status when no SOCKS reply code applies
_BAD_UPSTREAM = 502

_SOCKS5_COMMANDS = frozenset((CONNECT, BIND, UDP_ASSOCIATE))
_SOCKS4_COMMANDS = frozenset((CONNECT, BIND))
_ADDR_LEN = {ATYP_IPV4: 4, ATYP_IPV6: 16}

# A destination host name: what DNS names and IPv4 literals use (RFC 3986 unreserved), the
# same set the HTTP parser accepts in a Host, so that policy sees one spelling of a name
# whichever protocol carried it. No NUL, CTL, space, '%', '@' or non-ASCII (IDNs come as
# A-labels), so nothing a resolver would read differently from a policy matcher.
_REG_NAME = re.compile(rb"[A-Za-z0-9._~\-]+")
# An IPv6 literal a client may send as a "domain" (bracketed or not); normalized like ATYP 4.
_V6_LITERAL = re.compile(rb"\[([0-9A-Fa-f:.]+)\]|([0-9A-Fa-f:.]+)")
_CTL = re.compile(rb"[\x00-\x1f\x7f]")

_U16 = struct.Struct(">H")
_SOCKS4_HEAD = struct.Struct(">BBH4s")


@dataclass(frozen=True, slots=True)
class Socks5Request:
    cmd: int  # CONNECT | BIND | UDP_ASSOCIATE
    host: str  # IPv4 dotted quad, IPv6 compressed (no brackets), or a lowercased domain name
    port: int
    atyp: int  # as sent: ATYP_IPV4 | ATYP_DOMAIN | ATYP_IPV6


@dataclass(frozen=True, slots=True)
class Socks4Request:
    cmd: int  # CONNECT | BIND
    host: str  # IPv4 dotted quad, or the lowercased SOCKS4a host name
    port: int
    userid: str  # utf-8 with surrogateescape (undecodable bytes survive a round trip)
    is_4a: bool


@dataclass(frozen=True, slots=True)
class Socks5Reply:
    rep: int  # SUCCEEDED or a failure code (returned, not raised: the caller maps it)
    host: str  # BND.ADDR: IPv4/IPv6 normalized, or a domain name as sent
    port: int
    atyp: int


@dataclass(frozen=True, slots=True)
class UdpHeader:
    frag: int  # always 0: fragments are refused
    host: str
    port: int
    atyp: int


# --- server side ----------------------------------------------------------------------------


def detect_version(buf: bytes | bytearray) -> int | None:
    """4 or 5 from the first byte; None for an empty buffer. Anything else is not SOCKS."""
    if not buf:
        return None
    version = buf[0]
    if version == 5 or version == 4:
        return version
    raise ProtocolError(f"not a SOCKS request (first byte 0x{version:02x})", side=_CLIENT, status=_NO_REPLY)


def parse_socks5_greeting(buf: bytes | bytearray) -> tuple[list[int], int] | None:
    """(offered methods, consumed) from VER NMETHODS METHODS; status 400 on error."""
    n = len(buf)
    if n == 0:
        return None
    if buf[0] != 5:
        raise ProtocolError(f"SOCKS5 greeting with version {buf[0]}", side=_CLIENT, status=_NO_REPLY)
    if n < 2:
        return None
    count = buf[1]
    if count == 0:
        raise ProtocolError("SOCKS5 greeting offers no authentication method", side=_CLIENT, status=_NO_REPLY)
    end = 2 + count
    if n < end:
        return None
    return list(buf[2:end]), end


def parse_userpass(buf: bytes | bytearray) -> tuple[str, str, int] | None:
    """(username, password, consumed) from an RFC 1929 request; status 400 on error.

    Both are decoded as utf-8 with surrogateescape (any bytes round-trip). Empty ones are passed
    on: refusing them is the user group's decision, answered with an auth failure the client
    understands. No error message mentions the password.
    """
    n = len(buf)
    if n == 0:
        return None
    if buf[0] != 1:
        raise ProtocolError(
            f"username/password sub-negotiation with version {buf[0]} (expected 1)", side=_CLIENT, status=_NO_REPLY
        )
    if n < 2:
        return None
    ulen = buf[1]
    plen_at = 2 + ulen
    if n <= plen_at:
        return None
    end = plen_at + 1 + buf[plen_at]
    if n < end:
        return None
    user = bytes(buf[2:plen_at]).decode("utf-8", "surrogateescape")
    password = bytes(buf[plen_at + 1 : end]).decode("utf-8", "surrogateescape")
    return user, password, end


def parse_socks5_request(buf: bytes | bytearray) -> tuple[Socks5Request, int] | None:
    """(request, consumed) from VER CMD RSV ATYP DST.ADDR DST.PORT.

    Refused with status COMMAND_NOT_SUPPORTED (unknown CMD), ADDRESS_TYPE_NOT_SUPPORTED (unknown
    ATYP), GENERAL_FAILURE (anything else malformed), each as soon as the byte arrives.
    """
    n = len(buf)
    if n == 0:
        return None
    if buf[0] != 5:
        raise ProtocolError(f"SOCKS5 request with version {buf[0]}", side=_CLIENT, status=GENERAL_FAILURE)
    if n < 2:
        return None
    cmd = buf[1]
    if cmd not in _SOCKS5_COMMANDS:
        raise ProtocolError(f"unknown SOCKS5 command {cmd}", side=_CLIENT, status=COMMAND_NOT_SUPPORTED)
    if n < 3:
        return None
    if buf[2] != 0:
        raise ProtocolError("reserved byte of a SOCKS5 request is not 0", side=_CLIENT, status=GENERAL_FAILURE)
    parsed = _address(buf, 3, _CLIENT, GENERAL_FAILURE, ADDRESS_TYPE_NOT_SUPPORTED)
    if parsed is None:
        return None
    atyp, host, port, end = parsed
    if port == 0 and cmd == CONNECT:
        raise ProtocolError(f"SOCKS5 CONNECT to port 0 of {host}", side=_CLIENT, status=GENERAL_FAILURE)
    return Socks5Request(cmd, host, port, atyp), end


def parse_socks4_request(buf: bytes | bytearray) -> tuple[Socks4Request, int] | None:
    """(request, consumed) from VN CD DSTPORT DSTIP USERID NUL [HOST NUL] (SOCKS4 and 4a).

    DSTIP 0.0.0.x with x != 0 means SOCKS4a: a host name follows the user id. USERID and the
    host name are bounded (MAX_USERID, MAX_DOMAIN): past the bound without a NUL, refused.
    Errors have status 400 (SOCKS4 has one failure reply, ``socks4_reply(False)``).
    """
    n = len(buf)
    if n == 0:
        return None
    if buf[0] != 4:
        raise ProtocolError(f"SOCKS4 request with version {buf[0]}", side=_CLIENT, status=_NO_REPLY)
    if n >= 2 and buf[1] not in _SOCKS4_COMMANDS:
        raise ProtocolError(f"unknown SOCKS4 command {buf[1]}", side=_CLIENT, status=_NO_REPLY)
    userid_end = _find_nul(buf, 8, MAX_USERID, "SOCKS4 user id")
    if userid_end < 0:
        return None
    _, cmd, port, ip = _SOCKS4_HEAD.unpack_from(buf)
    userid = bytes(buf[8:userid_end]).decode("utf-8", "surrogateescape")
    is_4a = ip[:3] == b"\x00\x00\x00" and ip[3] != 0
    if is_4a:
        name_end = _find_nul(buf, userid_end + 1, MAX_DOMAIN, "SOCKS4a host name")
        if name_end < 0:
            return None
        host = _domain(bytes(buf[userid_end + 1 : name_end]), _CLIENT, _NO_REPLY)
        end = name_end + 1
    else:
        host = str(ipaddress.IPv4Address(ip))
        end = userid_end + 1
    if port == 0 and cmd == CONNECT:
        raise ProtocolError(f"SOCKS4 CONNECT to port 0 of {host}", side=_CLIENT, status=_NO_REPLY)
    return Socks4Request(cmd, host, port, userid, is_4a), end


def socks5_method_selection(method: int) -> bytes:
    """VER METHOD: the server's choice (NO_ACCEPTABLE refuses every offered method)."""
    return bytes((5, method))


def socks5_auth_status(ok: bool) -> bytes:
    """RFC 1929 status: 0 success; on failure the server closes after sending it."""
    return b"\x01\x00" if ok else b"\x01\x01"


def socks5_reply(rep: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """VER REP RSV ATYP BND.ADDR BND.PORT; an IP literal goes as ATYP 1/4, anything else as a domain."""
    if not 0 <= rep <= 255:
        raise ValueError(f"SOCKS5 reply code out of range: {rep}")
    return bytes((5, rep, 0)) + _encode_address(host, port)


def socks4_reply(granted: bool, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """VN(0) CD(90|91) DSTPORT DSTIP. SOCKS4 has IPv4 only: pass "0.0.0.0" for anything else."""
    _check_port(port)
    try:
        ip = ipaddress.IPv4Address(host).packed
    except ValueError:
        raise ValueError(f"SOCKS4 reply needs an IPv4 address, not {host!r}") from None
    return _SOCKS4_HEAD.pack(0, SOCKS4_GRANTED if granted else SOCKS4_REJECTED, port, ip)


# --- UDP ASSOCIATE datagrams (RFC 1928 7) ---------------------------------------------------


def parse_udp_datagram(
    data: bytes | bytearray | memoryview, side: str = _CLIENT
) -> tuple[UdpHeader, memoryview]:
    """(header, payload) of one whole datagram; the payload is a view, not a copy.

    Fragmented datagrams (FRAG != 0) are refused: Arcus does not reassemble (RFC 1928 7 makes
    reassembly optional), and a client that fragments must be told rather than see loss.
    ``side`` says who sent it ("client" for the relay's client, "upstream" for a SOCKS5 server
    relaying for the proxy_socks5 escaper); status 400 or 502 accordingly. Truncated
    datagrams are refused too: a datagram is never "incomplete".
    """
    status = _NO_REPLY if side == _CLIENT else _BAD_UPSTREAM
    view = memoryview(data)
    if len(view) < 4:
        raise ProtocolError(f"SOCKS5 UDP datagram of {len(view)} bytes is shorter than its header", side=side, status=status)
    if view[0] != 0 or view[1] != 0:
        raise ProtocolError("reserved bytes of a SOCKS5 UDP datagram are not 0", side=side, status=status)
    frag = view[2]
    if frag != 0:
        raise ProtocolError(
            f"fragmented SOCKS5 UDP datagram (FRAG={frag}) refused: Arcus does not reassemble fragments",
            side=side,
            status=status,
        )
    parsed = _address(view, 3, side, status)
    if parsed is None:
        raise ProtocolError("truncated address in a SOCKS5 UDP datagram", side=side, status=status)
    atyp, host, port, end = parsed
    return UdpHeader(0, host, port, atyp), view[end:]


def build_udp_datagram(host: str, port: int, payload: bytes | bytearray | memoryview) -> bytes:
    """RSV FRAG(0) ATYP DST.ADDR DST.PORT DATA."""
    return b"\x00\x00\x00" + _encode_address(host, port) + payload


# --- client side (the proxy_socks5 escaper) -------------------------------------------------


def socks5_client_greeting(with_auth: bool) -> bytes:
    """Offer NO_AUTH, and USERPASS too when we hold credentials (the server picks; as curl does)."""
    return b"\x05\x02\x00\x02" if with_auth else b"\x05\x01\x00"


def parse_method_selection(buf: bytes | bytearray) -> tuple[int, int] | None:
    """(method, consumed) from the server's VER METHOD. NO_ACCEPTABLE is returned, not raised;
    the caller also checks the method is one it offered."""
    n = len(buf)
    if n == 0:
        return None
    if buf[0] != 5:
        raise ProtocolError(f"SOCKS5 server answered with version {buf[0]}", side=_UPSTREAM, status=_BAD_UPSTREAM)
    if n < 2:
        return None
    return buf[1], 2


def socks5_client_userpass(user: str, password: str) -> bytes:
    """RFC 1929 request, utf-8 with surrogateescape (the inverse of parse_userpass)."""
    u = user.encode("utf-8", "surrogateescape")
    p = password.encode("utf-8", "surrogateescape")
    if len(u) > 255:
        raise ValueError(f"SOCKS5 user name longer than 255 bytes ({len(u)})")
    if len(p) > 255:
        raise ValueError(f"SOCKS5 password longer than 255 bytes for user {user!r}")
    return bytes((1, len(u))) + u + bytes((len(p),)) + p


def parse_auth_status(buf: bytes | bytearray) -> tuple[bool, int] | None:
    """(ok, consumed) from the server's RFC 1929 VER STATUS.

    VER 5 is accepted as well as 1: some deployed servers answer with the SOCKS version, and
    the status byte means the same.
    """
    n = len(buf)
    if n == 0:
        return None
    if buf[0] != 1 and buf[0] != 5:
        raise ProtocolError(
            f"SOCKS5 server answered authentication with version {buf[0]}", side=_UPSTREAM, status=_BAD_UPSTREAM
        )
    if n < 2:
        return None
    return buf[1] == 0, 2


def socks5_client_request(cmd: int, host: str, port: int) -> bytes:
    """VER CMD RSV ATYP DST.ADDR DST.PORT; an IP literal goes as ATYP 1/4, else as a domain."""
    if cmd not in _SOCKS5_COMMANDS:
        raise ValueError(f"unknown SOCKS5 command {cmd}")
    return bytes((5, cmd, 0)) + _encode_address(host, port)


def parse_socks5_reply(buf: bytes | bytearray) -> tuple[Socks5Reply, int] | None:
    """(reply, consumed) from the server's VER REP RSV ATYP BND.ADDR BND.PORT.

    A failure REP is returned for the caller to map; only a malformed reply raises
    (side "upstream", status 502).
    """
    n = len(buf)
    if n == 0:
        return None
    if buf[0] != 5:
        raise ProtocolError(f"SOCKS5 reply with version {buf[0]}", side=_UPSTREAM, status=_BAD_UPSTREAM)
    if n < 3:
        return None
    if buf[2] != 0:
        raise ProtocolError("reserved byte of a SOCKS5 reply is not 0", side=_UPSTREAM, status=_BAD_UPSTREAM)
    parsed = _address(buf, 3, _UPSTREAM, _BAD_UPSTREAM)
    if parsed is None:
        return None
    atyp, host, port, end = parsed
    return Socks5Reply(buf[1], host, port, atyp), end


# --- mapping our errors to reply codes ------------------------------------------------------

_REP_FOR_CODE = {
    "denied": NOT_ALLOWED,
    "loop_detected": NOT_ALLOWED,
    "upstream_connect": CONNECTION_REFUSED,
    "upstream_timeout": TTL_EXPIRED,
    "resolve_failed": HOST_UNREACHABLE,
    "resolve_timeout": HOST_UNREACHABLE,
}
_REP_FOR_STATUS = {403: NOT_ALLOWED, 407: NOT_ALLOWED, 504: TTL_EXPIRED}


def socks5_rep_for(http_status_or_error_code: int | str) -> int:
    """The SOCKS5 reply code for an EscapeError ``code`` or an HTTP status; GENERAL_FAILURE otherwise.

    An int 0..8 is already a reply code (a ProtocolError status from this module) and is
    returned as is.
    """
    if isinstance(http_status_or_error_code, str):
        return _REP_FOR_CODE.get(http_status_or_error_code, GENERAL_FAILURE)
    if 0 <= http_status_or_error_code <= ADDRESS_TYPE_NOT_SUPPORTED:
        return http_status_or_error_code
    return _REP_FOR_STATUS.get(http_status_or_error_code, GENERAL_FAILURE)


# --- shared ---------------------------------------------------------------------------------


def _address(
    buf: bytes | bytearray | memoryview, at: int, side: str, status: int, atyp_status: int | None = None
) -> tuple[int, str, int, int] | None:
    """(atyp, host, port, end) of ATYP ADDR PORT starting at ``at``; None while incomplete.

    A client's domain name is validated as a destination (``_domain``); a server's BND.ADDR only
    for control characters (it is shown, never resolved). ``atyp_status`` is the status for an
    unknown ATYP (default ``status``).
    """
    n = len(buf)
    if n <= at:
        return None
    atyp = buf[at]
    if atyp == ATYP_DOMAIN:
        if n <= at + 1:
            return None
        length = buf[at + 1]
        if length == 0:
            raise ProtocolError("empty domain name in a SOCKS5 address", side=side, status=status)
        start = at + 2
        end = start + length
        if n < end + 2:
            # Refuse a bad name as soon as its bytes are in, not after the port.
            if _CTL.search(buf, start, min(n, end)):
                raise ProtocolError("control character in a SOCKS5 domain name", side=side, status=status)
            return None
        raw = bytes(buf[start:end])
        if side == _CLIENT:
            host = _domain(raw, side, status)
        elif _CTL.search(raw):
            raise ProtocolError("control character in a SOCKS5 domain name", side=side, status=status)
        else:
            host = raw.decode("ascii", "surrogateescape")
    elif atyp == ATYP_IPV4 or atyp == ATYP_IPV6:
        start = at + 1
        end = start + _ADDR_LEN[atyp]
        if n < end + 2:
            return None
        packed = bytes(buf[start:end])
        host = ip_text(ipaddress.IPv4Address(packed) if atyp == ATYP_IPV4 else ipaddress.IPv6Address(packed))
    else:
        code = status if atyp_status is None else atyp_status
        raise ProtocolError(f"unknown SOCKS5 address type {atyp}", side=side, status=code)
    port = _U16.unpack_from(buf, end)[0]
    return atyp, host, port, end + 2


def _domain(raw: bytes, side: str, status: int) -> str:
    """A destination host name from a client: lowercased, ASCII, no IPv4 spelling a resolver
    would read differently (only the dotted quad); an IPv6 literal is normalized."""
    if not raw:
        raise ProtocolError("empty host name", side=side, status=status)
    if _REG_NAME.fullmatch(raw) is None:
        v6 = _V6_LITERAL.fullmatch(raw)
        if v6 is not None and b":" in raw:
            try:
                return ip_text(ipaddress.IPv6Address((v6.group(1) or v6.group(2)).decode("ascii")))
            except ValueError:
                pass
        if _CTL.search(raw):
            why = "control character in host name"
        else:
            why = f"invalid host name {raw[:80]!r}"
        raise ProtocolError(why, side=side, status=status)
    if NUMERIC_LAST_LABEL.fullmatch(raw) and IPV4_DOTTED.fullmatch(raw) is None:
        raise ProtocolError(f"ambiguous numeric host {raw[:80]!r} (only dotted-quad IPv4)", side=side, status=status)
    if raw.endswith(b".") and len(raw) > 1:
        raw = raw[:-1]  # "example.com." is example.com: one spelling for policy, logs and the resolver
    return raw.decode("ascii").lower()


def _find_nul(buf: bytes | bytearray, start: int, bound: int, what: str) -> int:
    """Index of the NUL ending a string at ``start`` of at most ``bound`` bytes; -1 while it may
    still come; raises once ``bound`` bytes have passed without one."""
    end = buf.find(b"\x00", start, start + bound + 1)
    if end < 0 and len(buf) > start + bound:
        raise ProtocolError(f"{what} longer than {bound} bytes (no NUL terminator)", side=_CLIENT, status=_NO_REPLY)
    return end


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")


def _encode_address(host: str, port: int) -> bytes:
    """ATYP ADDR PORT for a host we send: IP literals as ATYP 1/4, anything else as a domain."""
    _check_port(port)
    bare = host[1:-1] if host[:1] == "[" and host[-1:] == "]" else host
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        try:
            name = host.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"host name is not ASCII (use its IDNA A-label): {host!r}") from None
        if not 0 < len(name) <= 255:
            raise ValueError(f"host name must be 1 to 255 bytes: {host[:80]!r}") from None
        return bytes((ATYP_DOMAIN, len(name))) + name + _U16.pack(port)
    atyp = ATYP_IPV4 if ip.version == 4 else ATYP_IPV6
    return bytes((atyp,)) + ip.packed + _U16.pack(port)
