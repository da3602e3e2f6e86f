"""`direct_fixed`: connect straight to the destination, optionally from a fixed source address.

The name is resolved with the escaper's resolver; every address goes through ``check`` (the
tenant's policy) and the egress guard; the allowed ones are ordered by ``resolve_strategy`` and
interleaved by family (RFC 8305 4), then raced with happy eyeballs: the next address is tried
``happy_eyeballs_delay`` after the previous attempt started (or at once when it failed), the
first to connect wins, and the whole is bounded by the connect timeout.
"""

from __future__ import annotations

import asyncio
import enum
import errno
from itertools import zip_longest
from typing import Final, Literal

from arcus.config.escaper.direct_fixed import DirectFixedEscaperConfig
from arcus.errors import SOCKS5_HOST_UNREACHABLE, SOCKS5_NETWORK_UNREACHABLE, ErrorCode, EscapeError
from arcus.escape.base import Connected, Escaper, describe_os_error, format_peer, set_nodelay
from arcus.escape.hops import LISTENING, create_connection
from arcus.escape.race import RaceFailed, staggered_race
from arcus.policy.egress import EgressGuard
from arcus.policy.model import SPECIAL_DESTINATION
from arcus.resolve.base import Resolver


class _Skip(enum.Enum):
    SKIP = "skip"


SKIP: Final = _Skip.SKIP  # _source_for: this destination address cannot be reached from our sources
Source = str | None | Literal[_Skip.SKIP]  # what _source_for returns


def order_addresses(addrs: list[str], strategy: str) -> list[str]:
    """The addresses a strategy allows, preferred family first and the families interleaved."""
    v4 = [a for a in addrs if ":" not in a]
    v6 = [a for a in addrs if ":" in a]
    if strategy == "ipv4_only":
        return v4
    if strategy == "ipv6_only":
        return v6
    first, second = (v6, v4) if strategy == "ipv6_first" else (v4, v6)
    return [a for pair in zip_longest(first, second) for a in pair if a is not None]


class DirectFixedEscaper(Escaper):
    type_name = "direct_fixed"
    config: DirectFixedEscaperConfig

    def __init__(self, config: DirectFixedEscaperConfig, resolver: Resolver, guard: EgressGuard) -> None:
        super().__init__(config)
        self.resolver = resolver
        self.guard = guard
        self._bind = config.bind
        self.delay = config.happy_eyeballs_delay

    def _source_for(self, addr: str) -> Source:
        """The source address for a connection to ``addr``: None for the system's choice,
        SKIP when no source of ours can reach that family."""
        if self._bind is None:
            return None
        if (":" in self._bind) != (":" in addr):
            return SKIP
        return self._bind

    def _no_source(self, host: str, port: int) -> EscapeError:
        return EscapeError(
            f"escaper {self.name} binds {self._bind}, which cannot reach any address of {host}",
            code=ErrorCode.UPSTREAM_CONNECT,
        )

    async def connect(
        self, host, port, client_ip, protocol_factory, *, timeout, ssl=None, check=None, user=None
    ) -> Connected:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        addrs = order_addresses(await self.resolver.resolve(host), self.config.resolve_strategy)
        if not addrs:
            raise EscapeError(
                f"{host} has no address allowed by resolve strategy {self.config.resolve_strategy}",
                code=ErrorCode.RESOLVE_FAILED,
            )
        allowed = []
        refusal = ""
        rule: str | None = None
        for addr in addrs:
            verdict = check(addr) if check is not None else None
            if verdict is True:
                allowed.append(addr)
                continue
            if isinstance(verdict, str):  # the tenant's policy (the caller knows its rule)
                refusal, rule = verdict, None
                continue
            why = self.guard.check(client_ip, addr)
            if why is None:
                allowed.append(addr)
            else:
                refusal, rule = why, SPECIAL_DESTINATION
        if not allowed:
            raise EscapeError(f"destination {host}:{port} refused: {refusal}", code=ErrorCode.DENIED, rule=rule)
        targets = [(addr, src) for addr in allowed if (src := self._source_for(addr)) is not SKIP]
        if not targets:
            raise self._no_source(host, port)

        is_ours = self.guard.host.is_local

        def attempt(addr: str, source: str | None):
            async def run() -> Connected:
                transport, protocol = await create_connection(
                    protocol_factory, addr, port, source=source, ssl=ssl,
                    counted=port in LISTENING and is_ours(addr),  # into this daemon: a loop ends (arcus.escape.hops)
                    server_hostname=host if ssl is not None else None,
                    ssl_handshake_timeout=max(0.001, deadline - loop.time()) if ssl is not None else None,
                )
                set_nodelay(transport)
                return Connected(transport, protocol, format_peer(addr, port), self.name)

            return run

        try:
            _, conn = await staggered_race(
                [attempt(a, s) for a, s in targets],
                self.delay,
                deadline,
                lambda c: c.transport.abort(),
                name=f"arcus-connect-{self.name}",
            )
            return conn
        except RaceFailed as failed:
            errors = [e for e in failed.errors if e is not None and not isinstance(e, TimeoutError)]
            if failed.timed_out or not errors:
                raise EscapeError(
                    f"connecting to {host}:{port} timed out after {timeout:g}s", code=ErrorCode.UPSTREAM_TIMEOUT
                ) from None
            first = errors[0]
            if isinstance(first, EscapeError):
                raise first from None
            reason = describe_os_error(first)
            reply = _UNREACHABLE.get(first.errno) if isinstance(first, OSError) and first.errno is not None else None
            where = f" (from {targets[0][1]})" if targets[0][1] is not None and _is_bind_error(first) else ""
            raise EscapeError(
                f"cannot connect to {host}:{port}{where}: {reason}", code=ErrorCode.UPSTREAM_CONNECT, socks5=reply
            ) from None


_UNREACHABLE = {errno.ENETUNREACH: SOCKS5_NETWORK_UNREACHABLE, errno.EHOSTUNREACH: SOCKS5_HOST_UNREACHABLE}


def _is_bind_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE)
