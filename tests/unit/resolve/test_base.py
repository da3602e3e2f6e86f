"""The resolver base: TTL cache and its bounds, negative caching, de-duplication, timeouts, errors.

A scripted subclass stands for a resolver type (``_query`` is the only thing a type provides),
so these tests prove the cache logic every type shares; tests/unit/resolve/test_c_ares.py and
tests/integration/test_resolvers.py prove it again with real DNS packets.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from arcus.config.schema import ResolverConfig
from arcus.errors import EscapeError
from arcus.resolve.base import Answer, LookupFailed, Resolver
from arcus.testing.clock import ManualClock
from arcus.testing.wait import async_wait_until


@dataclass(frozen=True, slots=True)
class BoundedConfig(ResolverConfig):
    min_ttl: float = 0.0
    max_ttl: float = 3600.0


class Scripted(Resolver):
    """Answers from ``script[host]``: an Answer, a list, an exception, or ("sleep", seconds)."""

    def __init__(self, config: ResolverConfig, script: dict, clock: ManualClock | None = None) -> None:
        bounds = {"min_ttl": config.min_ttl, "max_ttl": config.max_ttl} if isinstance(config, BoundedConfig) else {}
        super().__init__(config, clock=clock or ManualClock(), **bounds)
        self.script = script
        self.calls: list[str] = []

    async def _query(self, host: str):
        self.calls.append(host)
        step = self.script[host]
        if isinstance(step, tuple) and step[0] == "sleep":
            await asyncio.sleep(step[1])  # a slow type: the behaviour under test
            return ["192.0.2.9"]
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step()
        return step


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def config(**kw) -> BoundedConfig:
    kw.setdefault("name", "r")
    kw.setdefault("type", "scripted")
    return BoundedConfig(**kw)


def test_ip_literals_are_not_resolved_nor_counted() -> None:
    r = Scripted(config(), {})
    assert run(r.resolve("192.0.2.1")) == ["192.0.2.1"]
    assert run(r.resolve("2001:DB8::1")) == ["2001:db8::1"]
    assert r.calls == [] and r.stats.lookups == 0


def test_answer_cached_for_its_ttl_then_asked_again() -> None:
    answers = iter([Answer(("192.0.2.1",), 0.5), Answer(("192.0.2.2",), 0.5)])
    clock = ManualClock()
    r = Scripted(config(), {"h.example": lambda: next(answers)}, clock)

    async def go():
        first = await r.lookup("h.example")
        clock.advance(0.25)
        second = await r.lookup("h.example")
        clock.advance(0.25)  # the TTL is over
        third = await r.lookup("h.example")
        return first, second, third

    first, second, third = run(go())
    assert first.addresses == ("192.0.2.1",) and not first.cached and first.ttl == 0.5
    assert second.addresses == ("192.0.2.1",) and second.cached and second.ttl == 0.25
    assert third.addresses == ("192.0.2.2",) and not third.cached
    assert r.calls == ["h.example", "h.example"]
    assert r.stats.to_dict() == {"lookups": 3, "cache_hits": 1, "negative_hits": 0, "queries": 2,
                                 "failures": 0, "timeouts": 0}


def test_ttl_clamped_to_min_and_max() -> None:
    r = Scripted(config(min_ttl=30.0, max_ttl=60.0), {
        "zero.example": Answer(("192.0.2.1",), 0),
        "long.example": Answer(("192.0.2.2",), 86400),
        "mid.example": Answer(("192.0.2.3",), 45),
    })

    async def go():
        return [await r.lookup(h) for h in ("zero.example", "long.example", "mid.example")]

    zero, long, mid = run(go())
    assert (zero.ttl, long.ttl, mid.ttl) == (30, 60, 45)


def test_ttl_zero_without_min_is_not_cached() -> None:
    r = Scripted(config(min_ttl=0.0), {"z.example": Answer(("192.0.2.1",), 0)})

    async def go():
        await r.resolve("z.example")
        await r.resolve("z.example")

    run(go())
    assert r.calls == ["z.example", "z.example"]


def test_answer_without_ttl_uses_cache_ttl() -> None:
    r = Scripted(config(cache_ttl=7.0), {"s.example": ["192.0.2.1", "2001:db8::1"]})
    found = run(r.lookup("s.example"))
    assert found.addresses == ("192.0.2.1", "2001:db8::1")
    assert found.ttl == 7.0


def test_failure_is_502_with_reason_and_cached_for_negative_ttl() -> None:
    results = iter([LookupFailed("no such domain (NXDOMAIN from x, resolver r)"), Answer(("192.0.2.7",), 60)])

    def step():
        result = next(results)
        if isinstance(result, Exception):
            raise result
        return result

    clock = ManualClock()
    r = Scripted(config(negative_ttl=0.5), {"nx.example": step}, clock)

    async def go():
        errors = []
        for _ in range(2):
            with pytest.raises(EscapeError) as info:
                await r.resolve("nx.example")
            errors.append(info.value)
            clock.advance(0.25)  # the second is still inside negative_ttl, the third is not
        return errors, await r.resolve("nx.example")

    errors, later = run(go())
    for exc in errors:
        assert exc.status == 502 and exc.code == "resolve_failed" and exc.side == "upstream"
        assert exc.message == "cannot resolve nx.example: no such domain (NXDOMAIN from x, resolver r)"
    assert r.calls == ["nx.example", "nx.example"]  # the second error came from the cache
    assert later == ["192.0.2.7"]
    assert r.stats.negative_hits == 1 and r.stats.failures == 1


@pytest.mark.parametrize(
    ("raised", "message", "code"),
    [
        (OSError(-2, "Name or service not known"), "Name or service not known", "resolve_failed"),
        (LookupFailed("no answer from z", code="resolve_timeout"), "no answer from z", "resolve_timeout"),
        (EscapeError("refused by the type", code="resolve_failed"), "refused by the type", "resolve_failed"),
    ],
)
def test_every_failure_kind_becomes_a_502_escape_error(raised, message, code) -> None:
    r = Scripted(config(), {"f.example": raised})
    with pytest.raises(EscapeError) as info:
        run(r.resolve("f.example"))
    assert (info.value.status, info.value.code, info.value.message) == (502, code, f"cannot resolve f.example: {message}")


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("a..b", "empty label"),
        (".a", "empty label"),
        ("a" * 64 + ".example", "a label over 63 characters"),
        (("a" * 60 + ".") * 5, "over 253 characters"),
        (".", "empty"),
    ],
)
def test_a_name_no_resolver_could_ask_for_fails_as_a_lookup_without_a_query(host, why) -> None:
    """getaddrinfo refuses such names with UnicodeError (the IDNA codec), not an answer: they
    must end as the client's failed lookup (502 resolve_failed), never as an internal error."""
    r = Scripted(config(), {})
    with pytest.raises(EscapeError) as info:
        run(r.resolve(host))
    assert (info.value.status, info.value.code) == (502, "resolve_failed")
    assert info.value.message == f"cannot resolve {host}: not a valid domain name: {why}"
    assert r.calls == [] and r.stats.failures == 1


def test_a_name_the_platform_cannot_encode_is_a_failed_lookup() -> None:
    r = Scripted(config(), {"x.example": UnicodeError("label too long")})
    with pytest.raises(EscapeError) as info:
        run(r.resolve("x.example"))
    assert (info.value.code, info.value.message) == (
        "resolve_failed", "cannot resolve x.example: not a valid domain name: label too long")


def test_a_long_but_valid_name_is_asked_for() -> None:
    host = ("a" * 63 + ".") * 3 + "b" * 61  # 253 characters, labels of 63
    r = Scripted(config(), {host: ["192.0.2.1"]})
    assert run(r.resolve(host)) == ["192.0.2.1"]
    assert run(r.resolve(host + ".")) == ["192.0.2.1"]  # asked without its trailing dot, as every type is
    assert r.calls == [host, host]


def test_empty_answer_is_a_failure() -> None:
    r = Scripted(config(), {"e.example": Answer((), 60)})
    with pytest.raises(EscapeError, match="cannot resolve e.example: no address"):
        run(r.resolve("e.example"))


def test_a_query_that_never_returns_is_cut_at_the_timeout_and_says_so() -> None:
    r = Scripted(config(timeout=0.2), {"slow.example": ("sleep", 60)})
    started = time.monotonic()
    with pytest.raises(EscapeError) as info:
        run(r.resolve("slow.example"))
    assert time.monotonic() - started < 2
    assert info.value.status == 502 and info.value.code == "resolve_timeout"
    assert info.value.message == "cannot resolve slow.example: resolver r timed out after 0.2s"
    assert r.stats.timeouts == 1


def test_concurrent_lookups_share_one_query() -> None:
    r = Scripted(config(), {"d.example": ("sleep", 0.1)})

    async def go():
        return await asyncio.gather(*(r.resolve("d.example") for _ in range(20)))

    assert run(go()) == [["192.0.2.9"]] * 20
    assert r.calls == ["d.example"]


def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    r = Scripted(config(), {"d.example": ("sleep", 0.2)})

    async def go():
        first = asyncio.ensure_future(r.resolve("d.example"))
        second = asyncio.ensure_future(r.resolve("d.example"))
        # Both callers are waiting on the one query once it has started and both were counted.
        await async_wait_until(lambda: r.calls and r.stats.lookups == 2, what="both callers to wait")
        first.cancel()
        result = await second
        assert first.cancelled()
        return result

    assert run(go()) == ["192.0.2.9"]
    assert r.calls == ["d.example"]
    assert r.cached("d.example") == ["192.0.2.9"]  # the answer was still cached for the next client


def test_cache_is_bounded_oldest_used_first_out() -> None:
    r = Scripted(config(max_entries=2), {h: Answer(("192.0.2.1",), 60) for h in ("a.ex", "b.ex", "c.ex")})

    async def go():
        await r.resolve("a.ex")
        await r.resolve("b.ex")
        await r.resolve("a.ex")  # a is now the most recently used
        await r.resolve("c.ex")  # evicts b

    run(go())
    assert r.cached("a.ex") and r.cached("c.ex") and r.cached("b.ex") is None
    assert r.describe()["cached"] == 2


def test_a_bug_in_a_type_reaches_the_caller() -> None:
    r = Scripted(config(), {"bug.example": ValueError("boom")})
    with pytest.raises(ValueError, match="boom"):
        run(r.resolve("bug.example"))
    assert r._inflight == {}


def test_the_system_resolver_finds_a_name_written_with_its_trailing_dot() -> None:
    """glibc finds "localhost" in /etc/hosts, not "localhost.": the dot is taken off first, as
    the c_ares resolver does."""
    from arcus.resolve.system import SystemResolver

    r = SystemResolver(config(type="system"))
    assert "127.0.0.1" in run(r.resolve("localhost.")) or "::1" in run(r.resolve("localhost."))
