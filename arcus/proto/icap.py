"""ICAP (RFC 3507) messages, sans-io: requests built, responses parsed, no socket, no clock.

The client side only: Arcus sends OPTIONS, REQMOD and RESPMOD and reads what the server answers.

- ``build_request`` writes an ICAP request head with its ``Encapsulated`` offsets (RFC 3507 4.4)
  followed by the encapsulated HTTP heads; the body follows as chunks (``chunk``, ``last_chunk``
  with ``ieof`` when a preview already holds the whole body, 4.5).
- ``ResponseParser`` takes the server's bytes as they come and returns events: ``Head`` (status
  line and fields, folded lines unfolded, TAB continuations included: c-icap folds
  ``X-Violations-Found`` that way), ``Encapsulated`` (each HTTP head of the answer),
  ``Body`` (decoded body bytes, streamed), ``End``. A ``100 Continue`` and a ``204`` are
  heads with nothing after them; the parser then waits for the next message on the connection.
- ``ChunkDecoder`` decodes a chunked body (ICAP's, with its ``ieof`` extension, or an HTTP
  one) into its bytes as they stream through.
- ``parse_options`` reads an OPTIONS answer into ``Options``.

Every malformed or hostile input raises ``ProtocolError(side="upstream", status=502)``; every
buffer is bounded (``MAX_HEAD``, ``MAX_CHUNK_LINE``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from arcus.errors import ProtocolError

MAX_HEAD = 65536  # an ICAP head, or the encapsulated HTTP heads of one answer
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024  # a chunk-size line with its extensions
MAX_CHUNK_SIZE = 1 << 40  # 16 hex digits would overflow nothing in Python, but no peer sends 1 TiB chunks
ENCAP_NAMES = frozenset({b"req-hdr", b"res-hdr", b"req-body", b"res-body", b"null-body", b"opt-body"})
BODY_NAMES = frozenset({b"req-body", b"res-body", b"null-body", b"opt-body"})

_STATUS_LINE = re.compile(rb"ICAP/1\.0 ([1-5][0-9][0-9])(?: ([^\r\n]*))?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


def error(message: str) -> ProtocolError:
    """The ICAP server broke the protocol: its fault, the client gets a 502 (or the fail mode)."""
    return ProtocolError(f"ICAP: {message}", side="upstream", status=502)


# ---------------------------------------------------------------------------------- requests


def build_request(
    method: bytes,
    uri: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    req_hdr: bytes | None = None,
    res_hdr: bytes | None = None,
    body: bytes | None = None,
) -> bytes:
    """An ICAP request head and its encapsulated HTTP heads. ``body``: b"req-body" or
    b"res-body" when chunks follow, None for ``null-body`` (OPTIONS: no Encapsulated parts)."""
    parts: list[bytes] = []
    offset = 0
    for name, section in ((b"req-hdr", req_hdr), (b"res-hdr", res_hdr)):
        if section is not None:
            parts.append(b"%s=%d" % (name, offset))
            offset += len(section)
    if method != b"OPTIONS" or parts:
        parts.append(b"%s=%d" % (body or b"null-body", offset))
    out = [b"%s %s ICAP/1.0\r\n" % (method, uri)]
    out.extend(b"%s: %s\r\n" % (n, v) for n, v in headers)
    if parts:
        out.append(b"Encapsulated: " + b", ".join(parts) + b"\r\n")
    out.append(b"\r\n")
    if req_hdr is not None:
        out.append(req_hdr)
    if res_hdr is not None:
        out.append(res_hdr)
    return b"".join(out)


def chunk(data: bytes | memoryview) -> bytes:
    """One chunk of an encapsulated body (empty data: nothing, never the last-chunk by mistake)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), bytes(data))


def last_chunk(ieof: bool = False) -> bytes:
    """The end of a body, or of a preview (``ieof``: the preview held the whole body)."""
    return b"0; ieof\r\n\r\n" if ieof else b"0\r\n\r\n"


# ---------------------------------------------------------------------------------- heads


def parse_fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Header fields, folded lines (SP or TAB first) joined to the field before with one space."""
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise error("a continuation line before any header field")
            name, value = fields[-1]
            fields[-1] = (name, (value + b" " + line.strip(b" \t")).strip(b" "))
            continue
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise error(f"malformed header line {line[:60]!r}")
        fields.append((name, value.strip(b" \t")))
        if len(fields) > MAX_HEADERS:
            raise error(f"more than {MAX_HEADERS} header fields")
    return fields


def parse_encapsulated(value: bytes) -> list[tuple[bytes, int]]:
    """``req-hdr=0, res-hdr=137, res-body=296`` -> [(name, offset)]: known names, offsets from
    0 and increasing, the last part a body (or null-body) and the only body."""
    parts: list[tuple[bytes, int]] = []
    for item in value.split(b","):
        name, sep, num = item.strip().partition(b"=")
        if not sep or name not in ENCAP_NAMES or not num.isdigit() or len(num) > 9:
            raise error(f"malformed Encapsulated {value[:80]!r}")
        offset = int(num)
        if parts and offset < parts[-1][1]:
            raise error(f"Encapsulated offsets go backwards: {value[:80]!r}")
        if parts and parts[-1][0] in BODY_NAMES:
            raise error(f"Encapsulated has a part after its body: {value[:80]!r}")
        parts.append((name, offset))
    if not parts or parts[-1][0] not in BODY_NAMES:
        raise error(f"Encapsulated must end with a body part (res-body, req-body, null-body): {value[:80]!r}")
    if parts[0][1] != 0:
        raise error(f"Encapsulated must start at offset 0: {value[:80]!r}")
    return parts


def header(fields: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of field ``name`` (case-insensitive), several occurrences joined with ", "."""
    lname = name.lower()
    found = [v for n, v in fields if n.lower() == lname]
    return b", ".join(found) if found else None


@dataclass(frozen=True, slots=True)
class Head:
    """An ICAP response head. ``parts``: the Encapsulated offsets (empty for 100 and 204)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    parts: list[tuple[bytes, int]] = field(default_factory=list)

    def get(self, name: bytes) -> bytes | None:
        return header(self.headers, name)

    @property
    def keep_alive(self) -> bool:
        conn = self.get(b"connection")
        return conn is None or b"close" not in conn.lower()


@dataclass(frozen=True, slots=True)
class Encapsulated:
    """One encapsulated HTTP head of an answer: ``name`` is b"req-hdr" or b"res-hdr"."""

    name: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The message is complete (for a 100 Continue or a 204: right after its head)."""

    ieof: bool = False


Event = Head | Encapsulated | Body | End


# ---------------------------------------------------------------------------------- chunked


class ChunkDecoder:
    """A chunked body's bytes, decoded as they arrive (RFC 9112 7.1 with ICAP's ``ieof``).

    ``feed`` returns (decoded pieces, bytes of the input consumed); ``done`` once the last
    chunk and the empty line after it (or after its trailers) were read; ``ieof`` when the last
    chunk carried that extension. Hostile sizes and unterminated lines raise ``ProtocolError``.
    """

    __slots__ = ("done", "ieof", "_left", "_state", "_line", "_err")

    def __init__(self, err=error) -> None:
        self.done = False
        self.ieof = False
        self._left = 0
        self._state = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailer lines
        self._line = bytearray()
        self._err = err

    def feed(self, data: bytes | bytearray | memoryview) -> tuple[list[bytes], int]:
        out: list[bytes] = []
        view = memoryview(data)
        pos, n = 0, len(view)
        while pos < n and not self.done:
            if self._state == 1:
                take = min(self._left, n - pos)
                out.append(bytes(view[pos : pos + take]))
                pos += take
                self._left -= take
                if self._left == 0:
                    self._state = 2
                continue
            end = bytes(view[pos : min(n, pos + MAX_CHUNK_LINE + 2)]).find(b"\n")
            if end < 0:
                self._line += view[pos:n]
                if len(self._line) > MAX_CHUNK_LINE:
                    raise self._err("a chunk line too long")
                return out, n
            line = bytes(self._line) + bytes(view[pos : pos + end])
            self._line.clear()
            pos += end + 1
            if len(line) > MAX_CHUNK_LINE:
                raise self._err("a chunk line too long")
            if not line.endswith(b"\r"):
                raise self._err("a chunk line not ended by CRLF")
            line = line[:-1]
            if self._state == 2:
                if line:
                    raise self._err("chunk data longer than its size")
                self._state = 0
            elif self._state == 0:
                size, _, ext = line.partition(b";")
                size = size.strip(b" \t")
                if not _HEX.fullmatch(size):
                    raise self._err(f"malformed chunk size {line[:40]!r}")
                self._left = int(size, 16)
                if self._left > MAX_CHUNK_SIZE:
                    raise self._err("a chunk larger than 1 TiB")
                if self._left:
                    self._state = 1
                else:
                    self.ieof = b"ieof" in [e.strip(b" \t").lower() for e in ext.split(b";")]
                    self._state = 3
            elif not line:  # state 3: the empty line after the last chunk (and its trailers)
                self.done = True
        return out, pos


# ---------------------------------------------------------------------------------- responses


class ResponseParser:
    """The ICAP server's answers on one connection, one message after another.

    ``feed(data)`` -> events, in order: ``Head``; for a 200, one ``Encapsulated`` per HTTP head
    and, when there is a body, ``Body`` pieces; then ``End``. A 100 or 204 is ``Head`` then
    ``End``. Bytes after an ``End`` wait for the next message (``pending`` says whether any do).
    """

    __slots__ = ("_buf", "_state", "_head", "_decoder", "_scanned")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = 0  # 0 head, 1 encapsulated heads, 2 body
        self._head: Head | None = None
        self._decoder: ChunkDecoder | None = None
        self._scanned = 0

    @property
    def pending(self) -> bool:
        """Bytes (or a message) are in the middle of being read."""
        return bool(self._buf) or self._state != 0

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while True:
            if self._state == 0:
                if not self._head_step(events):
                    return events
            elif self._state == 1:
                if not self._encap_step(events):
                    return events
            else:
                assert self._decoder is not None
                pieces, used = self._decoder.feed(self._buf)
                del self._buf[:used]
                events.extend(Body(p) for p in pieces if p)
                if not self._decoder.done:
                    return events
                events.append(End(self._decoder.ieof))
                self._reset()

    def _reset(self) -> None:
        self._state = 0
        self._head = None
        self._decoder = None

    def _head_step(self, events: list[Event]) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise error(f"a response head longer than {MAX_HEAD} bytes")
            self._scanned = len(buf)
            return False
        if end > MAX_HEAD:
            raise error(f"a response head longer than {MAX_HEAD} bytes")
        self._scanned = 0
        raw = bytes(buf[:end])
        del buf[: end + 4]
        lines = raw.split(b"\r\n")
        m = _STATUS_LINE.fullmatch(lines[0])
        if m is None:
            raise error(f"malformed status line {lines[0][:60]!r}")
        status = int(m.group(1))
        fields = parse_fields(lines[1:])
        encap = header(fields, b"encapsulated")
        parts = parse_encapsulated(encap) if encap is not None else []
        head = Head(status, m.group(2) or b"", fields, parts)
        events.append(head)
        if status in (100, 204) or not parts:
            if status == 200 and not parts:
                raise error("a 200 without Encapsulated")
            events.append(End())
            return True
        self._head = head
        self._state = 1
        return True

    def _encap_step(self, events: list[Event]) -> bool:
        head = self._head
        assert head is not None
        parts = head.parts
        body_offset = parts[-1][1]
        if body_offset > MAX_HEAD:
            raise error(f"encapsulated heads longer than {MAX_HEAD} bytes")
        if len(self._buf) < body_offset:
            return False
        for (name, start), (_, stop) in zip(parts, parts[1:]):
            section = bytes(self._buf[start:stop])
            if not section.endswith(b"\r\n\r\n"):
                raise error(f"the encapsulated {name.decode()} does not end where Encapsulated says")
            events.append(Encapsulated(name, section))
        del self._buf[:body_offset]
        if parts[-1][0] == b"null-body":
            events.append(End())
            self._reset()
            return True
        self._state = 2
        self._decoder = ChunkDecoder()
        return True


# ---------------------------------------------------------------------------------- OPTIONS


@dataclass(frozen=True, slots=True)
class Options:
    """What a service said about itself (RFC 3507 4.10.2)."""

    methods: frozenset[str]
    istag: str = ""
    preview: int | None = None  # bytes the server wants first; None: no preview
    ttl: float | None = None  # seconds the answer may be cached; None: no bound given
    max_connections: int | None = None
    allow_204: bool = False
    transfer_preview: tuple[str, ...] = ("*",)
    transfer_ignore: tuple[str, ...] = ()
    transfer_complete: tuple[str, ...] = ()

    def transfer(self, extension: str) -> str:
        """How a body of a file with ``extension`` goes: "ignore", "complete" or "preview"."""
        ext = extension.lower()
        for mode, exts in (("ignore", self.transfer_ignore), ("complete", self.transfer_complete), ("preview", self.transfer_preview)):
            if ext in exts:
                return mode
        for mode, exts in (("ignore", self.transfer_ignore), ("complete", self.transfer_complete), ("preview", self.transfer_preview)):
            if "*" in exts:
                return mode
        return "preview"


def _int_field(head: Head, name: bytes, low: int) -> int | None:
    raw = head.get(name.lower())
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 10 or int(raw) < low:
        raise error(f"malformed {name.decode()}: {raw[:40]!r}")  # name as the RFC spells it
    return int(raw)


def _list_field(head: Head, name: bytes) -> tuple[str, ...] | None:
    raw = head.get(name)
    if raw is None:
        return None
    return tuple(x.strip().decode("latin-1").lower() for x in raw.split(b",") if x.strip())


def parse_options(head: Head) -> Options:
    """An OPTIONS answer (a 200 head) as ``Options``; ProtocolError if it is not one."""
    if head.status != 200:
        raise error(f"OPTIONS answered {head.status} {head.reason.decode('latin-1')}")
    methods = head.get(b"methods")
    if methods is None:
        raise error("OPTIONS answer without Methods")
    allow = _list_field(head, b"allow") or ()
    preview = _list_field(head, b"transfer-preview")
    return Options(
        methods=frozenset(m.strip().decode("latin-1").upper() for m in methods.split(b",") if m.strip()),
        istag=(head.get(b"istag") or b"").strip(b'" ').decode("latin-1"),
        preview=_int_field(head, b"Preview", 0),
        ttl=None if (ttl := _int_field(head, b"Options-TTL", 0)) is None else float(ttl),
        max_connections=_int_field(head, b"Max-Connections", 1),
        allow_204="204" in allow,
        transfer_preview=preview if preview is not None else ("*",),
        transfer_ignore=_list_field(head, b"transfer-ignore") or (),
        transfer_complete=_list_field(head, b"transfer-complete") or (),
    )


# ---------------------------------------------------------------------------------- verdicts

_THREAT = re.compile(rb"Threat=([^;\r\n]+)", re.IGNORECASE)


def threat(head: Head) -> str | None:
    """The threat an answer names: ``X-Infection-Found``'s Threat= (RFC draft
    "ICAP extensions"), else ``X-Violations-Found``' (count line, then filename, threat name,
    violation id, disposition per violation), else None."""
    found = head.get(b"x-infection-found")
    if found is not None:
        m = _THREAT.search(found)
        name = (m.group(1) if m else found).strip()
        return name.decode("latin-1")[:200] or "unknown"
    violations = head.get(b"x-violations-found")
    if violations is not None:
        words = violations.split()
        # "1 filename THREAT 0 2": after unfolding, the count, then 4 items per violation
        if len(words) >= 3 and words[0].isdigit():
            return words[2].decode("latin-1")[:200]
        return violations.strip().decode("latin-1")[:200] or "unknown"
    return None
