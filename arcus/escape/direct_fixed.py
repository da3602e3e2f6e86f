"""`direct_fixed`: connect straight to the destination, optionally from a fixed source address."""

from __future__ import annotations

import asyncio
import socket
import time

from arcus.config.schema import EscaperConfig
from arcus.errors import EscapeError
from arcus.escape.base import Connected, Escaper
from arcus.policy.egress import EgressGuard
from arcus.resolve.base import Resolver


def order_addresses(addrs: list[str], strategy: str) -> list[str]:
    v4 = [a for a in addrs if ":" not in a]
    v6 = [a for a in addrs if ":" in a]
    if strategy == "ipv4_only":
        return v4
    if strategy == "ipv6_only":
        return v6
    if strategy == "ipv6_first":
        return v6 + v4
    return v4 + v6


class DirectFixedEscaper(Escaper):
    type_name = "direct_fixed"

    def __init__(self, config: EscaperConfig, resolver: Resolver, guard: EgressGuard) -> None:
        super().__init__(config)
        self.resolver = resolver
        self.guard = guard
        self._bind = config.bind

    async def connect(self, host, port, client_ip, protocol_factory, *, timeout, ssl=None, check=None) -> Connected:
        deadline = time.monotonic() + timeout
        addrs = order_addresses(await self.resolver.resolve(host), self.config.resolve_strategy)
        if not addrs:
            raise EscapeError(
                f"{host} has no address allowed by resolve strategy {self.config.resolve_strategy}",
                code="resolve_failed",
            )
        allowed = []
        refusal = ""
        for addr in addrs:
            verdict = check(addr) if check is not None else None
            if verdict is True:
                allowed.append(addr)
                continue
            why = verdict if isinstance(verdict, str) else self.guard.check(client_ip, addr)
            if why is None:
                allowed.append(addr)
            else:
                refusal = why
        if not allowed:
            raise EscapeError(
                f"destination {host}:{port} refused: {refusal}", code="denied", status=403, side="forbidden"
            )
        loop = asyncio.get_running_loop()
        last: Exception | None = None
        for addr in allowed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            local = None
            if self._bind:
                if (":" in self._bind) != (":" in addr):
                    continue
                local = (self._bind, 0)
            try:
                transport, protocol = await asyncio.wait_for(
                    loop.create_connection(
                        protocol_factory,
                        addr,
                        port,
                        ssl=ssl,
                        server_hostname=host if ssl is not None else None,
                        local_addr=local,
                    ),
                    left,
                )
            except TimeoutError:
                last = TimeoutError()
                break
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                last = exc
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            peer = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
            return Connected(transport, protocol, peer)
        if isinstance(last, TimeoutError) or last is None:
            raise EscapeError(
                f"connecting to {host}:{port} timed out after {timeout:g}s", code="upstream_timeout", status=504
            )
        reason = getattr(last, "strerror", None) or str(last) or type(last).__name__
        raise EscapeError(f"cannot connect to {host}:{port}: {reason}", code="upstream_connect", status=502)


