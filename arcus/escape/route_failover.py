"""`route_failover`: the primary escaper, and the standby when the primary fails or has not
connected within ``fallback_delay``; once both run, the first to connect wins.

A refusal by policy (side "forbidden") is final: the standby would be asked the same question.
"""

from __future__ import annotations

import asyncio

from arcus.config.escaper.route_failover import RouteFailoverEscaperConfig
from arcus.errors import ErrorCode, EscapeError
from arcus.escape.base import Connected, Escaper
from arcus.escape.race import RaceFailed, staggered_race


def _final(exc: BaseException) -> bool:
    """Not worth the standby: a policy refusal, or a bug (anything but an escape failure)."""
    if isinstance(exc, EscapeError):
        return exc.side == "forbidden"
    return not isinstance(exc, (OSError, TimeoutError))


class RouteFailoverEscaper(Escaper):
    type_name = "route_failover"
    config: RouteFailoverEscaperConfig

    def __init__(self, config: RouteFailoverEscaperConfig, escapers: dict[str, Escaper]) -> None:
        super().__init__(config)
        self.primary = escapers[config.primary]
        self.standby = escapers[config.standby]
        self.delay = config.fallback_delay

    async def connect(
        self, host, port, client_ip, protocol_factory, *, timeout, ssl=None, check=None, user=None
    ) -> Connected:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def attempt(escaper: Escaper):
            def run():
                left = max(0.001, deadline - loop.time())
                return escaper.connect(
                    host, port, client_ip, protocol_factory, timeout=left, ssl=ssl, check=check, user=user
                )

            return run

        try:
            _, conn = await staggered_race(
                [attempt(self.primary), attempt(self.standby)],
                self.delay,
                deadline,
                lambda c: c.transport.abort(),
                name=f"arcus-failover-{self.name}",
                fatal=_final,
            )
            return conn
        except RaceFailed as failed:
            primary, standby = failed.errors
            if failed.timed_out and (primary is None or isinstance(primary, TimeoutError)) and (
                standby is None or isinstance(standby, TimeoutError)
            ):
                raise EscapeError(
                    f"neither {self.primary.name} nor {self.standby.name} connected to {host}:{port} "
                    f"within {timeout:g}s",
                    code=ErrorCode.UPSTREAM_TIMEOUT,
                ) from None
            last = standby if isinstance(standby, EscapeError) else primary
            parts = []
            for role, escaper, exc in (("primary", self.primary, primary), ("standby", self.standby, standby)):
                if exc is None:
                    continue
                text = exc.message if isinstance(exc, EscapeError) else ("timed out" if isinstance(exc, TimeoutError) else str(exc))
                parts.append(f"{role} {escaper.name}: {text}")
            if isinstance(last, EscapeError):
                raise EscapeError("; ".join(parts), code=last.code, socks5=last.socks5) from None
            raise EscapeError("; ".join(parts) or "failover failed", code=ErrorCode.UPSTREAM_CONNECT) from None

    @property
    def next_escapers(self) -> tuple[Escaper, ...]:
        return (self.primary, self.standby)
