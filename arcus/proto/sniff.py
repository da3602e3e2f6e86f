"""Sans-io protocol recognition from a tunnel's first bytes, both ways.

A tunnel (CONNECT, SOCKS, sni_proxy, streams) is a byte stream whose protocol the client never
declares. ``Sniffer`` watches copies of the first bytes each side sends and names the protocol
once they tell; it never holds, delays or changes a byte (the caller forwards every chunk as it
comes, after feeding it here), and it never reads a clock or a socket.

Client-first protocols are named from the client's first bytes:

- ``tls``: a TLS handshake record (0x16 0x03 0x00-0x04); the ClientHello is read with
  :func:`arcus.proto.tls.parse_client_hello` for its server name (``sni``) and ALPN list. A hello
  that record header announces but the reader refuses (or that does not complete within the
  bounds) is still ``tls``, without a name.
- ``http2``: the connection preface ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`` (RFC 9113 3.4).
- ``http``: an HTTP/1.x request line (a known method, a space, a request target, and, when the
  line ends within the bounds, ``HTTP/1.0`` or ``HTTP/1.1``); ``method`` names the method.
- ``ssh``: the identification string ``SSH-2.0-...`` (or ``SSH-1.99-``/``SSH-1.5-``, RFC 4253 4.2).
- ``bittorrent``: the peer handshake ``\\x13BitTorrent protocol`` (BEP 3).
- ``rdp``: a TPKT header (RFC 1006) carrying an X.224 Connection Request (MS-RDPBCGR 2.2.1.1).
- ``dns``: one DNS query over TCP (RFC 1035 4.2.2: a two-byte length, then a header with QR=0,
  one question, no answer or authority records, and a well-formed question name).

Server-first protocols (SMTP, IMAP, POP3, FTP, and SSH when its server speaks first) show
nothing from the client: their client waits for the server's greeting. So when the *upstream*
sends first, its first line is read instead -- there is no timer and no wait of our own: the
upstream's greeting is the first thing that crosses the tunnel anyway.

- ``SSH-`` → ``ssh``; ``+OK`` → ``pop3``; ``* OK`` / ``* PREAUTH`` / ``* BYE`` → ``imap``;
- ``220`` greets both SMTP and FTP: a greeting naming ``SMTP`` (``ESMTP`` included) or ``LMTP``
  is ``smtp``, one naming ``FTP`` is ``ftp``; otherwise the client's first command decides
  (``EHLO``/``HELO``/``LHLO`` → ``smtp``; ``USER``, ``AUTH``, ``FEAT``, ``SYST``, ``OPTS`` → ``ftp``),
  and if it does not, ``unknown``.

Anything else is ``unknown``. Bounds: at most :data:`MAX_CLIENT_BYTES` client bytes and
:data:`MAX_SERVER_BYTES` server bytes are copied, at most :data:`MAX_CHUNKS` chunks per side are
looked at (a client dribbling one byte per segment costs a bounded amount of work), and the
caller may end the watch at any time with ``finish`` (the tunnel ended, or its time bound
passed): what is known by then is the answer, ``unknown`` if nothing is.

Cost: one prefix comparison per recogniser on the first chunk (a few microseconds; the TLS hello
reader dominates, about 10 us for a browser's hello), nothing once the protocol is named.
``docs/policy.md`` (the ``protocols`` condition) says the same for operators.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from arcus.errors import ProtocolError
from arcus.proto.tls import looks_like_tls, parse_client_hello

__all__ = [
    "MAX_CHUNKS",
    "MAX_CLIENT_BYTES",
    "MAX_SERVER_BYTES",
    "PROTOCOLS",
    "UNKNOWN",
    "Sniffed",
    "Sniffer",
    "sniff_client",
    "sniff_server",
]

TLS = "tls"
HTTP = "http"
HTTP2 = "http2"
SSH = "ssh"
SMTP = "smtp"
IMAP = "imap"
POP3 = "pop3"
FTP = "ftp"
RDP = "rdp"
BITTORRENT = "bittorrent"
DNS = "dns"
UNKNOWN = "unknown"
PROTOCOLS: tuple[str, ...] = (TLS, HTTP, HTTP2, SSH, SMTP, IMAP, POP3, FTP, RDP, BITTORRENT, DNS, UNKNOWN)
"""Every name the sniffer gives, as a policy rule's ``protocols`` condition spells it."""

MAX_CLIENT_BYTES = 16384  # a ClientHello with post-quantum key shares is ~1.8 kB; room for 8x that
MAX_SERVER_BYTES = 1024  # a greeting line (RFC 5321 4.5.3.1.5: 512 bytes) and then some
MAX_CHUNKS = 8  # chunks looked at per side before giving up
MAX_BANNER = 100  # characters of a greeting or identification line kept for the record

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BT_HANDSHAKE = b"\x13BitTorrent protocol"
_METHODS = (
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"REPORT", b"SEARCH",
)
_LONGEST_METHOD = max(len(m) for m in _METHODS)
_VERSION = re.compile(rb" HTTP/1\.[01]\r?\n")
_SSH_VERSIONS = (b"SSH-2.0-", b"SSH-1.99-", b"SSH-1.5-")
_SMTP_WORDS = re.compile(rb"\b(E?SMTP|LMTP)\b", re.IGNORECASE)
_FTP_WORDS = re.compile(rb"FTP", re.IGNORECASE)
_SMTP_COMMANDS = (b"EHLO", b"HELO", b"LHLO")
_FTP_COMMANDS = (b"USER", b"AUTH", b"FEAT", b"SYST", b"OPTS", b"PASS", b"PBSZ", b"CLNT", b"HOST")
_U16 = struct.Struct(">H")
_DNS_HEAD = struct.Struct(">HHHHHHH")  # length, id, flags, qd, an, ns, ar

_MORE = None  # a recogniser that needs more bytes answers this; one that says no answers False


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What a tunnel's first bytes said."""

    protocol: str  # one of PROTOCOLS
    side: str = "client"  # whose bytes told: "client" or "server" (a server-first greeting)
    sni: str | None = None  # TLS: the ClientHello's server name
    alpn: tuple[str, ...] = ()  # TLS: the ALPN protocols offered, in the client's order
    method: str | None = None  # HTTP/1: the request method
    banner: str | None = None  # SSH identification or a server greeting, first line, printable


_UNKNOWN_CLIENT = Sniffed(UNKNOWN)
_UNKNOWN_SERVER = Sniffed(UNKNOWN, "server")


def _printable(line: bytes) -> str:
    text = line.split(b"\n", 1)[0].rstrip(b"\r")[:MAX_BANNER].decode("ascii", "replace")
    return "".join(c if " " <= c <= "~" else "?" for c in text)


# ---------------------------------------------------------------------------- client first


def _tls(buf: bytes) -> Sniffed | bool | None:
    looks = looks_like_tls(buf)
    if looks is None:
        return _MORE
    if not looks:
        return False
    try:
        hello = parse_client_hello(buf)
    except ProtocolError:
        return Sniffed(TLS)  # a record header of TLS, a hello we cannot read: no name
    if hello is None:
        return _MORE
    return Sniffed(TLS, sni=hello.sni, alpn=hello.alpn)


def _http2(buf: bytes) -> Sniffed | bool | None:
    n = min(len(buf), len(H2_PREFACE))
    if buf[:n] != H2_PREFACE[:n]:
        return False
    return Sniffed(HTTP2) if n == len(H2_PREFACE) else _MORE


def _http1(buf: bytes) -> Sniffed | bool | None:
    space = buf.find(b" ", 0, _LONGEST_METHOD + 1)
    if space < 0:
        if len(buf) > _LONGEST_METHOD or not any(m.startswith(buf) for m in _METHODS):
            return False
        return _MORE
    method = buf[:space]
    if method not in _METHODS:
        return False
    if len(buf) == space + 1:
        return _MORE
    first = buf[space + 1 : space + 2]
    if method == b"CONNECT":
        if not (first.isalnum() or first == b"["):
            return False
    elif first not in (b"/", b"*", b"h", b"H"):  # origin, asterisk or absolute form
        return False
    end = buf.find(b"\n", space)
    if end < 0:
        return _MORE  # the caller's bounds decide a request line that never ends (see _bounded)
    if _VERSION.search(buf, space, end + 1) is None or b" " in buf[space + 1 : buf.rfind(b" ", space, end)]:
        return False
    return Sniffed(HTTP, method=method.decode("ascii"))


def _ssh(buf: bytes) -> Sniffed | bool | None:
    for version in _SSH_VERSIONS:
        n = min(len(buf), len(version))
        if buf[:n] == version[:n]:
            if n < len(version) or (b"\n" not in buf and len(buf) < 255):
                return _MORE  # the whole line (255 bytes at most, RFC 4253 4.2) names the software
            return Sniffed(SSH, banner=_printable(buf))
    return False


def _bittorrent(buf: bytes) -> Sniffed | bool | None:
    n = min(len(buf), len(BT_HANDSHAKE))
    if buf[:n] != BT_HANDSHAKE[:n]:
        return False
    return Sniffed(BITTORRENT) if n == len(BT_HANDSHAKE) else _MORE


def _rdp(buf: bytes) -> Sniffed | bool | None:
    """TPKT version 3, reserved 0, a length of 11..4096 whose X.224 length indicator agrees,
    and the Connection Request code 0xE0 (MS-RDPBCGR 2.2.1.1)."""
    if buf[0] != 3:
        return False
    if len(buf) < 6:
        return False if len(buf) >= 2 and buf[1] != 0 else _MORE
    length = _U16.unpack_from(buf, 2)[0]
    if buf[1] != 0 or not 11 <= length <= 4096 or buf[4] != length - 5 or buf[5] != 0xE0:
        return False
    return Sniffed(RDP)


def _dns(buf: bytes) -> Sniffed | bool | None:
    """One standard query: QR=0, opcode 0, one question, no answers or authority records, at
    most one additional record (EDNS OPT), and a question name of valid labels."""
    if len(buf) < 14:
        return _MORE if len(buf) < 2 or 17 <= _U16.unpack_from(buf)[0] <= 512 else False
    length, _id, flags, qd, an, ns, ar = _DNS_HEAD.unpack_from(buf)
    if not 17 <= length <= 512 or flags & 0xF800 or qd != 1 or an or ns or ar > 1:
        return False
    if len(buf) < 2 + length:
        return _MORE
    p, end, total = 14, 2 + length, 0
    while True:
        if p >= end:
            return False
        label = buf[p]
        if label == 0:
            break
        if label > 63:
            return False
        total += label + 1
        if total > 255:
            return False
        p += 1 + label
    if p + 5 > end:
        return False
    qclass = _U16.unpack_from(buf, p + 3)[0]
    if qclass not in (1, 3, 255):  # IN, CH, ANY
        return False
    return Sniffed(DNS)


_CLIENT_RECOGNISERS = (_tls, _http2, _http1, _ssh, _bittorrent, _rdp, _dns)


def sniff_client(buf: bytes) -> Sniffed | None:
    """The protocol of a tunnel whose client spoke first with ``buf``; None while more bytes
    could still tell (the caller's bounds end the wait: :class:`Sniffer`)."""
    if not buf:
        return None
    more = False
    for recognise in _CLIENT_RECOGNISERS:
        found = recognise(buf)
        if found is _MORE:
            more = True
        elif found is not False:
            return found  # type: ignore[return-value]
    return None if more else _UNKNOWN_CLIENT


# ---------------------------------------------------------------------------- server first


def sniff_server(buf: bytes) -> Sniffed | None:
    """The protocol of a tunnel whose upstream spoke first with ``buf``: a greeting; None while
    its first line is incomplete. A ``220`` greeting naming neither SMTP nor FTP gives
    ``Sniffed("unknown", "server", banner=...)`` with the banner kept: :class:`Sniffer` then asks
    the client's first command."""
    if not buf:
        return None
    found = _ssh(buf)
    if found is _MORE:
        return None
    if found:
        return Sniffed(SSH, "server", banner=found.banner)  # type: ignore[union-attr]
    for prefix, proto in ((b"+OK", POP3), (b"* OK", IMAP), (b"* PREAUTH", IMAP), (b"* BYE", IMAP)):
        n = min(len(buf), len(prefix))
        if buf[:n] == prefix[:n]:
            if n < len(prefix) or b"\n" not in buf:
                return None  # the whole first line, for the record (bounded by MAX_SERVER_BYTES)
            return Sniffed(proto, "server", banner=_printable(buf))
    if buf[:3] == b"220"[: len(buf[:3])]:
        if len(buf) < 4:
            return None
        if buf[3:4] not in (b" ", b"-", b"\r", b"\n"):
            return _UNKNOWN_SERVER
        end = buf.find(b"\n")
        if end < 0:
            return None
        line = buf[:end]
        banner = _printable(line)
        if _SMTP_WORDS.search(line):
            return Sniffed(SMTP, "server", banner=banner)
        if _FTP_WORDS.search(line):
            return Sniffed(FTP, "server", banner=banner)
        return Sniffed(UNKNOWN, "server", banner=banner)  # 220: SMTP or FTP, the client will say
    return _UNKNOWN_SERVER


def _command(line: bytes) -> bytes:
    return line.split(b"\n", 1)[0].rstrip(b"\r").split(b" ", 1)[0].upper()


# ---------------------------------------------------------------------------- both ways


class Sniffer:
    """Watches one tunnel's first bytes both ways; ``result`` once the protocol is named.

    Feed every chunk each side sends, in order, until ``result`` is set (``client_data`` and
    ``server_data`` return it then, once; None before and after). ``finish()`` ends the watch
    with what is known. The side that speaks first is the one read; the other side is only
    read for a ``220`` greeting that did not say whether it was SMTP or FTP.
    """

    __slots__ = ("result", "first", "_client", "_server", "_client_chunks", "_server_chunks", "_greeting")

    def __init__(self) -> None:
        self.result: Sniffed | None = None
        self.first: str | None = None  # the side that spoke first: "client" or "server"
        self._client = b""
        self._server = b""
        self._client_chunks = 0
        self._server_chunks = 0
        self._greeting: Sniffed | None = None  # a 220 greeting waiting for the client's command

    @property
    def done(self) -> bool:
        return self.result is not None

    def client_data(self, data: bytes) -> Sniffed | None:
        if self.result is not None or not data:
            return None
        if self.first is None:
            self.first = "client"
        elif self.first == "server" and self._greeting is None:
            return None  # the server spoke first: its greeting decides
        self._client_chunks += 1
        buf = self._client = self._client + data[: MAX_CLIENT_BYTES - len(self._client)]
        full = len(buf) >= MAX_CLIENT_BYTES or self._client_chunks >= MAX_CHUNKS
        greeting = self._greeting
        if greeting is not None:
            if b"\n" not in buf and not full:
                return None
            command = _command(buf)
            proto = SMTP if command in _SMTP_COMMANDS else FTP if command in _FTP_COMMANDS else UNKNOWN
            return self._decide(Sniffed(proto, "server", banner=greeting.banner))
        found = sniff_client(buf)
        if found is None and full:
            found = _bounded(buf)
        return self._decide(found) if found is not None else None

    def server_data(self, data: bytes) -> Sniffed | None:
        if self.result is not None or self._greeting is not None or not data:
            return None
        if self.first is None:
            self.first = "server"
        elif self.first == "client":
            return None  # the client spoke first: its bytes decide
        self._server_chunks += 1
        buf = self._server = self._server + data[: MAX_SERVER_BYTES - len(self._server)]
        found = sniff_server(buf)
        if found is None and (len(buf) >= MAX_SERVER_BYTES or self._server_chunks >= MAX_CHUNKS):
            found = _UNKNOWN_SERVER
        if found is None:
            return None
        if found.protocol == UNKNOWN and found.banner is not None:
            self._greeting = found  # a bare 220: the client's first command decides
            return None
        return self._decide(found)

    def finish(self) -> Sniffed:
        """End the watch: the protocol named, or what the bytes so far allow (``unknown``)."""
        if self.result is None:
            if self._greeting is not None:
                found = Sniffed(UNKNOWN, "server", banner=self._greeting.banner)
            elif self.first == "server":
                found = _UNKNOWN_SERVER
            else:
                found = _bounded(self._client) if self._client else _UNKNOWN_CLIENT
            self._decide(found)
        assert self.result is not None
        return self.result

    def _decide(self, found: Sniffed) -> Sniffed:
        self.result = found
        self._client = self._server = b""
        self._greeting = None
        return found


def _bounded(buf: bytes) -> Sniffed:
    """The answer when no more bytes will be looked at: a TLS record header is ``tls``, an SSH
    identification or an HTTP request line that has not ended yet is ``ssh`` or ``http``;
    anything else ``unknown``."""
    if looks_like_tls(buf):
        return Sniffed(TLS)
    if buf.startswith(_SSH_VERSIONS):
        return Sniffed(SSH, banner=_printable(buf))
    space = buf.find(b" ", 0, _LONGEST_METHOD + 1)
    if space > 0 and buf[:space] in _METHODS and _http1(buf) is _MORE and len(buf) > space + 1:
        return Sniffed(HTTP, method=buf[:space].decode("ascii"))
    return _UNKNOWN_CLIENT
