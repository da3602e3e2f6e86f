"""``c_ares`` resolver: A and AAAA queries of its own through c-ares (aiodns), with the answers' TTLs.

The two queries go out together; the answer is every address found, cached for the smallest
TTL of the records it came from (a CNAME in the chain counts: when any link expires, so does
the answer). ``ares_query`` is used, not ``ares_getaddrinfo``: no search domains and no hosts
file, so the configured servers alone decide, and the TTL is the record's.

The c-ares channel is made on first use, on the event loop (a Snapshot is built in a worker
thread, where there is no loop to bind to), and closed by :meth:`close` or when the
resolver is dropped.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiodns
import pycares
from aiodns.error import DNSError

from arcus.config.resolver.c_ares import CAresResolverConfig
from arcus.resolve.base import RESOLVE_FAILED, RESOLVE_TIMEOUT, Answer, LookupFailed, Resolver

_ADDRESS_TYPES = {pycares.QUERY_TYPE_A, pycares.QUERY_TYPE_AAAA}

# c-ares status -> (what happened, the DNS word for it or None). A timeout is the one that is
# not a "resolve_failed": it is counted and reported as "resolve_timeout" (still a 502).
_REASONS: dict[int, tuple[str, str | None]] = {
    pycares.errno.ARES_ENOTFOUND: ("no such domain", "NXDOMAIN"),
    pycares.errno.ARES_ENODATA: ("no A or AAAA record", "NODATA"),
    pycares.errno.ARES_ESERVFAIL: ("the DNS server failed", "SERVFAIL"),
    pycares.errno.ARES_EREFUSED: ("the DNS server refused the query", "REFUSED"),
    pycares.errno.ARES_ENOTIMP: ("the DNS server does not implement the query", "NOTIMP"),
    pycares.errno.ARES_EFORMERR: ("the DNS server found the query malformed", "FORMERR"),
    pycares.errno.ARES_EBADRESP: ("malformed answer", None),
    pycares.errno.ARES_ECONNREFUSED: ("the DNS server is not reachable", "connection refused"),
    pycares.errno.ARES_EBADNAME: ("not a valid domain name", None),
}
# When A and AAAA fail differently, the most telling reason wins (lower is better).
_PRIORITY = [
    pycares.errno.ARES_ENOTFOUND,
    pycares.errno.ARES_EBADNAME,
    pycares.errno.ARES_ESERVFAIL,
    pycares.errno.ARES_EREFUSED,
    pycares.errno.ARES_ECONNREFUSED,
    pycares.errno.ARES_ETIMEOUT,
    pycares.errno.ARES_EBADRESP,
    pycares.errno.ARES_EFORMERR,
    pycares.errno.ARES_ENOTIMP,
    pycares.errno.ARES_ENODATA,
]


class CAresResolver(Resolver):
    config: CAresResolverConfig

    def __init__(self, config: CAresResolverConfig) -> None:
        super().__init__(config)
        self._dns: aiodns.DNSResolver | None = None

    def _channel(self) -> aiodns.DNSResolver:
        if self._dns is None:
            c = self.config
            options: dict[str, Any] = {"timeout": c.each_timeout, "tries": c.tries}
            if c.bind is not None:
                options["local_ip"] = c.bind
            self._dns = aiodns.DNSResolver(
                nameservers=list(c.servers) or None, loop=asyncio.get_running_loop(), **options
            )
        return self._dns

    async def close(self) -> None:
        dns, self._dns = self._dns, None
        if dns is not None:
            await dns.close()

    async def _query(self, host: str) -> Answer:
        dns = self._channel()
        name = host.rstrip(".") if host.endswith(".") and len(host) > 1 else host
        results = await asyncio.gather(dns.query_dns(name, "A"), dns.query_dns(name, "AAAA"), return_exceptions=True)
        addresses: list[str] = []
        ttl: float | None = None
        errors: list[int] = []
        for result in results:
            if isinstance(result, DNSError):
                errors.append(result.args[0] if result.args else pycares.errno.ARES_EBADRESP)
                continue
            if isinstance(result, BaseException):
                raise result
            found = [r.data.addr for r in result.answer if r.type in _ADDRESS_TYPES]
            if not found:
                errors.append(pycares.errno.ARES_ENODATA)
                continue
            addresses.extend(found)
            record_ttl = min(r.ttl for r in result.answer)
            ttl = record_ttl if ttl is None else min(ttl, record_ttl)
        if addresses:
            return Answer(tuple(dict.fromkeys(_normal(a) for a in addresses)), ttl)
        raise self._failure(errors)

    def _failure(self, errors: list[int]) -> LookupFailed:
        status = min(errors, key=lambda e: _PRIORITY.index(e) if e in _PRIORITY else len(_PRIORITY))
        c = self.config
        servers = ", ".join(c.servers) or "the system's DNS servers"
        if status == pycares.errno.ARES_ETIMEOUT:
            tries = "try" if c.tries == 1 else "tries"
            return LookupFailed(
                f"no answer from {servers} after {c.tries} {tries} of {c.each_timeout:g}s (resolver {self.name})",
                code=RESOLVE_TIMEOUT,
            )
        text, word = _REASONS.get(status, (f"DNS error: {pycares.errno.strerror(status)}", None))
        source = f"{word} from {servers}" if word else f"from {servers}"
        return LookupFailed(f"{text} ({source}, resolver {self.name})", code=RESOLVE_FAILED)


def _normal(address: str) -> str:
    """One spelling per address (c-ares already gives the short form; scope ids are dropped)."""
    address = address.split("%", 1)[0]
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return socket.inet_ntop(family, socket.inet_pton(family, address))
    except OSError:
        return address
