"""EventHub with real Records (no daemon): filters, the per-subscriber bound and the final
notice, daemon events, and that no subscription exists while nobody watches."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from arcus.audit.events import AuditEvent
from arcus.audit.records import Records
from arcus.errors import OperatorError
from arcus.runtime.events import EventHub, change_fields


def event(kind="request", tenant="acme", user="alice", status=200, error=None, host="example.com", decision="allow"):
    return AuditEvent(1796402400.5, kind, tenant, user, "10.0.0.1:5000", "http", "direct", host, 80,
                      "GET" if kind == "request" else None, "/", status, 1, 2, 0.01, decision, None,
                      "upstream" if error else None, error, "rid", 7, None, server_type="http_proxy")


class Sub:
    """A started stream (the control server asks for its first item at once)."""

    def __init__(self, it) -> None:
        self.it = it
        self.pending = asyncio.ensure_future(anext(it))

    @classmethod
    async def start(cls, hub, args) -> "Sub":
        sub = cls(await hub.watch(args))
        await asyncio.sleep(0)  # the generator runs up to its first wait: registered
        return sub

    async def next(self, timeout: float = 2.0):
        item = await asyncio.wait_for(asyncio.shield(self.pending), timeout)
        self.pending = asyncio.ensure_future(anext(self.it))
        return item

    async def close(self) -> None:
        self.pending.cancel()
        with contextlib.suppress(BaseException):
            await self.pending
        await self.it.aclose()


async def take(sub, n):
    return [await sub.next() for _ in range(n)]


def test_filters_and_shapes():
    async def main():
        records = Records()
        hub = EventHub(lambda: records)
        assert not records.enabled  # nobody watches: the data plane may skip the record
        acme = await Sub.start(hub, {"tenant": "acme", "errors": True})
        conns = await Sub.start(hub, {"types": ["connection", "tunnel"]})
        assert records.enabled
        for e in (event(), event(error="upstream_connect"), event(tenant="other", error="x"),
                  event(kind="connection", host=""), event(kind="connection", host="h")):
            records.emit(e)
        await asyncio.to_thread(records.flush)
        got = await acme.next()
        assert got["type"] == "request" and got["error_code"] == "upstream_connect" and got["at"] == "2026-12-04T16:40:00.500Z"
        assert got["server_type"] == "http_proxy" and got["conn_id"] == 7
        assert [e["type"] for e in await take(conns, 2)] == ["connection", "tunnel"]
        hub.publish("reload", generation=2, profile="p.yaml")
        hub.publish("change", **change_fields("user.passwd", {"tenant": "acme", "name": "bob", "secret": "h"}, {}), generation=3)
        allv = await Sub.start(hub, {})
        hub.publish("change", **change_fields("policy.add", {"tenant": "acme"}, {"rule": {"id": "r1"}}), generation=4)
        c = await allv.next()
        assert c == {**c, "type": "change", "cmd": "policy.add", "tenant": "acme", "rule": "r1", "generation": 4}
        with pytest.raises(TimeoutError):  # errors-only: neither the reload nor the changes reached it
            await acme.next(0.2)
        for sub in (acme, conns, allv):
            await sub.close()
        assert hub.watchers == 0 and not records.enabled

    asyncio.run(main())


def test_a_full_buffer_ends_the_stream_with_one_notice():
    async def main():
        records = Records()
        hub = EventHub(lambda: records)
        slow = await Sub.start(hub, {"buffer": 3})
        fast = await Sub.start(hub, {"buffer": 100})
        for _ in range(10):
            records.emit(event())
        await asyncio.to_thread(records.flush)
        notice = await slow.next()
        assert notice["type"] == "dropped" and notice["skipped"] == 10 and notice["buffer"] == 3
        with pytest.raises(StopAsyncIteration):
            await slow.next()
        assert len(await take(fast, 10)) == 10
        assert hub.dropped_watchers == 1 and hub.watchers == 1

    asyncio.run(main())


@pytest.mark.parametrize("args", [{"types": ["x"]}, {"buffer": 10_001}, {"errors": "yes"}, {"user": 1}, {"nope": 1}])
def test_bad_arguments(args):
    async def main():
        with pytest.raises(OperatorError) as exc:
            await EventHub(Records).watch(args)
        assert exc.value.code == "bad_request"

    asyncio.run(main())


def test_refusals_are_policy_auth_and_limits_not_upstream_failures():
    async def main():
        records = Records()
        hub = EventHub(lambda: records)
        refused = await Sub.start(hub, {"refused": True, "types": ["request", "tunnel"]})
        sent = [
            event(status=502, error="upstream_connect"),  # the upstream's fault: not a refusal
            event(status=503, error="tenant_conn_limit"),
            event(status=403, error="denied", decision="deny"),
            event(status=407, error="auth_required", decision=None),
            event(kind="connection", status=0, error="server_busy", host=""),
        ]
        for e in sent:
            records.emit(e)
        await asyncio.to_thread(records.flush)
        got = await take(refused, 4)
        assert [e["error_code"] for e in got] == ["tenant_conn_limit", "denied", "auth_required", "server_busy"]
        await refused.close()

    asyncio.run(main())
