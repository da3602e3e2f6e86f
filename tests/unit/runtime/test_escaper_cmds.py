"""Escaper control commands and life cycle against a stand-in daemon holding real escapers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from arcus.errors import NotFound, OperatorError
from arcus.runtime.escaper_cmds import close_escapers, escaper_handlers, start_escapers
from arcus.testing.wait import async_wait_until
from tests.unit.escape.test_routes import build

ESCAPERS = """\
  - name: float
    type: direct_float
    addresses: [127.0.0.21]
  - name: pool
    type: route_select
    next:
      - escaper: float
        probe: 127.0.0.1:9
    health_interval: 10s
"""


def daemon_with(escapers: dict):
    return SimpleNamespace(shared=SimpleNamespace(snapshot=SimpleNamespace(escapers=escapers)))


def call(handlers, cmd, **args):
    return asyncio.run(asyncio.wait_for(handlers[cmd](args), 5))


def test_float_set_replaces_the_set_and_refuses_bad_input():
    escapers = build(ESCAPERS)
    handlers = escaper_handlers(daemon_with(escapers))
    assert call(handlers, "escaper.float.set", escaper="float", addresses=["127.0.0.22", "::1"]) == {
        "escaper": "float", "addresses": ["127.0.0.22", "::1"],
    }
    assert escapers["float"].addresses == ("127.0.0.22", "::1")
    with pytest.raises(OperatorError, match="not direct_float"):
        call(handlers, "escaper.float.set", escaper="direct", addresses=[])
    with pytest.raises(NotFound) as missing:
        call(handlers, "escaper.float.set", escaper="nope", addresses=[])
    assert "float" in missing.value.hint
    with pytest.raises(OperatorError) as bad:
        call(handlers, "escaper.float.set", escaper="float", addresses=["10.0.0.300"])
    assert bad.value.code == "invalid" and "10.0.0.300" in bad.value.message
    with pytest.raises(OperatorError, match="list of IP addresses"):
        call(handlers, "escaper.float.set", escaper="float", addresses="127.0.0.1")
    for unusable, why in (("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
                          ("255.255.255.255", "broadcast")):
        with pytest.raises(OperatorError, match=why):
            call(handlers, "escaper.float.set", escaper="float", addresses=["127.0.0.23", unusable])
    assert escapers["float"].addresses == ("127.0.0.22", "::1")  # unchanged by the refusals


def test_list_and_show_give_each_type_and_live_state():
    handlers = escaper_handlers(daemon_with(build(ESCAPERS)))
    listed = call(handlers, "escaper.list")
    assert [(e["name"], e["type"]) for e in listed] == [
        ("direct", "direct_fixed"), ("deny", "dummy_deny"), ("float", "direct_float"), ("pool", "route_select"),
    ]
    pool = call(handlers, "escaper.show", escaper="pool")
    assert pool["members"][0]["escaper"] == "float" and pool["members"][0]["state"] == "up"
    assert pool["members"][0]["probe"] == "127.0.0.1:9" and pool["health_checks"] is True


def test_start_adopts_live_state_and_close_stops_only_what_the_new_snapshot_dropped():
    async def main():
        old = SimpleNamespace(escapers=build(ESCAPERS))
        await start_escapers(old, None)
        old_pool = old.escapers["pool"]
        assert old_pool._task is not None and not old_pool._task.done()
        old.escapers["float"].set_addresses(["127.0.0.99"])
        new = SimpleNamespace(escapers=build(ESCAPERS))
        new.escapers["direct"] = old.escapers["direct"]  # kept as is (a store-only refresh keeps all)
        await start_escapers(new, old)
        assert new.escapers["float"].addresses == ("127.0.0.99",)
        old_task = old_pool._task
        close_escapers(old, new)
        assert old_pool.closed and old_pool._task is None
        await async_wait_until(old_task.done, what="the dropped pool's health checks to stop")
        assert new.escapers["pool"]._task is not None and not new.escapers["pool"].closed
        new_task = new.escapers["pool"]._task
        close_escapers(new)
        await async_wait_until(new_task.done, what="the health checks to stop")
        return new.escapers["pool"].closed

    assert asyncio.run(main()) is True
