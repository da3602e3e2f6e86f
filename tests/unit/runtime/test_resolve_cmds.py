"""The ``resolve`` control handler against a stand-in daemon holding real resolver objects."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from arcus.config.schema import ResolverConfig
from arcus.control.protocol import ControlError
from arcus.errors import OperatorError
from arcus.resolve.base import Answer, LookupFailed, Resolver
from arcus.runtime.resolve_cmds import check_host, resolve_handlers


class Table(Resolver):
    def __init__(self, name: str, table: dict[str, Answer | Exception]) -> None:
        super().__init__(ResolverConfig(name=name, type="table", timeout=1.0))
        self.table = table
        self.asked: list[str] = []

    async def _query(self, host: str) -> Answer:
        self.asked.append(host)
        result = self.table[host]
        if isinstance(result, Exception):
            raise result
        return result


def handler(*resolvers: Resolver):
    daemon = SimpleNamespace(shared=SimpleNamespace(snapshot=SimpleNamespace(resolvers={r.name: r for r in resolvers})))
    return resolve_handlers(daemon)["resolve"]


def call(fn, **args):
    return asyncio.run(asyncio.wait_for(fn(args), 10))


def test_answer_then_the_cache_answers() -> None:
    dns = Table("dns", {"app.example": Answer(("192.0.2.1", "2001:db8::1"), 30)})
    fn = handler(dns, Table("other", {}))
    first = call(fn, resolver="dns", host="App.Example.")
    assert first["addresses"] == ["192.0.2.1", "2001:db8::1"]
    assert (first["resolver"], first["type"], first["host"], first["cached"]) == ("dns", "table", "app.example", False)
    assert 29 < first["ttl"] <= 30 and first["elapsed"] >= 0
    assert first["stats"]["queries"] == 1
    again = call(fn, resolver="dns", host="app.example")
    assert again["cached"] is True and again["stats"]["cache_hits"] == 1
    assert dns.asked == ["app.example"]


def test_failure_is_an_error_reply_with_the_reason_and_code() -> None:
    fn = handler(Table("dns", {"nx.example": LookupFailed("no such domain (NXDOMAIN from x, resolver dns)")}))
    with pytest.raises(OperatorError) as info:
        call(fn, resolver="dns", host="nx.example")
    assert info.value.code == "resolve_failed"
    assert info.value.message == "cannot resolve nx.example: no such domain (NXDOMAIN from x, resolver dns)"
    assert info.value.hint == "the data plane answers such a request with 502"


def test_unknown_resolver_names_the_defined_ones() -> None:
    fn = handler(Table("dns", {}), Table("backup", {}))
    with pytest.raises(OperatorError) as info:
        call(fn, resolver="nope", host="a.example")
    assert info.value.code == "not_found"
    assert info.value.message == 'no resolver "nope" in the running profile'
    assert info.value.hint == "defined resolvers: backup, dns (under resolvers: in the profile)"


def test_ip_literal_is_answered_as_is() -> None:
    dns = Table("dns", {})
    out = call(handler(dns), resolver="dns", host="192.0.2.8")
    assert out["addresses"] == ["192.0.2.8"] and out["cached"] is False and dns.asked == []


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"host": "a.example"}, "bad_request"),
        ({"resolver": "dns"}, "bad_request"),
        ({"resolver": 5, "host": "a.example"}, "bad_request"),
        ({"resolver": "dns", "host": ["a"]}, "bad_request"),
        ({"resolver": "bad name", "host": "a.example"}, "invalid"),
        ({"resolver": "dns", "host": "a.example", "extra": 1}, "invalid"),
        ({"resolver": "dns", "host": "a b.example"}, "invalid"),
    ],
)
def test_bad_arguments_are_refused_before_any_lookup(args: dict, code: str) -> None:
    dns = Table("dns", {})
    with pytest.raises(OperatorError) as info:
        call(handler(dns), **args)
    assert info.value.code == code
    assert dns.asked == []
    if code == "bad_request":
        assert isinstance(info.value, ControlError)


@pytest.mark.parametrize("host", ["", ".", "a..b", "-a.example", "a-.example", "x" * 64 + ".example",
                                  ("a" * 60 + ".") * 5, "a/b", "a\x00b", "ä.example"])
def test_check_host_refuses(host: str) -> None:
    with pytest.raises(OperatorError):
        check_host(host)


@pytest.mark.parametrize(("host", "expected"), [("A.Example.", "a.example"), ("_srv.x-y.example", "_srv.x-y.example"),
                                                ("::1", "::1"), ("localhost", "localhost")])
def test_check_host_accepts(host: str, expected: str) -> None:
    assert check_host(host) == expected
