"""Parsing the limit values operators type: ``--rps 200``, ``--max-conns 500``, ``--bandwidth 50M``.

Bandwidth units. Network people size links in bits ("a 50M line" is 50 megabits per second;
so do ``tc``, ISPs and speed tests), so a bare suffix means **bits per second**:

    50M  = 50Mbit  = 50 megabits/s  = 6,250,000 bytes/s
    50MB = 50 megabytes/s           = 50,000,000 bytes/s

- bits: no unit, or ``bit``, ``bits``, ``bit/s``, ``bps`` (``50Mbps``);
- bytes: ``B``, ``B/s``, ``byte``, ``bytes``, ``bytes/s`` (``50MB``, ``50MiB/s``);
- prefixes ``k``/``K``, ``M``, ``G``, ``T`` are powers of 1000, ``Ki``, ``Mi``, ``Gi``, ``Ti``
  powers of 1024;
- a lone lowercase ``b`` (``50Mb``, ``50mb``) is refused as ambiguous: it is bits by the
  standard and bytes to many people.

Every limit accepts ``unlimited`` (also ``none``, ``off``) to remove it; zero is refused
(suspending a tenant is how to stop its traffic). Values are returned in the units the
limiters take: requests/s, connections, bytes/s.
"""

from __future__ import annotations

import math
import re

from arcus.errors import OperatorError

UNLIMITED_WORDS = ("unlimited", "none", "off")

_NUMBER = r"(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_BANDWIDTH_RE = re.compile(_NUMBER + r"\s*(?P<prefix>[kKmMgGtT]i?)?(?P<unit>[A-Za-z/]*)")
_RATE_RE = re.compile(_NUMBER + r"\s*(?:/s|/sec|rps)?")

_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
           "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_BIT_UNITS = {"", "bit", "bits", "bit/s", "bits/s", "bps"}
_BYTE_WORDS = {"byte", "bytes", "byte/s", "bytes/s"}

BANDWIDTH_HINT = (
    "write megabits per second as 50Mbit (a bare 50M means the same) "
    "or megabytes per second as 50MB; prefixes k, M, G, T (x1000) and Ki, Mi, Gi, Ti (x1024); "
    "'unlimited' removes the limit"
)


def _is_unlimited(text: str) -> bool:
    return text.strip().lower() in UNLIMITED_WORDS


def parse_rate(text: str) -> float | None:
    """Requests per second: ``"200"``, ``"12.5"``, ``"200/s"`` -> float; ``"unlimited"`` -> None."""
    if _is_unlimited(text):
        return None
    m = _RATE_RE.fullmatch(text.strip())
    if m is None:
        raise OperatorError(
            f"invalid request rate {text!r}",
            code="invalid",
            hint="give requests per second as a number, e.g. 200 or 12.5, or 'unlimited'",
        )
    value = float(m.group("num"))
    if value <= 0 or not math.isfinite(value):
        raise OperatorError(
            f"invalid request rate {text!r}: it must be more than 0",
            code="invalid",
            hint="use 'unlimited' to remove the limit, or suspend the tenant to stop its traffic",
        )
    return value


def parse_count(text: str) -> int | None:
    """A connection count: ``"500"`` -> 500; ``"unlimited"`` -> None."""
    if _is_unlimited(text):
        return None
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit():
        raise OperatorError(
            f"invalid connection limit {text!r}",
            code="invalid",
            hint="give a whole number of connections, e.g. 500, or 'unlimited'",
        )
    value = int(stripped)
    if value <= 0:
        raise OperatorError(
            f"invalid connection limit {text!r}: it must be more than 0",
            code="invalid",
            hint="use 'unlimited' to remove the limit, or suspend the tenant to stop its traffic",
        )
    return value


def parse_bandwidth(text: str) -> float | None:
    """Bandwidth in bytes per second. ``"50M"`` and ``"50Mbit"`` -> 6250000.0 (bits by default);
    ``"50MB"`` -> 50000000.0; ``"unlimited"`` -> None. See the module docstring for units."""
    if _is_unlimited(text):
        return None
    m = _BANDWIDTH_RE.fullmatch(text.strip())
    if m is None:
        raise OperatorError(f"invalid bandwidth {text!r}", code="invalid", hint=BANDWIDTH_HINT)
    prefix = (m.group("prefix") or "").lower()
    unit = m.group("unit")
    if unit in ("b", "b/s"):
        raise OperatorError(
            f"ambiguous bandwidth {text!r}: lowercase 'b' may mean bits or bytes",
            code="invalid",
            hint=BANDWIDTH_HINT,
        )
    if unit.lower() in _BIT_UNITS:
        per_unit = 1 / 8
    elif unit in ("B", "B/s") or unit.lower() in _BYTE_WORDS:
        per_unit = 1.0
    else:
        raise OperatorError(f"invalid bandwidth {text!r}: unknown unit {unit!r}", code="invalid", hint=BANDWIDTH_HINT)
    value = float(m.group("num")) * _PREFIX[prefix] * per_unit
    if value <= 0:
        raise OperatorError(
            f"invalid bandwidth {text!r}: it must be more than 0",
            code="invalid",
            hint="use 'unlimited' to remove the limit, or suspend the tenant to stop its traffic",
        )
    return value


def format_bandwidth(bytes_per_s: float | None) -> str:
    """Show a bandwidth the way operators give it: bits per second, decimal prefixes.

    ``6250000.0`` -> ``"50Mbit/s"``; None -> ``"unlimited"``. ``parse_bandwidth`` reads the
    result back to the same value (up to the 4 significant digits shown).
    """
    if bytes_per_s is None:
        return "unlimited"
    bits = bytes_per_s * 8
    for prefix, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if bits >= scale:
            return f"{bits / scale:.4g}{prefix}bit/s"
    return f"{bits:.4g}bit/s"


def format_duration(seconds: float) -> str:
    """An age or an uptime: ``4.2s``, ``42s``, ``3m05s``, ``2h03m``, ``1d04h`` (CLI and TUI alike)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"
