"""Checks of the values the store keeps for tenants and users, done before any transaction.

Each check returns the normalized value or raises an OperatorError (code "invalid") that names
the setting and says what to write instead. None always means "not set" (no limit, the default
realm, the built-in block page). Secrets are never quoted in an error.
"""

from __future__ import annotations

import math
import re
import string
from datetime import datetime, timezone
from typing import Any

from arcus.errors import OperatorError
from arcus.names import is_valid_name

AUTH_MODES = ("none", "optional", "required")
DEFAULT_ACTIONS = ("allow", "deny")
BLOCK_PAGE_FIELDS = ("tenant", "rule", "reason", "request_id", "host")
MAX_REALM = 100
MAX_BLOCK_PAGE = 65_536
MAX_SECRET = 1024
MAX_CONNS = 1_000_000_000

_REALM = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]+\Z")  # printable ASCII without '"' and '\'
_SECRET = re.compile(r"\$([a-z0-9]+)\$[\x21-\x7e]+\Z")
# Scheme names as arcus.auth.secrets.identify_secret gives them; the store cannot import
# arcus.auth (a higher layer), so it recognizes the prefix here and the daemon and the CLI
# validate the whole string with identify_secret before it reaches the store.
_SCHEMES = {
    "scrypt": "scrypt",
    "1": "md5-crypt",
    "5": "sha256-crypt",
    "6": "sha512-crypt",
    "g3md5": "g3-md5",
    "g3sha1": "g3-sha1",
    "g3md5sha1": "g3-md5-sha1",
}


def invalid(message: str, hint: str | None = None) -> OperatorError:
    return OperatorError(message, code="invalid", hint=hint)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def choice(setting: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise invalid(f"invalid {setting} {value!r}", f"use one of: {', '.join(allowed)}")
    return value


def flag(setting: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"invalid {setting} {value!r}: expected true or false, got {_kind(value)}",
                      "give true or false")
    return value


def switch(setting: str, value: object) -> bool | None:
    """On, off, or None for "not set here" (a higher default decides, e.g. the profile's)."""
    if value is not None and not isinstance(value, bool):
        raise invalid(f"invalid {setting} {value!r}: expected true, false or null, got {_kind(value)}",
                      "give true (on), false (off) or null (as the profile says)")
    return value


def count_limit(setting: str, value: object) -> int | None:
    """A positive whole number (connections), or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONNS:
        raise invalid(f"invalid {setting} {value!r}",
                      f"give a whole number from 1 to {MAX_CONNS}, or null for no limit")
    return value


RATE_BOUNDS = {"requests": (0.001, 1e9), "bytes": (1.0, 1e15)}
"""The smallest and largest rate a limit may have, per unit: below one request in 1,000 seconds
or one byte a second a client would be told to retry in years (Retry-After), above them there
is no limit to speak of."""


def rate_limit(setting: str, value: object, unit: str) -> float | None:
    """A finite number of requests or bytes per second within :data:`RATE_BOUNDS`, or None for
    no limit."""
    if value is None:
        return None
    low, high = RATE_BOUNDS[unit]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise invalid(f"invalid {setting} {value!r}",
                      f"give {low:g} to {high:g} {unit} per second, or null for no limit "
                      "(suspend the tenant or block the user to let nothing through)")
    return float(value)


def expiry(value: object) -> str | None:
    """ISO-8601 date or timestamp -> ``YYYY-MM-DDTHH:MM:SSZ`` in UTC; None: never expires.

    A date alone means its midnight UTC; a timestamp without an offset is read as UTC;
    fractions of a second are dropped.
    """
    if value is None:
        return None
    hint = "write an ISO-8601 date or time, e.g. 2027-01-31 or 2027-01-31T18:00:00Z (UTC unless an offset is given)"
    if not isinstance(value, str):
        raise invalid(f"invalid expiry {value!r}: expected text, got {_kind(value)}", hint)
    text = value.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(f"invalid expiry {value!r}", hint) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        when = when.astimezone(timezone.utc)
    except OverflowError:
        raise invalid(f"invalid expiry {value!r}: out of range", hint) from None
    if when.year < 1970:
        raise invalid(f"invalid expiry {value!r}: before 1970", hint)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def realm(value: object) -> str | None:
    if value is None:
        return None
    hint = f"use at most {MAX_REALM} printable ASCII characters without quotes or backslashes, or null for 'arcus <tenant>'"
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REALM or not _REALM.match(value):
        raise invalid(f"invalid realm {value!r}", hint)
    return value


def block_page(value: object) -> str | None:
    """A 403 page template whose only ``str.format`` fields are :data:`BLOCK_PAGE_FIELDS`.

    Attribute and index lookups (``{tenant.__class__}``), positional fields, format specs and
    conversions are refused: the template is filled with request data at every blocked
    request and must neither reach into Python objects nor ask for huge padding.
    """
    if value is None:
        return None
    fields = " ".join("{" + f + "}" for f in BLOCK_PAGE_FIELDS)
    hint = f"write HTML using only the fields {fields}; double a literal brace ({{{{ or }}}})"
    if not isinstance(value, str):
        raise invalid(f"invalid block page: expected text, got {_kind(value)}", hint)
    if not value or len(value) > MAX_BLOCK_PAGE:
        raise invalid(f"invalid block page: {len(value)} characters (1 to {MAX_BLOCK_PAGE})", hint)
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise invalid(f"invalid block page: {exc}", hint) from None
    for _, field, spec, conv in parsed:
        if field is None:
            continue
        if field not in BLOCK_PAGE_FIELDS:
            raise invalid(f"invalid block page: unknown field {{{field}}}", hint)
        if spec or conv:
            # a width such as {host:>999999999} would allocate at every blocked request
            raise invalid(f"invalid block page: field {{{field}}} takes no format spec or conversion", hint)
    try:
        value.format(**{f: "x" for f in BLOCK_PAGE_FIELDS})
    except (ValueError, KeyError, IndexError) as exc:
        raise invalid(f"invalid block page: {exc}", hint) from None
    return value


def secret_scheme(stored: object, who: str) -> str:
    """The scheme of a stored (hashed) secret, recognized by its ``$scheme$`` prefix.

    Refuses anything that does not look like a hashed secret of a scheme Arcus reads, without
    ever quoting it: a plain password sent by mistake must not be echoed or logged.
    """
    hint = ("send a hashed secret ($scrypt$..., crypt $1$/$5$/$6$, $g3md5$/$g3sha1$...); "
            "`arcus user add` and `arcus user passwd` hash the password for you")
    if not isinstance(stored, str):
        raise invalid(f"invalid secret for {who}: expected text, got {_kind(stored)}", hint)
    m = _SECRET.match(stored) if len(stored) <= MAX_SECRET else None
    if m is None or m.group(1) not in _SCHEMES:
        raise invalid(f"invalid secret for {who}: not a hashed secret in a format Arcus reads", hint)
    return _SCHEMES[m.group(1)]


def known_scheme(stored: str) -> str:
    """The scheme name of a secret already in the store ("unknown" if it was tampered with)."""
    m = _SECRET.match(stored)
    return _SCHEMES.get(m.group(1), "unknown") if m else "unknown"


ICAP_FAIL = ("open", "closed")
ICAP_OVERSIZE = ("pass", "refuse")
MAX_ICAP_BODY = 1 << 30


def icap_setting(key: str, value: object) -> Any:
    """A tenant's ICAP setting (``icap_service`` names a service of the profile: the daemon
    checks it against the profile it runs; a name it lacks makes every exchange an error)."""
    if key == "icap_service":
        if value is None:
            return None
        if not isinstance(value, str) or not is_valid_name(value):
            raise invalid(f"invalid icap_service {value!r}", "name a service of the profile's icap_services, or null for none")
        return value
    if key == "icap_fail":
        return choice("icap_fail", value, ICAP_FAIL)
    if key == "icap_oversize":
        return choice("icap_oversize", value, ICAP_OVERSIZE)
    if key == "icap_sample":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:  # nan too
            raise invalid(f"invalid icap_sample {value!r}", "give a share from 0 to 1 (1: every exchange, 0.1: one in ten)")
        return float(value)
    if key == "icap_max_body":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ICAP_BODY:
            raise invalid(f"invalid icap_max_body {value!r}", f"give a size in bytes from 1 to {MAX_ICAP_BODY}")
        return value
    raise invalid(f"unknown setting {key!r}")


def check_keys(what: str, changes: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in changes:
        if key not in allowed:
            raise invalid(f"unknown {what} setting {key!r}", f"settable: {', '.join(allowed)}")


_HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z")


def host_patterns(what: str, value: Any) -> tuple[str, ...]:
    """A list of host names or "*.domain" patterns, lowercased, without duplicates."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise invalid(f"invalid {what} {value!r}: expected a list of host names", 'give a list such as ["acme.proxy.example", "*.acme.example"]')
    out: list[str] = []
    for item in value:
        name = item.strip().lower().rstrip(".") if isinstance(item, str) else ""
        if not name or len(name) > 253 or not _HOST_PATTERN.match(name):
            raise invalid(f"invalid {what} entry {item!r}", 'write a host name, or "*." and a domain for every name under it')
        if name not in out:
            out.append(name)
    return tuple(out)

