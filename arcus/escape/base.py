"""Escapers decide how a request leaves the box."""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass

from arcus.config.schema import EscaperConfig


AddressCheck = Callable[[str], "str | bool | None"]


@dataclass(frozen=True, slots=True)
class Connected:
    transport: asyncio.Transport
    protocol: asyncio.Protocol
    peer: str  # the address actually connected to, "ip:port"


class Escaper:
    type_name = ""

    def __init__(self, config: EscaperConfig) -> None:
        self.config = config
        self.name = config.name

    async def connect(
        self,
        host: str,
        port: int,
        client_ip: str,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        timeout: float,
        ssl: ssl_module.SSLContext | None = None,
        check: AddressCheck | None = None,
    ) -> Connected:
        """Open a connection to ``host:port`` on behalf of ``client_ip``.

        ``check``, when given, is asked about every address the name resolved to before it is
        connected to (the tenant's policy against DNS rebinding): a string refuses the address
        with that reason, True allows it outright (a rule opened it explicitly), None leaves it
        to the escaper's own egress guard.

        Raises ``arcus.errors.EscapeError`` saying why it could not (its ``status`` is what the
        client is answered with).
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release what the escaper holds (pooled connections)."""
