"""Parsers for the value types a profile uses: durations, sizes, listen addresses, CIDRs.

Pure functions from text to value: no YAML, no I/O. Each raises ``ValueError`` whose
message says what was wrong and what to write instead, so the loader can put it after a
``file:line:`` unchanged (and a CLI option taking a duration or size can reuse it).
One spelling per unit: ``ms s m h`` for durations and ``B KiB MiB GiB`` for sizes.
"""

from __future__ import annotations

import ipaddress
import math
import re

from arcus import units
from arcus.errors import OperatorError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?\Z")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
DURATION_HINT = "write a number of seconds or a number with ms, s, m, h or d (e.g. 30s, 500ms, 5m, 7d)"

_SIZE = re.compile(r"(\d+)(B|KiB|MiB|GiB)?\Z")
_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, None: 1}
SIZE_HINT = "write a number of bytes or a number with KiB, MiB or GiB (e.g. 64KiB)"

LISTEN_HINT = 'write "host:port" with an IP address or localhost, e.g. "127.0.0.1:3128" or "[::1]:3128"'


def parse_duration(text: str) -> float:
    """``"30s"``, ``"500ms"``, ``"5m"``, ``"1h"`` or a bare number of seconds; always > 0."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f'invalid duration "{text}"; {DURATION_HINT}')
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f'duration must be greater than 0, got "{text}"')
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest canonical spelling that ``parse_duration`` reads back to the same value."""
    if seconds < 1 and float(round(seconds * 1000)) == seconds * 1000:
        return f"{round(seconds * 1000)}ms"
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    text = repr(float(seconds))
    if "e" in text:  # parse_duration takes plain decimals only
        text = f"{seconds:.17f}".rstrip("0")
    return f"{text}s"


def parse_size(text: str) -> int:
    """``"64KiB"``, ``"1MiB"``, ``"8192"`` → bytes; always > 0."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise ValueError(f'invalid size "{text}"; {SIZE_HINT}')
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size <= 0:
        raise ValueError(f'size must be greater than 0, got "{text}"')
    return size


def parse_host(host: str) -> str:
    """An IP literal (normalised) or ``localhost``: listeners never bind to a name we would resolve."""
    if host == "localhost":
        return host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f'host "{host}" is not an IP address or localhost') from None


def split_host_port(text: str, what: str, hint: str) -> tuple[str, str, bool]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port text, bracketed); the port is not checked."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f'invalid {what} "{text}"; {hint}')
        host, port_text = text[1:end], text[end + 2 :]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(f'"{host}" in brackets is not an IPv6 address') from None
        return host, port_text, True
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f'invalid {what} "{text}"; {hint}')
    if ":" in host:
        raise ValueError(f'write IPv6 addresses in brackets, e.g. "[{host}]:{port_text}"')
    return host, port_text, False


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:3128"``, ``"[::1]:3128"``, ``"localhost:3128"`` → ``(host, port)``; port 0 allowed."""
    host, port_text, _ = split_host_port(text, "address", LISTEN_HINT)
    if not port_text.isdigit() or not port_text.isascii():
        raise ValueError(f'invalid port "{port_text}" in "{text}"; write a number 0-65535')
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} out of range 0-65535")
    return parse_host(host), port


def format_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f'"{text}" is not an IP address') from None


def parse_cidr(text: str) -> str:
    """A network such as ``10.0.0.0/8`` or ``fd00::/8``; host bits are dropped (``10.1.2.3/8`` ok)."""
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(f'"{text}" is not a CIDR network (e.g. 10.0.0.0/8 or fd00::/8)') from None


def parse_rate(text: str) -> float | None:
    """Requests per second ("200"); "unlimited" gives None."""
    return _units(units.parse_rate, text)


def parse_bandwidth(text: str) -> float | None:
    """Bytes per second from "50Mbit", "10MB", "50M" (bits); "unlimited" gives None."""
    return _units(units.parse_bandwidth, text)


def _units(parse, text: str):
    try:
        return parse(text)
    except OperatorError as exc:
        raise ValueError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from None
