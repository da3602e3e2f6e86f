"""Validated names of tenants, users and configured objects: metric-safe [A-Za-z0-9._-]."""

from __future__ import annotations

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
