"""Finding the end of a chunked body (RFC 9112 7.1) while it streams through, without copying it.

Why a scanner and not a decoder: the proxy forwards the body's raw bytes and only needs to know
where the message ends, and that it is well-formed (a bad chunk size is how requests get
smuggled). Chunk data is skipped by a counter; only size lines, the CRLF after each chunk's data
and trailer lines are looked at, each with one ``find`` and one regex match.
"""

from __future__ import annotations

import re

from arcus.proto.http1_syntax import (
    CHUNK_SIZE_CRLF,
    CHUNK_SIZE_LINE,
    CHUNK_SIZE_PREFIX,
    CTL_BYTES,
    FIELD_LINE_RE,
    FIELD_PREFIX,
    MAX_CHUNK_EXT,
    MAX_CHUNK_LINE,
    Limits,
    describe_field_line,
    describe_start_line,
    error,
)

_SIZE = 0  # expecting a chunk-size line
_DATA = 1  # inside chunk data; _remaining bytes to go
_DATA_CR = 2  # expecting the CR after chunk data
_DATA_LF = 3  # expecting the LF after chunk data
_TRAILER = 4  # expecting a trailer field line or the final empty line
_DONE = 5

_LF = re.compile(b"\n")  # finds a LF in a memoryview without copying it
_SHORT_LINE = 64  # a partial line up to this long is matched whole against its prefix pattern


class ChunkedScanner:
    """Finds where a chunked body ends without copying or re-encoding it, so the proxy forwards raw bytes.

    Validates chunk-size lines (1*HEXDIG, at most 16 hex digits, optional chunk-ext bounded in length), the CRLF
    after each chunk's data, and the trailer section (header-field lines, CRLF-terminated, bounded count and size).
    """

    __slots__ = ("done", "trailers", "_failed", "_limits", "_side", "_status", "_state", "_remaining", "_line", "_trailer_bytes")

    def __init__(self, limits: Limits, side: str = "client", status: int = 400) -> None:
        self.done = False
        self._failed: Exception | None = None  # a broken body stays broken
        self.trailers: list[tuple[bytes, bytes]] = []
        self._limits = limits
        self._side = side
        self._status = status
        self._state = _SIZE
        self._remaining = 0
        self._line = bytearray()  # a size or trailer line split across feeds (bounded)
        self._trailer_bytes = 0

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """How many bytes of ``data`` belong to the body: all of them, unless the body ends inside
        ``data`` (its final CRLF included). 0 once done. Raises ProtocolError on malformed input."""
        if self._state == _DONE:
            if self._failed is not None:
                raise self._failed
            return 0
        n = len(data)
        pos = 0
        while pos < n:
            state = self._state
            if state == _DATA:
                left = n - pos
                if left < self._remaining:
                    self._remaining -= left
                    return n
                pos += self._remaining
                self._remaining = 0
                self._state = _DATA_CR
            elif state == _DATA_CR:
                if data[pos] != 13:
                    raise self._error("chunk data not followed by CRLF (chunk longer than its size)")
                pos += 1
                self._state = _DATA_LF
            elif state == _DATA_LF:
                if data[pos] != 10:
                    raise self._error("chunk data followed by CR without LF")
                pos += 1
                self._state = _SIZE
            elif state == _SIZE:
                # Fast path: the whole size line is here; one regex call reads it.
                m = None if self._line else CHUNK_SIZE_CRLF.match(data, pos, pos + MAX_CHUNK_LINE + 2)
                if m is not None:
                    pos = m.end()
                    ext_len = pos - 2 - m.end(1)
                else:
                    line, pos = self._take_line(data, pos, n, MAX_CHUNK_LINE, CHUNK_SIZE_PREFIX)
                    if line is None:
                        return n
                    m = CHUNK_SIZE_LINE.fullmatch(line)
                    if m is None:
                        raise self._error(_describe_size_line(line))
                    ext_len = len(line) - m.end(1)
                if ext_len > MAX_CHUNK_EXT:
                    raise self._error(f"chunk extensions longer than {MAX_CHUNK_EXT} bytes")
                size = int(m.group(1), 16)
                if not size:
                    self._state = _TRAILER
                    continue
                end = pos + size
                if end + 2 <= n:  # the chunk and its CRLF are here: skip both at once
                    if data[end] != 13 or data[end + 1] != 10:
                        raise self._error("chunk data not followed by CRLF (chunk size does not match its data)")
                    pos = end + 2
                else:
                    self._remaining = size
                    self._state = _DATA
            elif state == _TRAILER and not self._line and pos + 2 <= n and data[pos] == 13 and data[pos + 1] == 10:
                self._state = _DONE  # _TRAILER, fast path: no trailers, the body ends here
                self.done = True
                return pos + 2
            else:  # _TRAILER
                # Trailer lines, CRLFs included, total at most max_header_bytes; the final empty
                # line always fits.
                budget = max(self._limits.max_header_bytes - self._trailer_bytes - 2, 0)
                line, pos = self._take_line(data, pos, n, budget, FIELD_PREFIX)
                if line is None:
                    return n
                self._trailer_bytes += len(line) + 2
                if not line:
                    self._state = _DONE
                    self.done = True
                    return pos
                m = FIELD_LINE_RE.fullmatch(line + b"\r\n")
                if m is None:
                    raise self._error("trailer: " + describe_field_line(line))
                if len(self.trailers) >= self._limits.max_headers:
                    raise self._error(f"more than {self._limits.max_headers} trailer fields")
                self.trailers.append((m.group(1), m.group(2)))
        return n

    def _take_line(
        self, data: bytes | bytearray | memoryview, pos: int, n: int, max_len: int, prefix: re.Pattern[bytes]
    ) -> tuple[bytes | None, int]:
        """The next CRLF-ended line without its CRLF and the position after it; or (None, n), the
        partial line kept in ``self._line`` once it passed the checks a partial line can pass.

        Looks at no more than ``max_len + 2`` bytes of a line and refuses a partial line as soon as
        it cannot end within ``max_len`` bytes (CRLF excluded). A partial line is matched against
        ``prefix`` (the pattern of valid beginnings) while it is short or new; the bytes added to a
        long one are only checked for CTLs and bare CR, and the whole line is matched at its LF.
        That keeps a line dribbled a byte at a time at linear cost.
        """
        held = len(self._line)
        window_end = min(n, pos + max_len + 2 - held)
        if isinstance(data, memoryview):
            m = _LF.search(data, pos, window_end)
            i = -1 if m is None else m.start()
        else:
            i = data.find(b"\n", pos, window_end)
        if i >= 0:
            if held:
                self._line += data[pos : i + 1]
                line = bytes(self._line)
                self._line = bytearray()
            else:
                line = bytes(data[pos : i + 1])
            if line[-2:-1] != b"\r":
                raise self._error("bare LF in chunked body (lines must end with CRLF)")
            return line[:-2], i + 1
        partial = self._line
        partial += data[pos:window_end]
        if len(partial) > max_len and partial[max_len:] != b"\r":
            raise self._error(f"line in chunked body longer than {max_len} bytes")
        if held == 0 or len(partial) <= _SHORT_LINE:
            if prefix.fullmatch(partial) is None:
                raise self._error(self._describe_partial(bytes(partial).rstrip(b"\r"), prefix))
        else:
            added = partial[held - 1 :]  # with the byte before, to catch a CR that was not the end
            if b"\r" in added[:-1] or len(added.translate(None, CTL_BYTES)) != len(added):
                raise self._error(self._describe_partial(bytes(partial).rstrip(b"\r"), prefix))
        return None, n

    @staticmethod
    def _describe_partial(line: bytes, prefix: re.Pattern[bytes]) -> str:
        if prefix is FIELD_PREFIX:
            return "trailer: " + describe_field_line(line)
        return _describe_size_line(line)

    def _error(self, message: str) -> Exception:
        """The ProtocolError to raise; later feeds raise it again (the caller closes the connection)."""
        self._state = _DONE
        self._failed = error(message, self._side, self._status)
        return self._failed


def _describe_size_line(line: bytes) -> str:
    head = line[:1]
    if head in (b" ", b"\t"):
        return "whitespace before chunk size"
    if head in (b"+", b"-"):
        return "sign before chunk size"
    if line[:2] in (b"0x", b"0X"):
        return "0x prefix on chunk size"
    digits = len(line) - len(line.lstrip(b"0123456789abcdefABCDEF"))
    if digits == 0:
        return "chunk size is not hexadecimal: " + describe_start_line(line, "chunk size line")
    if digits > 16:
        return "chunk size longer than 16 hex digits"
    return describe_start_line(line, "chunk size line")
