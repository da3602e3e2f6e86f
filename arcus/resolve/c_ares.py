"""``c_ares`` resolver: A and AAAA queries of its own through c-ares (aiodns), with the answers' TTLs.

The two queries go out together; the answer is every address found, cached for the smallest
TTL of the records it came from (a CNAME in the chain counts: when any link expires, so does
the answer). ``ares_query`` is used, not ``ares_getaddrinfo``: no search domains and no hosts
file, so the configured servers alone decide, and the TTL is the record's.

The c-ares channel is made on first use, on the event loop (a Snapshot is built in a worker
thread, where there is no loop to bind to), and closed by :meth:`close` or when the
resolver is dropped.

c-ares (1.23 and later) keeps a query cache of its own, on by default, that pycares gives no
option to turn off. Under Arcus's cache it would undo the profile's bounds: past ``max_ttl``
or ``negative_ttl`` the next lookup would be answered from c-ares's memory, not by the server.
So the channel is made again, before its first query, with the same options and the query
cache off (``qcache_max_ttl`` 0): Arcus's cache is the only one. Should a pycares release
change the internals this needs, the resolver still works, with both caches, and says so in
the log once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Callable
from typing import Any

import aiodns
import pycares
from aiodns.error import DNSError

from arcus.config.resolver.c_ares import CAresResolverConfig
from arcus.resolve.base import RESOLVE_FAILED, RESOLVE_TIMEOUT, Answer, LookupFailed, Resolver

log = logging.getLogger("arcus.resolve")

_ADDRESS_DATA = (pycares.ARecordData, pycares.AAAARecordData)
_OPT_QUERY_CACHE = 1 << 21  # ARES_OPT_QUERY_CACHE of ares.h (c-ares 1.23+); pycares does not export it
_warned_query_cache = False

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

    def __init__(self, config: CAresResolverConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, clock=clock, min_ttl=config.min_ttl, max_ttl=config.max_ttl)
        self._dns: aiodns.DNSResolver | None = None

    def _channel(self) -> aiodns.DNSResolver:
        if self._dns is None:
            c = self.config
            options: dict[str, Any] = {"timeout": c.each_timeout, "tries": c.tries + catch_up_tries(c.each_timeout)}
            dns = aiodns.DNSResolver(loop=asyncio.get_running_loop(), **options)
            _turn_off_query_cache(dns._channel)
            if c.servers:  # after the re-make: c-ares's saved options keep no ports
                dns.nameservers = list(c.servers)
            if c.bind is not None:
                dns._channel.set_local_ip(c.bind)
            self._dns = dns
        return self._dns

    async def close(self) -> None:
        dns, self._dns = self._dns, None
        if dns is not None:
            await dns.close()

    async def _query(self, host: str) -> Answer:
        dns = self._channel()
        # the trailing dot is taken off by the base (_run_query)
        results = await asyncio.gather(dns.query_dns(host, "A"), dns.query_dns(host, "AAAA"), return_exceptions=True)
        addresses: list[str] = []
        ttl: float | None = None
        errors: list[int] = []
        for result in results:
            if isinstance(result, DNSError):
                errors.append(result.args[0] if result.args else pycares.errno.ARES_EBADRESP)
                continue
            if isinstance(result, BaseException):
                raise result
            found = [r.data.addr for r in result.answer if isinstance(r.data, _ADDRESS_DATA)]
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
            tries = c.tries + catch_up_tries(c.each_timeout)
            return LookupFailed(
                f"no answer from {servers} after {tries} tries (each up to {c.each_timeout:g}s or 5 times the "
                f"server's usual answer time, at least 0.25s, doubled on every retry) (resolver {self.name})",
                code=RESOLVE_TIMEOUT,
            )
        text, word = _REASONS.get(status, (f"DNS error: {_strerror(status)}", None))
        source = f"{word} from {servers}" if word else f"from {servers}"
        return LookupFailed(f"{text} ({source}, resolver {self.name})", code=RESOLVE_FAILED)


ADAPTED_MIN = 0.25
"""c-ares (1.26 and later) times a try out after 5 times the server's average answer time, at
least 0.25 s, whatever ``each_timeout`` says once the server has answered a few times, and
doubles that on every round of retries (ares_metrics.c, ares_process.c). A server that answers
cached names in a millisecond and the others in half a second would fail every lookup it has to
recurse for. So enough retries are added for the doubling to reach ``each_timeout`` again (the
resolver's ``timeout`` still bounds the whole lookup)."""


def catch_up_tries(each_timeout: float) -> int:
    """Tries added to ``tries`` so that doubling from c-ares' 0.25 s reaches ``each_timeout``."""
    return max(0, math.ceil(math.log2(max(each_timeout, ADAPTED_MIN) / ADAPTED_MIN)))


def _turn_off_query_cache(channel: pycares.Channel) -> bool:
    """Make ``channel``'s c-ares handle again with the same options and no query cache.

    Only for a channel that has asked nothing yet. False (and one warning) when pycares'
    internals are not what this expects: the channel is then left as it was.
    """
    global _warned_query_cache
    try:
        from pycares import _ffi, _lib

        old = channel._channel
        if old is None:
            raise RuntimeError("the channel is closed")
        options = _ffi.new("struct ares_options *")
        mask = _ffi.new("int *")
        if _lib.ares_save_options(old[0], options, mask) != _lib.ARES_SUCCESS:
            raise RuntimeError("ares_save_options failed")
        try:
            options.qcache_max_ttl = 0
            new = _ffi.new("ares_channel *")
            # Servers and search settings are read again from the system (the saved server list
            # keeps IPv4 only, without ports); a configured list is set by the caller afterwards.
            system = _lib.ARES_OPT_SERVERS | _lib.ARES_OPT_SORTLIST | _lib.ARES_OPT_DOMAINS | _lib.ARES_OPT_LOOKUPS
            status = _lib.ares_init_options(new, options, (mask[0] & ~system) | _OPT_QUERY_CACHE)
        finally:
            _lib.ares_destroy_options(options)
        if status != _lib.ARES_SUCCESS:
            raise RuntimeError(f"ares_init_options failed ({status})")
        channel._channel = new
        _lib.ares_destroy(old[0])  # nothing was asked on it: no callback can be pending
        return True
    except (ImportError, AttributeError, TypeError, RuntimeError) as exc:
        if not _warned_query_cache:
            _warned_query_cache = True
            log.warning("c_ares resolvers keep c-ares's own query cache too (%s): answers may outlive "
                        "max_ttl and failures negative_ttl, up to the records' own TTLs", exc)
        return False


def _strerror(status: int) -> str:
    text = pycares.errno.strerror(status)  # str in pycares 4.4+, bytes (as its stubs say) before
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


def _normal(address: str) -> str:
    """One spelling per address (c-ares already gives the short form; scope ids are dropped)."""
    address = address.split("%", 1)[0]
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return socket.inet_ntop(family, socket.inet_pton(family, address))
    except OSError:
        return address
