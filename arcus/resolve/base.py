"""Resolvers turn names into addresses without blocking the event loop, with a bounded cache."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict

from arcus.config.schema import ResolverConfig
from arcus.errors import EscapeError


def ip_literal(host: str) -> str | None:
    """The host as a normalized IP string if it is an IP literal, else None."""
    if not host or not (host[0].isdigit() or ":" in host):
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class Resolver:
    """Base: a TTL cache with negative entries and in-flight de-duplication.

    Subclasses implement ``_query(host) -> list[str]`` (addresses, any family) and raise
    ``OSError`` or ``EscapeError`` on failure.
    """

    def __init__(self, config: ResolverConfig) -> None:
        self.config = config
        self.name = config.name
        self._cache: OrderedDict[str, tuple[float, list[str] | None, str]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[list[str]]] = {}

    async def _query(self, host: str) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def cached(self, host: str) -> list[str] | None:
        entry = self._cache.get(host)
        if entry is not None and entry[0] > time.monotonic() and entry[1] is not None:
            return entry[1]
        return None

    async def resolve(self, host: str) -> list[str]:
        literal = ip_literal(host)
        if literal is not None:
            return [literal]
        now = time.monotonic()
        entry = self._cache.get(host)
        if entry is not None:
            expires, addrs, reason = entry
            if expires > now:
                self._cache.move_to_end(host)
                if addrs is None:
                    raise EscapeError(f"cannot resolve {host}: {reason}", code="resolve_failed", status=502)
                return addrs
            del self._cache[host]
        fut = self._inflight.get(host)
        if fut is not None:
            return await asyncio.shield(fut)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._inflight[host] = fut
        try:
            try:
                addrs = await asyncio.wait_for(self._query(host), self.config.timeout)
                if not addrs:
                    raise OSError("no address")
            except TimeoutError:
                err = EscapeError(
                    f"cannot resolve {host}: resolver {self.name} timed out after {self.config.timeout:g}s",
                    code="resolve_timeout",
                    status=504,
                )
                self._store(host, None, "timed out", self.config.negative_ttl)
                raise err from None
            except EscapeError as exc:
                self._store(host, None, exc.message, self.config.negative_ttl)
                raise
            except OSError as exc:
                reason = exc.strerror or str(exc) or type(exc).__name__
                self._store(host, None, reason, self.config.negative_ttl)
                raise EscapeError(f"cannot resolve {host}: {reason}", code="resolve_failed", status=502) from None
            self._store(host, addrs, "", self.config.cache_ttl)
            fut.set_result(addrs)
            return addrs
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                fut.exception()  # retrieved: waiters re-raise it; nobody waiting is fine too
            raise
        finally:
            self._inflight.pop(host, None)

    def _store(self, host: str, addrs: list[str] | None, reason: str, ttl: float) -> None:
        if ttl <= 0:
            return
        self._cache[host] = (time.monotonic() + ttl, addrs, reason)
        self._cache.move_to_end(host)
        while len(self._cache) > self.config.max_entries:
            self._cache.popitem(last=False)
