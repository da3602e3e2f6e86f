"""Sans-io reader of a TLS ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2), for the SNI proxy.

Reads, never decrypts or answers: the SNI proxy peeks the client's first flight, routes by the
server name, and forwards the very same bytes to the upstream. So this module only has to say
where the hello ends and what it names, and refuse what no TLS client sends.

Accepted: a ClientHello in one handshake record, or fragmented across several (record layer
fragmentation, RFC 8446 5.1), with records arriving in any pieces (None until the hello is
complete). The total, record headers included, is bounded by MAX_HELLO_BYTES; nothing is waited
for past it. Refused (ProtocolError, side "client", status 400): a first record that is not a
handshake (or a non-handshake record before the hello is complete), an SSLv2-compatible hello,
records over 2^14 bytes or empty, a first handshake message other than ClientHello, bytes after
the hello in its last record, any length field that disagrees with its container, a duplicated
extension, and a server_name that is not a DNS host name (an IP literal is refused, RFC 6066 3).
docs/socks-and-sni.md says the same in prose.

Cost: a Python step per record and per extension (a real hello has one record and ~15-20
extensions), slices and ``struct`` for the rest; the SNI is checked by one regex.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from arcus.errors import ProtocolError
from arcus.proto.http1_syntax import IPV4_DOTTED, NUMERIC_LAST_LABEL

__all__ = ["MAX_HELLO_BYTES", "MAX_RECORD", "ClientHello", "looks_like_tls", "parse_client_hello"]

MAX_HELLO_BYTES = 65536  # records covering the hello, 5-byte headers included
MAX_RECORD = 16384  # TLSPlaintext.length bound (RFC 8446 5.1)

_HANDSHAKE = 0x16
_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_EXT_SUPPORTED_VERSIONS = 43
_HOST_NAME = 0

_RECORD_HEAD = struct.Struct(">BBBH")
_U16 = struct.Struct(">H")
# A DNS host name (RFC 1123 labels, plus '_' seen in real names), lowercased before matching;
# no trailing dot (RFC 6066 3: "without a trailing dot"), at most 253 bytes.
_LABEL = rb"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?"
_DNS_NAME = re.compile(rb"(?:" + _LABEL + rb"\.)*" + _LABEL)


@dataclass(frozen=True, slots=True)
class ClientHello:
    sni: str | None  # the host_name, lowercased and validated; None without a server_name extension
    alpn: tuple[str, ...]  # ALPN protocol names in the client's order (ascii, surrogateescape)
    legacy_version: int  # ClientHello.legacy_version, e.g. 0x0303
    supported_versions: tuple[int, ...]  # the supported_versions extension as sent (GREASE included)
    consumed: int  # bytes of the whole records that carry the hello


def looks_like_tls(buf: bytes | bytearray) -> bool | None:
    """Whether the first bytes start a TLS handshake record (0x16 0x03 0x00-0x04).

    None while fewer than 3 bytes leave it open. Used to tell TLS from plain HTTP on one port
    (no HTTP method starts with 0x16).
    """
    n = len(buf)
    if n == 0:
        return None
    if buf[0] != _HANDSHAKE:
        return False
    if n == 1:
        return None
    if buf[1] != 3:
        return False
    if n == 2:
        return None
    return buf[2] <= 4


def parse_client_hello(buf: bytes | bytearray) -> ClientHello | None:
    """The ClientHello at the start of ``buf`` once its last record is complete, else None.

    Raises ProtocolError(side="client", status=400) as soon as the bytes cannot become a valid
    hello (a bad record header, a non-ClientHello message type or an oversized length are
    refused before the rest arrives).
    """
    n = len(buf)
    if n == 0:
        return None
    if buf[0] != _HANDSHAKE:
        raise _error(_describe_not_handshake(buf))
    pos = 0
    fragments: list[bytes | bytearray] = []
    got = 0  # handshake bytes collected
    declared = 0  # handshake bytes the record headers so far announce
    need = -1  # 4 + ClientHello length, once the handshake header is in
    while True:
        if n - pos < 5:
            _check_header_prefix(buf, pos)
            return None
        ctype, major, minor, length = _RECORD_HEAD.unpack_from(buf, pos)
        if ctype != _HANDSHAKE:
            raise _error(f"TLS record of content type {ctype} before the ClientHello is complete")
        if major != 3 or minor > 4:
            raise _error(f"TLS record with version {major}.{minor}")
        if length == 0:
            raise _error("empty TLS handshake record")
        if length > MAX_RECORD:
            raise _error(f"TLS record of {length} bytes (the limit is {MAX_RECORD})")
        end = pos + 5 + length
        if end > MAX_HELLO_BYTES:
            raise _error(f"ClientHello records exceed {MAX_HELLO_BYTES} bytes")
        if pos + 5 < n and got == 0 and buf[pos + 5] != _CLIENT_HELLO:
            raise _error(f"first TLS handshake message has type {buf[pos + 5]}, not ClientHello")
        fragment = buf[pos + 5 : min(end, n)]
        fragments.append(fragment)
        got += len(fragment)
        declared += length
        if need < 0 and got >= 4:
            head = fragments[0] if len(fragments[0]) >= 4 else b"".join(fragments)
            need = 4 + int.from_bytes(head[1:4], "big")
            if need + 5 > MAX_HELLO_BYTES:
                raise _error(f"ClientHello of {need} bytes does not fit in {MAX_HELLO_BYTES} bytes of records")
        if 0 <= need < declared:
            raise _error("data after the ClientHello in its last TLS record")
        if end > n:
            return None
        pos = end
        if need == got:
            data = fragments[0] if len(fragments) == 1 else b"".join(fragments)
            return _client_hello(memoryview(data), need, pos)


def _check_header_prefix(buf: bytes | bytearray, pos: int) -> None:
    """Refuse a record header that cannot become valid from its first bytes."""
    n = len(buf)
    if pos < n and buf[pos] != _HANDSHAKE:
        raise _error(f"TLS record of content type {buf[pos]} before the ClientHello is complete")
    if pos + 1 < n and buf[pos + 1] != 3:
        raise _error(f"TLS record with version {buf[pos + 1]}.x")
    if pos + 2 < n and buf[pos + 2] > 4:
        raise _error(f"TLS record with version 3.{buf[pos + 2]}")


def _client_hello(data: memoryview, end: int, consumed: int) -> ClientHello:
    """Fields of the ClientHello body in ``data[4:end]`` (the handshake header at 0..3)."""
    p = 4
    _need(p + 35, end, "random")
    legacy_version = _U16.unpack_from(data, p)[0]
    if legacy_version >> 8 != 3:
        raise _error(f"ClientHello with legacy_version 0x{legacy_version:04x}")
    p += 34  # version, random
    sid = data[p]
    if sid > 32:
        raise _error(f"ClientHello session id of {sid} bytes (at most 32)")
    p += 1 + sid
    _need(p + 2, end, "cipher suites")
    suites = _U16.unpack_from(data, p)[0]
    if suites == 0 or suites % 2:
        raise _error(f"ClientHello cipher_suites of {suites} bytes")
    p += 2 + suites
    _need(p + 1, end, "cipher suites")
    methods = data[p]
    if methods == 0:
        raise _error("ClientHello without a compression method")
    p += 1 + methods
    _need(p, end, "compression methods")

    sni: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    if p == end:  # no extensions (a bare TLS 1.0-1.2 hello)
        return ClientHello(None, (), legacy_version, (), consumed)
    _need(p + 2, end, "extensions")
    total = _U16.unpack_from(data, p)[0]
    p += 2
    if p + total != end:
        raise _error(f"ClientHello extensions length {total} disagrees with the message length")
    seen: set[int] = set()
    while p < end:
        _need(p + 4, end, "extension header")
        ext, length = struct.unpack_from(">HH", data, p)
        p += 4
        _need(p + length, end, f"extension {ext}")
        if ext in seen:
            raise _error(f"duplicate TLS extension {ext} in the ClientHello")
        seen.add(ext)
        if ext == _EXT_SERVER_NAME:
            sni = _server_name(data[p : p + length])
        elif ext == _EXT_ALPN:
            alpn = _alpn(data[p : p + length])
        elif ext == _EXT_SUPPORTED_VERSIONS:
            versions = _supported_versions(data[p : p + length])
        p += length
    return ClientHello(sni, alpn, legacy_version, versions, consumed)


def _server_name(ext: memoryview) -> str:
    """RFC 6066 3: ServerNameList with exactly one host_name entry."""
    if len(ext) < 2 or _U16.unpack_from(ext)[0] != len(ext) - 2:
        raise _error("malformed server_name extension")
    p, end = 2, len(ext)
    if p == end:
        raise _error("empty server_name list")
    name: bytes | None = None
    while p < end:
        if p + 3 > end:
            raise _error("malformed server_name extension")
        kind = ext[p]
        length = _U16.unpack_from(ext, p + 1)[0]
        p += 3
        if p + length > end:
            raise _error("malformed server_name extension")
        if kind != _HOST_NAME:
            raise _error(f"server_name of unknown type {kind}")
        if name is not None:
            raise _error("more than one host_name in server_name")
        name = bytes(ext[p : p + length])
        p += length
    assert name is not None  # the list is not empty
    return _host_name(name)


def _host_name(raw: bytes) -> str:
    if len(raw) > 253:
        raise _error(f"SNI longer than 253 bytes: {raw[:80]!r}...")
    lowered = raw.lower()
    if _DNS_NAME.fullmatch(lowered) is None:
        if raw.endswith(b".") and _DNS_NAME.fullmatch(lowered[:-1]):
            raise _error(f"SNI with a trailing dot: {raw[:80]!r} (RFC 6066 3)")
        if _is_ip_literal(raw):
            raise _error(f"IP literal in SNI: {raw[:80]!r} (RFC 6066 3 allows host names only)")
        raise _error(f"SNI is not a DNS host name: {raw[:80]!r}")
    if IPV4_DOTTED.fullmatch(lowered):
        raise _error(f"IP literal in SNI: {raw[:80]!r} (RFC 6066 3 allows host names only)")
    if NUMERIC_LAST_LABEL.fullmatch(lowered):
        raise _error(f"SNI with a numeric last label: {raw[:80]!r} (an IP spelling, not a host name)")
    return lowered.decode("ascii")


def _is_ip_literal(raw: bytes) -> bool:
    text = raw.decode("ascii", "replace").strip("[]")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _alpn(ext: memoryview) -> tuple[str, ...]:
    """RFC 7301 3.1: ProtocolNameList <2..2^16-1> of ProtocolName <1..2^8-1>."""
    if len(ext) < 3 or _U16.unpack_from(ext)[0] != len(ext) - 2:
        raise _error("malformed ALPN extension")
    names = []
    p, end = 2, len(ext)
    while p < end:
        length = ext[p]
        if length == 0 or p + 1 + length > end:
            raise _error("malformed ALPN protocol name")
        names.append(bytes(ext[p + 1 : p + 1 + length]).decode("ascii", "surrogateescape"))
        p += 1 + length
    return tuple(names)


def _supported_versions(ext: memoryview) -> tuple[int, ...]:
    """RFC 8446 4.2.1: ProtocolVersion versions<2..254> in a ClientHello."""
    if len(ext) < 3 or ext[0] != len(ext) - 1 or ext[0] % 2:
        raise _error("malformed supported_versions extension")
    return struct.unpack_from(f">{ext[0] // 2}H", ext, 1)


def _need(upto: int, end: int, what: str) -> None:
    if upto > end:
        raise _error(f"ClientHello truncated in its {what} (lengths disagree)")


def _describe_not_handshake(buf: bytes | bytearray) -> str:
    first = buf[0]
    if first & 0x80 and (len(buf) < 3 or buf[2] == 1):
        return "SSLv2-compatible ClientHello refused (TLS 1.0 or later with a TLS record is required)"
    if first in (0x14, 0x15, 0x17):
        return f"TLS record of content type {first} where a ClientHello was expected"
    return f"not a TLS handshake (first byte 0x{first:02x})"


def _error(message: str) -> ProtocolError:
    return ProtocolError(message, side="client", status=400)
