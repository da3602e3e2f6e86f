"""`dummy_deny`: refuses every request (a safe default target, and a way to switch traffic off)."""

from __future__ import annotations

from arcus.errors import ErrorCode, EscapeError
from arcus.escape.base import Connected, Escaper


class DummyDenyEscaper(Escaper):
    type_name = "dummy_deny"

    async def connect(
        self, host, port, client_ip, protocol_factory, *, timeout, ssl=None, check=None, user=None
    ) -> Connected:
        raise EscapeError(
            f"escaper {self.name} (dummy_deny) refuses every destination",
            code=ErrorCode.DENIED,
        )
