"""The daemon's side of the metrics: what a scrape reads, readiness, the listener, ``stats.watch``.

Everything here reads what the data plane already counts (``Shared``'s counter sets, the
records' and audit log's figures, the resolvers', the verifier's, the descriptor watch) at the
moment it is asked, on the event loop; nothing is added to the hot path. The request-duration
histogram is fed by a records subscription in the records writer thread
(:mod:`arcus.stats.latency`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arcus import __version__
from arcus.config.schema import MetricsConfig, StatsdConfig
from arcus.config.values import format_addr
from arcus.control.protocol import BAD_REQUEST, only_args
from arcus.errors import OperatorError
from arcus.stats.httpd import MetricsServer
from arcus.stats.latency import Recorded
from arcus.stats.prom import CONTENT_TYPE, Figures, fold_users, render
from arcus.stats.statsd import Last, render_statsd

if TYPE_CHECKING:
    from arcus.runtime.daemon import Daemon

log = logging.getLogger("arcus.metrics")

STORE_PROBE_TIMEOUT = 2.0
WATCH_INTERVAL = 1.0
WATCH_MIN_INTERVAL = 0.05
LATENCY_BACKLOG = 100_000
"""Records the histogram's subscription holds between two writer batches at most."""


class Metrics:
    """Owned by the daemon: the optional listener, the latency feed, reload counts."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.reloads = {"done": 0, "refused": 0}
        self.recorded = Recorded()  # histograms and escaper counters, from the records
        self.server: MetricsServer | None = None
        self.statsd: StatsdPusher | None = None
        self.config = MetricsConfig()
        self._sub: Any = None

    # -- life cycle ------------------------------------------------------------------------

    async def apply(self, config: MetricsConfig, source: str) -> None:
        """Bind (or move, or close) the listener and start (or change, or stop) StatsD as
        ``config`` says; raise OperatorError if the listener cannot bind (StatsD still applied)."""
        self.recorded.max_users = config.max_users
        previous, self.config = self.config, config
        if config.statsd != previous.statsd or (config.statsd is not None) != (self.statsd is not None):
            await self._close_statsd()
            if config.statsd is not None:
                self.statsd = StatsdPusher(self, config.statsd)
                await self.statsd.start()
        try:
            if config.listen != previous.listen or (self.server is not None) != (config.listen is not None):
                await self._close_server()
                if config.listen is not None:
                    await self._start_server(config, source)
        finally:
            self._feed(self.server is not None or self.statsd is not None)

    async def _start_server(self, config: MetricsConfig, source: str) -> None:
        assert config.listen is not None
        server = MetricsServer(self.scrape, self.not_ready, CONTENT_TYPE)
        host, port = config.listen
        try:
            await server.start(host, port)
        except OSError as exc:
            await server.close()
            where = f"{source}:{config.line}" if config.line else source
            raise OperatorError(
                f"{where}: metrics cannot listen on {format_addr(host, port)}: {exc.strerror or exc}",
                code="invalid",
                hint="pick another metrics.listen address, or stop what holds this one",
            ) from None
        self.server = server
        log.info("metrics listening on http://%s/metrics", self.address)

    def _feed(self, wanted: bool) -> None:
        """The records subscription that feeds :attr:`recorded`: only while something reads it
        (a subscription makes the data plane build a record for every request)."""
        if wanted and self._sub is None:
            assert self.daemon.shared is not None
            self._sub = self.daemon.shared.records.subscribe(self._take_records, limit=LATENCY_BACKLOG)
        elif not wanted and self._sub is not None:
            sub, self._sub = self._sub, None
            sub.close()

    def _take_records(self) -> None:
        """In the records writer thread, after each batch: durations into the histogram."""
        sub = self._sub
        if sub is not None:  # None only before subscribe() returned: taken with the next batch
            self.recorded.observe_batch(sub.take()[0])

    async def _close_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.close()

    async def _close_statsd(self) -> None:
        statsd, self.statsd = self.statsd, None
        if statsd is not None:
            await statsd.close()

    async def close(self) -> None:
        await self._close_server()
        await self._close_statsd()
        self._feed(False)

    @property
    def address(self) -> str | None:
        addr = self.server.address if self.server is not None else None
        return format_addr(*addr) if addr else None

    # -- what is read --------------------------------------------------------------------

    def figures(self) -> Figures:
        """A copy of every counter, on the event loop (plain dicts: safe to format in a thread)."""
        d = self.daemon
        shared = d.shared
        assert shared is not None
        servers: dict[str, Any] = shared.server_counters.to_dict()
        for s in shared.snapshot.profile.servers:
            servers.setdefault(s.name, shared.server_counters.get(s.name).to_dict())
        audit = shared.records.audit
        return Figures(
            version=__version__,
            uptime=time.monotonic() - d.started,
            generation=d.generation,
            servers=servers,
            tenants=dict(shared.tenant_counters.to_dict()),
            users=fold_users(shared.user_counters.items(), self.config.max_users),
            resolvers={name: r.describe() for name, r in shared.snapshot.resolvers.items()},
            records=shared.records.stats(),
            audit=audit.stats() if audit is not None else None,
            fds=d.fds.info(),
            reloads=dict(self.reloads),
            pool=len(shared.pool),
            auth=shared.verifier.info(),
            histograms=self.recorded.snapshot(),
            escapers=self.recorded.escapers(),
            listeners_down=len(self.down_listeners()),
        )

    async def scrape(self) -> bytes:
        return await asyncio.to_thread(render, self.figures())

    def down_listeners(self) -> list[str]:
        """The profile's listeners not bound, or closed under us (uvloop closes a listener whose
        accept fails with an error it cannot get past, e.g. out of descriptors), as ``name on addr``."""
        d = self.daemon
        assert d.shared is not None
        return [
            f"{name} on {format_addr(host, port)}"
            for (name, host, port) in d._wanted(d.shared.snapshot)
            if (srv := d.listeners.get((name, host, port))) is None or not srv.is_serving()
        ]

    async def not_ready(self) -> str | None:
        """None when every configured listener is bound and serving and the store reads; else why not."""
        d = self.daemon
        assert d.shared is not None and d.store is not None
        if d.shared.draining or d._stop.is_set():
            return "shutting down"
        missing = self.down_listeners()
        if missing:
            return "listener not bound: " + ", ".join(missing)
        try:
            await asyncio.wait_for(asyncio.to_thread(_read_store, str(d.store.path)), STORE_PROBE_TIMEOUT)
        except TimeoutError:
            return f"store {d.store.path} did not answer within {STORE_PROBE_TIMEOUT:g}s"
        except sqlite3.Error as exc:
            return f"store {d.store.path} is not readable: {exc}"
        return None

    # -- stats.watch ---------------------------------------------------------------------

    async def watch(self, args: dict[str, Any]) -> AsyncIterator[dict]:
        """``stats.watch {"interval": s}``: the ``stats`` result now, then every interval.

        Pull-based: an update is computed when the control server is ready to send it, so a
        subscriber that reads slowly gets fewer updates, and nothing queues up for it; one that
        stops reading is dropped by the control server (bounded write buffer, write timeout).
        """
        only_args(args, ("interval",), "stats.watch", BAD_REQUEST)  # as events.watch answers one
        interval = args.get("interval", WATCH_INTERVAL)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < WATCH_MIN_INTERVAL:
            raise OperatorError(
                f"stats.watch interval must be a number of seconds >= {WATCH_MIN_INTERVAL:g}",
                code="bad_request",
                hint='e.g. {"interval": 1}',
            )
        return self._ticks(float(interval))

    async def _ticks(self, interval: float) -> AsyncIterator[dict]:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not self.daemon._stop.is_set():
            yield await self.daemon._cmd_stats({})
            due = max(due + interval, loop.time())
            await asyncio.sleep(due - loop.time())


def _read_store(path: str) -> None:
    """Open the store read-only on a connection of its own and read one page: is it readable?"""
    uri = Path(path).absolute().as_uri() + "?mode=ro"  # percent-encoded: a '?' or '#' in the path is a name
    conn = sqlite3.connect(uri, uri=True, timeout=STORE_PROBE_TIMEOUT)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


STATSD_BUFFER = 65536
"""Bytes the UDP transport may hold unsent; a flush that finds more skips its datagrams (counted)."""
STATSD_WARN_EVERY = 60.0


class StatsdPusher:
    """Sends the figures to a StatsD server every ``interval`` over UDP (:mod:`arcus.stats.statsd`).

    Each flush copies the figures on the event loop (as a scrape does) and formats them in a
    worker thread; sending a datagram never blocks. A StatsD server that is down costs nothing
    but an ICMP error now and then (counted in ``errors``, logged at most once a minute).
    """

    def __init__(self, metrics: Metrics, config: StatsdConfig) -> None:
        self.metrics = metrics
        self.config = config
        self.sent = 0  # datagrams handed to the kernel
        self.skipped = 0  # datagrams not sent: the transport's buffer was over STATSD_BUFFER
        self.errors = 0  # send errors reported by the kernel (ECONNREFUSED: nobody listens)
        self._last: Last = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task | None = None
        self._warned = float("-inf")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _StatsdProtocol(self), remote_addr=self.config.target)
        self._task = loop.create_task(self._run(), name="arcus-statsd")
        log.info("statsd: sending to %s every %gs", format_addr(*self.config.target), self.config.interval)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due = max(due + self.config.interval, loop.time())
            await asyncio.sleep(due - loop.time())
            try:
                await self.flush()
            except Exception:
                log.exception("statsd flush failed")

    async def flush(self) -> None:
        c = self.config
        datagrams = await asyncio.to_thread(render_statsd, self.metrics.figures(), c.prefix, self._last, c.max_packet)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        buffered = getattr(transport, "get_write_buffer_size", lambda: 0)  # asyncio's and uvloop's have it
        for data in datagrams:
            if buffered() > STATSD_BUFFER:
                self.skipped += 1
                continue
            transport.sendto(data)
            self.sent += 1

    def failed(self, exc: Exception) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._warned >= STATSD_WARN_EVERY:
            self._warned = now
            log.warning("statsd: sending to %s failed: %s (counted; logged once a minute)", format_addr(*self.config.target), exc)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):  # the last counts since the previous flush
                await asyncio.wait_for(self.flush(), 2.0)
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()


class _StatsdProtocol(asyncio.DatagramProtocol):
    def __init__(self, pusher: StatsdPusher) -> None:
        self.pusher = pusher

    def error_received(self, exc: Exception) -> None:
        self.pusher.failed(exc)
