"""The metrics listener over real loopback sockets: routes, bad requests, a slow scraper."""

from __future__ import annotations

import asyncio

import pytest

from arcus.stats import httpd
from arcus.stats.httpd import MetricsServer


async def exchange(addr: tuple[str, int], raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


@pytest.fixture
def ready_reason() -> list[str | None]:
    return [None]


async def start(ready_reason: list[str | None]) -> MetricsServer:
    async def scrape() -> bytes:
        return b"arcus_up 1\n"

    async def ready() -> str | None:
        return ready_reason[0]

    server = MetricsServer(scrape, ready, "text/plain; version=0.0.4")
    await server.start("127.0.0.1", 0)
    return server


def test_routes(ready_reason: list[str | None]) -> None:
    asyncio.run(routes(ready_reason))


async def routes(ready_reason: list[str | None]) -> None:
    server = await start(ready_reason)
    addr = server.address
    assert addr is not None
    try:
        r = await exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.startswith(b"HTTP/1.1 200 OK\r\n") and b"version=0.0.4" in r and r.endswith(b"\r\n\r\narcus_up 1\n")
        r = await exchange(addr, b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n")
        assert r.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 11\r\n" in r and r.endswith(b"\r\n\r\n")
        assert (await exchange(addr, b"GET /health HTTP/1.1\r\n\r\n")).endswith(b"\r\n\r\nok\n")
        assert (await exchange(addr, b"GET /ready HTTP/1.1\r\n\r\n")).endswith(b"\r\n\r\nready\n")
        ready_reason[0] = "store gone"
        r = await exchange(addr, b"GET /ready HTTP/1.1\r\n\r\n")
        assert r.startswith(b"HTTP/1.1 503 ") and r.endswith(b"\r\n\r\nnot ready: store gone\n")
        assert (await exchange(addr, b"GET /x HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404 ")
        assert (await exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
        assert (await exchange(addr, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        assert (await exchange(addr, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    finally:
        await server.close()


def test_a_silent_client_is_dropped_after_the_read_timeout(ready_reason, monkeypatch) -> None:
    monkeypatch.setattr(httpd, "READ_TIMEOUT", 0.2)
    asyncio.run(silent(ready_reason))


async def silent(ready_reason: list[str | None]) -> None:
    server = await start(ready_reason)
    assert server.address is not None
    try:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # never finishes its head
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing answered
        writer.close()
    finally:
        await server.close()


def test_idle_connections_never_hold_back_a_health_check_and_scrapes_are_bounded(ready_reason, monkeypatch) -> None:
    """70 connections that send nothing (more than the 64 scrapes allowed at once) leave /health
    answered at once; a scrape beyond the bound still gets its 503."""

    async def go() -> None:
        server = await start(ready_reason)
        addr = server.address
        assert addr is not None
        idle = [await asyncio.open_connection(*addr) for _ in range(70)]
        try:
            r = await exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert r.startswith(b"HTTP/1.1 200 OK\r\n") and r.endswith(b"ok\n")
            monkeypatch.setattr(httpd, "MAX_CLIENTS", 0)  # every scrape is one too many
            r = await exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert r.startswith(b"HTTP/1.1 503") and r.endswith(b"too many scrapes at once\n")
        finally:
            for _, w in idle:
                w.close()
            await server.close()

    asyncio.run(asyncio.wait_for(go(), 20))
