"""HTTP/1.x grammar as precompiled byte regexes, shared by the head parsers and the chunked scanner.

Why one module of patterns: every check on the hot path is one C-level ``re`` call over a whole
line or a whole header block, never a Python loop over bytes. The patterns here are the single
statement of what Arcus accepts (RFC 9110 5.5/5.6, RFC 9112 2-7); docs/http-conformance.md
describes the same rules in prose. Diagnosis of *why* something failed runs only on the error
path and may be slow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from arcus.errors import ProtocolError


@dataclass(slots=True)
class Limits:
    """Bounds on one message head; mirrors arcus.config.schema.HttpLimits (the proxy passes those)."""

    max_request_line: int = 8192  # request line (or status line), CRLF excluded
    max_header_bytes: int = 65536  # the whole head: start line, fields, final empty line
    max_headers: int = 100  # field lines in a head (and in a chunked trailer section)


# --- grammar pieces (RFC 9110 5.6.2 token, 5.5 field values) ---------------------------------

TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
TOKEN = TCHAR + rb"+"
VCHAR_OBS = rb"[\x21-\x7e\x80-\xff]"  # field-vchar: visible ASCII or obs-text
# A field line: name ":" OWS value OWS CRLF. The value group starts and ends on a field-vchar,
# so OWS on both sides falls outside it (the stripped value costs no Python work).
FIELD_LINE = (
    rb"(" + TOKEN + rb"):[ \t]*((?:" + VCHAR_OBS + rb"+(?:[ \t]+" + VCHAR_OBS + rb"+)*)?)[ \t]*\r\n"
)
FIELD_LINE_RE = re.compile(FIELD_LINE)
# Extraction and validation in one findall: every match starts right after a CRLF (the
# lookbehind sees the start line's CRLF even at ``pos``) and holds no CR or LF, so each match is
# exactly one whole line. The block is valid iff the number of matches equals the number of
# CRLFs in it; the findall result is then the header list as is, without a Python loop. The
# value group is one charset run (sre's fastest loop), so it keeps trailing OWS: the caller
# strips it only when the block holds a SP or HTAB right before a CRLF (rare).
FIELDS = re.compile(rb"(?<=\r\n)(" + TOKEN + rb"):[ \t]*([\t\x20-\x7e\x80-\xff]*)\r\n")
# Loose validation of CRLF-ended field lines seen so far in an incomplete head.
FIELD_BLOCK = re.compile(rb"(?:" + TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*")
# What a field line without its CRLF yet may look like (a prefix of a valid one).
FIELD_PREFIX = re.compile(TCHAR + rb"*(?::[\t\x20-\x7e\x80-\xff]*)?\r?")

# method SP target SP version. An absolute-URI target (scheme "://" authority path-abempty
# [ "?" query ], no fragment) is split by the same match: groups scheme, authority and rest.
# Any other target (origin-, authority-, asterisk-form, or invalid) leaves those groups None.
REQUEST_LINE = re.compile(
    rb"(" + TOKEN + rb") "
    rb"((?:([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#\x00-\x20\x7f]*)([/?][^#\x00-\x20\x7f]*)?)|[^\x00-\x20\x7f]+)"
    rb" HTTP/([0-9]\.[0-9])"
)
# Lenient on one point only: "HTTP/1.1 200" with neither SP nor reason is common in the wild.
STATUS_LINE = re.compile(rb"HTTP/([0-9]\.[0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")


def _nested_prefix(parts: list[bytes]) -> bytes:
    """p0(?:p1(?:p2...)?)? -- matches every prefix of p0 p1 p2 ... (each part atomic enough)."""
    out = b""
    for part in reversed(parts[1:]):
        out = b"(?:" + part + out + b")?"
    return parts[0] + out


REQUEST_LINE_PREFIX = re.compile(
    _nested_prefix(
        [b"", TCHAR + b"+", b" ", rb"[^\x00-\x20\x7f]+", b" ", b"H", b"T", b"T", b"P", b"/", b"[0-9]", rb"\.", b"[0-9]"]
    )
    + rb"\r?"
)
STATUS_LINE_PREFIX = re.compile(
    _nested_prefix(
        [b"", b"H", b"T", b"T", b"P", b"/", b"[0-9]", rb"\.", b"[0-9]", b" ", b"[0-9]", b"[0-9]", b"[0-9]",
         rb" [\t\x20-\x7e\x80-\xff]*"]
    )
    + rb"\r?"
)

# Bytes that never appear in a head or a chunked framing line: CTLs other than HTAB, CR and LF
# (those are checked apart). For bytes.translate(None, CTL_BYTES), a C loop far faster than sre.
CTL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")  # 18 digits: no integer overflow anywhere downstream
CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs except HTAB
CTL_OR_HTAB = re.compile(rb"[\x00-\x1f\x7f]")
NON_TOKEN = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")

# --- request targets and hosts (RFC 9112 3.2, RFC 3986 3.2) ----------------------------------

# host [":" port]: an IPv6 literal in brackets, or a reg-name restricted to what DNS names and
# IPv4 literals use (unreserved characters). sub-delims and pct-encoding are refused: no name a
# resolver can look up contains them, and they only make policy matching ambiguous.
HOST_PORT = re.compile(rb"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._~\-]+))(?::([0-9]*))?")
# A name whose last label is numeric is an IPv4 literal to getaddrinfo/inet_aton ("127.1",
# "0x7f.1", "2130706433", "010.0.0.1"); only the canonical dotted quad is accepted.
NUMERIC_LAST_LABEL = re.compile(rb"(?:.*\.)?(?:[0-9]+|0[xX][0-9A-Fa-f]*)\.?")
IPV4_DOTTED = re.compile(rb"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")

# --- chunked coding (RFC 9112 7.1) -------------------------------------------------------------

MAX_CHUNK_EXT = 4096  # bytes of chunk extensions on one size line
MAX_CHUNK_SIZE_DIGITS = 16
MAX_CHUNK_LINE = MAX_CHUNK_SIZE_DIGITS + MAX_CHUNK_EXT  # CRLF excluded
_QUOTED = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
CHUNK_EXT = rb"(?:[ \t]*;[ \t]*" + TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + TOKEN + rb"|" + _QUOTED + rb"))?)*"
# chunk-size [ chunk-ext ], CRLF excluded. No sign, no "0x", no leading or trailing space.
CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})" + CHUNK_EXT)
CHUNK_SIZE_CRLF = re.compile(rb"([0-9A-Fa-f]{1,16})" + CHUNK_EXT + rb"\r\n")  # the same, CRLF included
# What a size line without its LF yet may look like, so garbage is refused before a LF arrives.
CHUNK_SIZE_PREFIX = re.compile(rb"[0-9A-Fa-f]{0,16}(?:(?<=[0-9A-Fa-f])[ \t;][\t\x20-\x7e\x80-\xff]*)?\r?")


def error(message: str, side: str, status: int) -> ProtocolError:
    return ProtocolError(message, side=side, status=status)


def describe_start_line(line: bytes, what: str) -> str:
    """Why a request or status line (CRLF excluded) failed its pattern; error path only."""
    if b"\n" in line:
        return f"bare LF in {what} (lines must end with CRLF)"
    if b"\r" in line:
        return f"bare CR in {what}"
    if b"\x00" in line:
        return f"NUL byte in {what}"
    if CTL_OR_HTAB.search(line):
        return f"control character in {what}"
    return f"malformed {what}: {_show(line)}"


def describe_field_line(line: bytes) -> str:
    """Why one field line (CRLF excluded) is not ``token ":" OWS value OWS``; error path only."""
    if b"\n" in line:
        return "bare LF in header section (lines must end with CRLF)"
    if b"\r" in line:
        return "bare CR in header section"
    if line[:1] in (b" ", b"\t"):
        return "obs-fold (a header line starting with whitespace) is not accepted"
    name, colon, value = line.partition(b":")
    if not colon:
        return f"header line without a colon: {_show(line)}"
    if not name:
        return "empty header field name"
    if name[-1:] in (b" ", b"\t"):
        return f"whitespace between header field name and colon: {_show(name)}"
    if NON_TOKEN.search(name):
        return f"invalid character in header field name: {_show(name)}"
    if b"\x00" in value:
        return f"NUL byte in value of header {_show(name)}"
    if CTL.search(value):
        return f"control character in value of header {_show(name)}"
    return f"malformed header line: {_show(line)}"


def describe_bad_block(block: bytes) -> str:
    """The first problem in a run of CRLF-separated field lines; error path only."""
    for line in block.split(b"\r\n"):
        if line and not FIELD_BLOCK.fullmatch(line + b"\r\n"):
            return describe_field_line(line)
    return "malformed header section"


def _show(data: bytes, limit: int = 60) -> str:
    """A short, log-safe rendering of peer bytes for an error message."""
    text = repr(bytes(data[:limit]))
    return text + ("..." if len(data) > limit else "")
