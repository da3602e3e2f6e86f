"""The metrics listener: ``/metrics``, ``/health`` and ``/ready`` over HTTP/1.x, on the event loop.

Why not prometheus-client's own server (``start_http_server``): it serves from a thread of its
own, and a collector running in that thread would iterate the data plane's dicts while the loop
changes them. Here the request is read on the loop (bounded: one head of at most
``MAX_HEAD`` bytes within ``READ_TIMEOUT``), the counters are copied on the loop, and the
formatting runs in a worker thread (``render``), so neither the loop nor the data are shared
with a thread that could see them half-changed. One request per connection
(``Connection: close``): scrapers open one connection per scrape anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("arcus.metrics")

MAX_HEAD = 8192
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
MAX_CLIENTS = 64
"""Scrapes (``/metrics``) rendered at once; beyond, 503 at once (a scrape storm must not pile up
threads). ``/health`` and ``/ready`` cost nothing and are answered whatever the scrapes do."""
MAX_CONNECTIONS = 1024
"""Connections open at once, idle ones included (each waits READ_TIMEOUT at most for its head);
beyond, a new one is closed at once. Idle connections never hold back a health check."""

Scrape = Callable[[], Awaitable[bytes]]
Ready = Callable[[], Awaitable[str | None]]  # None: ready; else the reason it is not


class MetricsServer:
    def __init__(self, scrape: Scrape, ready: Ready, content_type: str) -> None:
        self._scrape = scrape
        self._ready = ready
        self._content_type = content_type
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task] = set()
        self._scrapes = 0  # /metrics being rendered

    @property
    def address(self) -> tuple[str, int] | None:
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port, limit=MAX_HEAD)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=5.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            if len(self._clients) > MAX_CONNECTIONS:
                return  # closed at once: a flood of idle connections costs nothing more
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            pass  # the scraper went away or stalled: its business
        except Exception:
            log.exception("metrics request failed")
            with contextlib.suppress(Exception):
                await _answer(writer, 500, b"internal error; see the daemon's log\n")
        finally:
            self._clients.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await _answer(writer, 400, b"bad request\n")
            return
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            await _answer(writer, 400, b"bad request\n")
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            await _answer(writer, 405, b"GET only\n", extra=b"Allow: GET, HEAD\r\n")
            return
        head_only = method == b"HEAD"
        if target == b"/metrics":
            if self._scrapes >= MAX_CLIENTS:
                await _answer(writer, 503, b"too many scrapes at once\n")
                return
            self._scrapes += 1
            try:
                body = await self._scrape()
            finally:
                self._scrapes -= 1
            await _answer(writer, 200, body, self._content_type, head_only=head_only)
        elif target == b"/health":
            await _answer(writer, 200, b"ok\n", head_only=head_only)  # answering at all is the proof
        elif target == b"/ready":
            reason = await self._ready()
            if reason is None:
                await _answer(writer, 200, b"ready\n", head_only=head_only)
            else:
                await _answer(writer, 503, f"not ready: {reason}\n".encode(), head_only=head_only)
        else:
            await _answer(writer, 404, b"not found; try /metrics, /health or /ready\n", head_only=head_only)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
            503: "Service Unavailable"}


async def _answer(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    head_only: bool = False,
    extra: bytes = b"",
) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n"
    ).encode() + extra + b"\r\n"
    writer.write(head if head_only else head + body)
    await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
