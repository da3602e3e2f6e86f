"""Validated names of tenants, users and configured objects: metric-safe [A-Za-z0-9._-]."""

from __future__ import annotations

import ipaddress
import re

from arcus.errors import OperatorError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")


def is_valid_name(value: str) -> bool:
    return isinstance(value, str) and _NAME.match(value) is not None


def validate_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid name of a ``kind`` (tenant, user, escaper...)."""
    if not is_valid_name(value):
        raise OperatorError(
            f"invalid {kind} name {value!r}",
            code="invalid",
            hint="use 1-63 characters from A-Z a-z 0-9 . _ - starting with a letter or digit",
        )
    return value


def ip_text(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as Arcus writes it (destinations, logs, records): compressed, and an
    IPv4-mapped one with its IPv4 part dotted (RFC 5952 5), ``::ffff:127.0.0.1`` where Python
    3.11 prints ``::ffff:7f00:1``."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return f"::ffff:{addr.ipv4_mapped}"
    return str(addr)
