"""The daemon: owns the listeners, the Snapshot, the store, the control socket and shutdown.

Reload (``ctl reload``, SIGHUP, any tenant change) builds a new Snapshot in a worker thread,
validates it whole, binds any new listener, and only then swaps one reference. A profile that
fails is refused with its ``file:line`` errors and the old Snapshot keeps serving. Connections
keep the Snapshot they were accepted with.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arcus import __version__
from arcus.audit.feed import audit_handlers
from arcus.audit.records import CLOSE_TIMEOUT as RECORDS_CLOSE_TIMEOUT
from arcus.auth.secrets import hash_secret
from arcus.config import load_profile
from arcus.config.schema import LogConfig, Profile, ServerConfig
from arcus.control.protocol import only_args
from arcus.control.server import ControlServer
from arcus.errors import ConfigError, NotFound, OperatorError
from arcus.escape.hops import LISTENING
from arcus.paths import STORE_FILE
from arcus.policy.egress import HostAddresses
from arcus.runtime.escaper_cmds import close_escapers, escaper_handlers, start_escapers
from arcus.runtime.events import CHANGE_COMMANDS, EventHub, change_fields
from arcus.runtime.fdwatch import FdWatch, raise_limit
from arcus.runtime.health import DESCRIPTIONS, HealthWatch
from arcus.runtime.hostaddrs import AddressWatcher, own_addresses
from arcus.runtime.memtrim import MemoryTrim
from arcus.runtime.metrics import Metrics
from arcus.runtime.portholder import busy_hint
from arcus.runtime.resolve_cmds import resolve_handlers
from arcus.runtime.snapshot import build_snapshot, load_store, retired_resolvers, with_store
from arcus.runtime.tenancy import tenancy_handlers
from arcus.serve.context import Shared, Snapshot
from arcus.serve.intercept import Interception
from arcus.serve.registry import SERVER_TYPES
from arcus.store import Store
from arcus.tls.castore import CAStore
from arcus.tls.certcache import LeafPruner

log = logging.getLogger("arcus.daemon")

SWEEP_INTERVAL = 1.0

ListenKey = tuple[str, str, int]  # (server name, host, configured port)


def _fmt_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Daemon:
    def __init__(
        self,
        profile_arg: str | None,
        data_dir: Path,
        socket_path: Path,
        *,
        setup_log: Callable[[LogConfig], Any] | None = None,
    ) -> None:
        """``setup_log`` opens a profile's ``log`` target (OperatorError when it cannot) and
        returns it prepared (``install()``, ``discard()``: ``arcus.runtime.main.PreparedLog``); a
        reload calls it again, before the swap."""
        self.profile_arg = profile_arg
        self.setup_log = setup_log
        self.data_dir = data_dir
        self.socket_path = socket_path
        self.store: Store | None = None
        self.shared: Shared | None = None
        self.listeners: dict[ListenKey, asyncio.AbstractServer] = {}
        self.control: ControlServer | None = None
        self.started = time.monotonic()
        self.generation = 0
        self.own = HostAddresses()  # live: the watcher replaces the set as interfaces change
        self.watcher = AddressWatcher(self.own)
        self._stop = asyncio.Event()
        self._graceful = True
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.fds = FdWatch()
        self.health = HealthWatch()  # what ctl health reports beyond "up"
        self.metrics = Metrics(self)  # the optional /metrics listener, reload counts, stats.watch
        self.events = EventHub(lambda: self._shared().records)  # events.watch

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Load everything, bind everything; raise (and leave nothing behind) on failure."""
        self.fds = FdWatch(raise_limit()[0])  # a soft limit of 1024 is far too low for a proxy
        profile = await asyncio.to_thread(load_profile, self.profile_arg)
        self.store = await asyncio.to_thread(Store.open, self.data_dir / STORE_FILE)
        data = await asyncio.to_thread(load_store, self.store)
        self.own.replace(await asyncio.to_thread(own_addresses))
        self.generation = 1
        snapshot = await asyncio.to_thread(build_snapshot, 1, profile, data, self.own)
        self.shared = Shared(snapshot)
        self.shared.interception = Interception(self.data_dir)  # TLS interception's CAs and leaves
        self.shared.host = self.own
        self.shared.data_dir = self.data_dir
        await start_escapers(snapshot, None)
        self.shared.rehash = self._rehash
        try:
            # The records' writer and the audit log before the listeners: the first connections
            # are recorded too.
            await asyncio.to_thread(self.shared.records.apply_audit, profile.audit, self.data_dir)
            self.shared.records.start()
            # Listeners first: once the control socket answers `health`, the proxy serves.
            await self._start_serving(await self._bind_listeners(snapshot))
            self.control = ControlServer(self.socket_path, self._handlers(), log=log)
            await self.control.start()
            await self.metrics.apply(profile.metrics, profile.source)
        except BaseException:
            await self.metrics.close()
            await self._close_listeners(set(self.listeners))
            if self.control is not None:
                await self.control.close()
            await asyncio.to_thread(self.shared.records.close)
            self.store.close()
            raise
        # the health counters' first look, before anything can move them (the CA check below may at once)
        self.health.observe(time.monotonic(), self._trouble_counters())
        self._spawn(self._sweeper(), "arcus-sweeper")
        self._spawn(self.shared.interception.watch_cas(), "arcus-ca-watch")
        self._spawn(MemoryTrim().run(), "arcus-memory-trim")  # freed buffers back to the system
        # expired leaves leave the on-disk leaf caches of every CA generation, hourly, off the loop
        pruner = LeafPruner(CAStore(self.data_dir).leaf_dirs)
        self._spawn(pruner.run(lambda exc: log.warning("leaf cache prune failed: %s", exc)), "arcus-leaf-prune")
        self.watcher.on_gained = self.shared.pool.drop_to  # gained addresses: close idle connections to them
        self.watcher.start()
        log.info(
            "arcus %s serving profile %s: %s (control socket %s, store %s)",
            __version__,
            profile.source,
            ", ".join(f"{s['name']} on {', '.join(s['listen'])}" for s in self._server_info()),
            self.socket_path,
            self.store.path,
        )

    async def run(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig, handler in (
            (signal.SIGTERM, self._stop_signal),
            (signal.SIGINT, self._stop_signal),
            (signal.SIGHUP, lambda: self._spawn(self._reload_from_signal(), "arcus-sighup-reload")),
        ):
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        await self._stop.wait()
        await self.shutdown(self._graceful)

    def _stop_signal(self) -> None:
        """SIGTERM or SIGINT: the first drains, a second one (Ctrl-C again) stops now."""
        if self._stop.is_set():
            self.request_stop(graceful=False)
        else:
            self.request_stop(graceful=True)
            log.info("press Ctrl-C again (or send SIGTERM again) to stop without waiting")

    def request_stop(self, graceful: bool) -> None:
        if not self._stop.is_set():
            log.info("shutting down (%s)", "graceful" if graceful else "immediate")
        elif self._graceful and not graceful:
            log.info("stopping now: the drain is cut short")
        self._graceful = graceful and self._graceful
        self._stop.set()

    async def shutdown(self, graceful: bool) -> None:
        shared = self._shared()  # run() stops only a daemon whose start() returned
        try:  # let a reload that is binding finish first (it checks _stop), then close all
            await asyncio.wait_for(self._reload_lock.acquire(), timeout=10.0)
        except TimeoutError:
            log.warning("a reload is still running; closing the listeners anyway")
        else:
            self._reload_lock.release()
        await self._close_listeners(set(self.listeners))
        shared.draining = True
        if graceful:
            for conn in list(shared.connections.values()):
                conn.drain()
            bound = shared.snapshot.profile.runtime.graceful_timeout
            deadline = time.monotonic() + bound
            # self._graceful turns False if an immediate stop is asked for meanwhile
            while shared.connections and time.monotonic() < deadline and self._graceful:
                await asyncio.sleep(0.05)
            if shared.connections and self._graceful:
                log.warning("%d connection(s) still open after %gs; closing them", len(shared.connections), bound)
        for conn in list(shared.connections.values()):
            conn.abort("shutdown")
        self.watcher.close()
        shared.pool.close_all()
        shared.verifier.close()
        shared.interception.close()  # the leaf factory's worker threads
        close_escapers(shared.snapshot)
        for resolver in shared.snapshot.resolvers.values():
            try:  # c-ares threads stop with nothing pending
                await asyncio.wait_for(resolver.close(), 5)
            except (TimeoutError, OSError) as exc:
                log.warning("resolver %s did not close cleanly: %s", resolver.name, exc)
        for task in list(self._tasks):
            task.cancel()
        self.events.close()
        if self.control is not None:
            await self.control.close()
        await self.metrics.close()
        await asyncio.sleep(0)  # the aborted connections' last records are emitted
        # Access-log lines and audit events still queued are written, within the graceful bound.
        bound = min(RECORDS_CLOSE_TIMEOUT, max(1.0, shared.snapshot.profile.runtime.graceful_timeout))
        await asyncio.to_thread(shared.records.close, bound)
        if self.store is not None:
            self.store.close()
        log.info("stopped")

    def _shared(self) -> Shared:
        """``shared``, for what runs only once start() has set it (never unset): the listeners,
        the control commands, the signal handlers, the background tasks and shutdown."""
        assert self.shared is not None, "the daemon has no Snapshot yet"
        return self.shared

    def _store(self) -> Store:
        """``store``, for what runs only once start() has opened it (set before ``shared``)."""
        assert self.store is not None, "the daemon has no store yet"
        return self.store

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sweeper(self) -> None:
        shared = self._shared()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            shared.sweep(now)
            self.fds.check(now)  # out of descriptors, connections are reset unseen: say so
            for problem in self.health.observe(now, self._trouble_counters()):
                self.events.publish("problem", problem=problem, detail=DESCRIPTIONS.get(problem, problem))

    # ------------------------------------------------------------------ listeners

    @staticmethod
    def _wanted(snapshot: Snapshot) -> dict[ListenKey, ServerConfig]:
        return {(s.name, host, port): s for s in snapshot.profile.servers for host, port in s.listen}

    async def _bind_listeners(self, snapshot: Snapshot) -> list[ListenKey]:
        """Bind what ``snapshot`` wants and is not bound yet; return the keys bound.

        The new listeners do not accept yet (``_start_serving``): a connection must not arrive
        before the Snapshot that knows its server is in place.
        """
        loop = asyncio.get_running_loop()
        wanted = self._wanted(snapshot)
        fresh: list[ListenKey] = []
        try:
            for key, server in wanted.items():
                if key in self.listeners:
                    continue
                _, host, port = key
                kind = SERVER_TYPES[server.type]
                factory = kind.factory(self.shared, server.name)
                try:
                    srv = await kind.listen(loop, factory, host, port, server)
                except OSError as exc:
                    where = f"{snapshot.profile.source}:{server.line}" if server.line else snapshot.profile.source
                    ours = [n for (n, _h, p) in self.listeners if p == port and port]
                    raise OperatorError(
                        f"{where}: server {server.name} cannot listen on {_fmt_addr(host, port)}: "
                        f"{os.strerror(exc.errno) if exc.errno else exc}",
                        code="invalid",
                        hint=await self._listen_hint(snapshot, host, port, exc, ours),
                    ) from None
                self.listeners[key] = srv
                fresh.append(key)
        except BaseException:
            await self._close_listeners(set(fresh))
            raise
        self._listening_changed()
        return fresh

    def _listening_changed(self) -> None:
        """The escapers' view of the ports this daemon listens on (connections into them are
        counted: arcus.escape.hops)."""
        ports = {sock.getsockname()[1] for srv in self.listeners.values() for sock in (getattr(srv, "sockets", None) or ())
                 if sock.type == socket.SOCK_STREAM}
        LISTENING.replace(self, ports)

    async def _listen_hint(self, snapshot: Snapshot, host: str, port: int, exc: OSError, ours: list[str]) -> str:
        if exc.errno == errno.EADDRNOTAVAIL:
            return (f"{host} is not an address of this machine: listen on one it has "
                    "(`ip addr` lists them), 0.0.0.0 or :: for all of them")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"port {port} is privileged here: run as root (or with CAP_NET_BIND_SERVICE), or pick a port above 1023"
        if ours and exc.errno == errno.EADDRINUSE:
            return (f"this daemon listens there itself, as server {ours[0]}: a listener cannot move "
                    "between servers in one reload (free the port in one reload, take it in the next)")
        if exc.errno == errno.EADDRINUSE:  # who holds it, and how to run elsewhere (looks around: off the loop)
            return await asyncio.to_thread(busy_hint, snapshot.profile.source, host, port, self.socket_path)
        return "pick another address in the profile, or stop what holds this one"

    def _stale(self, snapshot: Snapshot) -> set[ListenKey]:
        return set(self.listeners) - set(self._wanted(snapshot))

    async def _start_serving(self, keys: list[ListenKey]) -> None:
        for key in keys:
            srv = self.listeners.get(key)
            if srv is None:
                continue
            try:
                await srv.start_serving()
            except OSError as exc:  # listen() failed after a good bind: rare, and too late to refuse
                log.error("server %s cannot listen on %s: %s", key[0], _fmt_addr(key[1], key[2]), exc)
                await self._close_listeners({key})

    async def _close_listeners(self, keys: set[ListenKey]) -> None:
        for key in keys:
            srv = self.listeners.pop(key, None)
            if srv is not None:
                srv.close()
        self._listening_changed()

    def _server_info(self) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for s in self._shared().snapshot.profile.servers:
            out[s.name] = {"name": s.name, "type": s.type, "escaper": s.escaper, "listen": []}
        for (name, _, _), srv in self.listeners.items():
            if name in out:
                for sock in getattr(srv, "sockets", None) or ():  # an asyncio.Server's (AbstractServer has none)
                    addr = sock.getsockname()
                    out[name]["listen"].append(_fmt_addr(addr[0], addr[1]))
        return list(out.values())

    # ------------------------------------------------------------------ reload

    async def reload(self) -> int:
        """Re-read the profile and the store; swap in the new Snapshot or raise and keep the old."""
        try:
            generation = await self._reload()
        except BaseException as exc:
            self.metrics.reloads["refused"] += 1
            if isinstance(exc, OperatorError | ConfigError):
                self.events.publish("reload_refused", message=str(exc) if isinstance(exc, ConfigError) else exc.message,
                                    code="invalid" if isinstance(exc, ConfigError) else exc.code)
            raise
        self.metrics.reloads["done"] += 1
        self.events.publish("reload", generation=generation, profile=self._shared().snapshot.profile.source)
        return generation

    async def _reload(self) -> int:
        async with self._reload_lock:
            if self._stop.is_set():
                # shutdown has closed the listeners; a reload would open them again
                raise OperatorError(
                    "the daemon is shutting down; reload refused",
                    code="unavailable",
                    hint="start it again to serve a changed profile",
                )
            profile: Profile = await asyncio.to_thread(load_profile, self.profile_arg)
            # a log file that cannot be opened refuses the reload, as it refuses `arcus serve`
            # (log level, access log on/off, a file reopened for logrotate: applied after the swap)
            prepared_log = None if self.setup_log is None else await asyncio.to_thread(self.setup_log, profile.log)
            try:
                return await self._reload_with(profile, prepared_log)
            except BaseException:
                if prepared_log is not None:
                    prepared_log.discard()
                raise

    async def _reload_with(self, profile: Profile, prepared_log: Any) -> int:
        """The rest of a reload, under its lock: the store, the Snapshot, the listeners, the swap."""
        shared = self._shared()  # reloads come from the control socket and SIGHUP, both after start()
        data = await asyncio.to_thread(load_store, self.store)
        await self.watcher.refresh()
        generation = self.generation + 1
        snapshot = await asyncio.to_thread(build_snapshot, generation, profile, data, self.own, shared.snapshot)
        if self._stop.is_set():  # shutdown began while we were building
            raise OperatorError("the daemon is shutting down; reload refused", code="unavailable")
        fresh = await self._bind_listeners(snapshot)
        # Listeners of removed servers close first, and the connections they accepted
        # meet connection_made() (one or two loop turns later) while the old Snapshot,
        # which still has their server, is current; only then the swap, and only then
        # do the new listeners accept.
        await self._close_listeners(self._stale(snapshot))
        for _ in range(3):
            await asyncio.sleep(0)
        await start_escapers(snapshot, shared.snapshot)
        previous = shared.snapshot
        shared.swap(snapshot)
        close_escapers(previous, snapshot)
        for resolver in retired_resolvers(previous, snapshot):  # after the lookups under way (bounded)
            self._spawn(_close_later(resolver), f"arcus-resolver-close-{resolver.name}")
        self.generation = generation
        await self._start_serving(fresh)
        if prepared_log is not None:
            prepared_log.install()
        try:  # audit on/off, retention, queue and batch sizes
            await asyncio.to_thread(shared.records.apply_audit, profile.audit, self.data_dir)
        except OperatorError as exc:
            log.error("%s; the audit log is unchanged", exc.message)
        shared.records.refresh()  # the access log may have been turned on or off
        try:  # the metrics listener moved, appeared or went away
            await self.metrics.apply(profile.metrics, profile.source)
        except OperatorError as exc:
            log.error("%s; no metrics listener until the next reload", exc.message)
        log.info("reloaded profile %s: generation %d", profile.source, generation)
        return generation

    async def refresh_tenants(self) -> int:
        async with self._reload_lock:
            data = await asyncio.to_thread(load_store, self.store)
            generation = self.generation + 1
            # Building the table parses every range and compiles policies: off the event loop.
            shared = self._shared()  # tenant commands and login upgrades run after start()
            snapshot = await asyncio.to_thread(with_store, shared.snapshot, generation, data)
            shared.swap(snapshot)
            self.generation = generation
            return generation

    def _rehash(self, tenant: str, user: str, old_secret: str, password: str) -> None:
        """Replace a user's legacy hash by a scrypt one, off the event loop (login upgrade)."""
        if len(self._tasks) > 1000:  # bounded: a storm of legacy logins waits for the next ones
            return
        self._spawn(self._upgrade_secret(tenant, user, old_secret, password), f"arcus-rehash-{tenant}-{user}")

    async def _upgrade_secret(self, tenant: str, user: str, old_secret: str, password: str) -> None:
        try:
            new_secret = await asyncio.to_thread(hash_secret, password)

            store = self._store()  # rehash is set after the store is open

            def swap() -> bool:
                if store.get_user(tenant, user).secret != old_secret:
                    return False  # changed meanwhile (passwd): leave it
                store.set_user(tenant, user, secret=new_secret)
                return True

            if await asyncio.to_thread(swap):
                await self.refresh_tenants()
                log.info("user %s/%s: legacy password hash upgraded to scrypt", tenant, user)
        except (OperatorError, OSError) as exc:
            log.warning("user %s/%s: could not upgrade the password hash: %s", tenant, user, exc)

    async def _reload_from_signal(self) -> None:
        try:
            await self.reload()
        except ConfigError as exc:
            log.error("reload refused, still serving generation %d:\n%s", self.generation, exc)
        except OperatorError as exc:
            log.error("reload refused, still serving generation %d: %s", self.generation, exc.message)

    # ------------------------------------------------------------------ control commands

    def _handlers(self) -> dict[str, Any]:
        handlers = {
            "health": self._cmd_health,
            "stats": self._cmd_stats,
            "stats.watch": self.metrics.watch,
            "reload": self._cmd_reload,
            "conns": self._cmd_conns,
            "kill": self._cmd_kill,
            "shutdown": self._cmd_shutdown,
            **self._announced(tenancy_handlers(self)),
            "events.watch": self.events.watch,
            **audit_handlers(lambda: self._shared().records.audit),
            **resolve_handlers(self),
            **escaper_handlers(self),
        }
        for cmd, allowed in CORE_ARGS.items():
            handlers[cmd] = _taking(cmd, allowed, handlers[cmd])
        return handlers

    def _announced(self, handlers: dict[str, Any]) -> dict[str, Any]:
        """The store-changing handlers, each followed by a ``change`` event when it succeeds."""

        def announce(cmd: str, handler: Any) -> Any:
            @functools.wraps(handler)
            async def changed(args: dict) -> Any:
                result = await handler(args)
                fields = change_fields(cmd, args or {}, result)
                self.events.publish("change", **fields, generation=self.generation)
                what = " ".join(f"{k}={v}" for k, v in fields.items() if k != "cmd" and v is not None)
                log.info("%s %s: generation %d", cmd, what, self.generation, extra={"tenant": fields.get("tenant")})
                return result

            return changed

        return {cmd: announce(cmd, h) if cmd in CHANGE_COMMANDS else h for cmd, h in handlers.items()}

    def _trouble_counters(self) -> dict[str, int]:
        """The running counters whose movement makes the box degraded (``arcus.runtime.health``)."""
        shared = self._shared()
        records = shared.records
        sink = records.audit
        return {
            "audit_dropped": sink.dropped if sink is not None else 0,
            "records_dropped": records.dropped,
            "fds_low": self.fds.low,
            "ca_unreadable": getattr(shared.interception, "ca_failures", 0),
        }

    async def _cmd_health(self, args: dict) -> dict:
        problems = self.health.problems(time.monotonic())
        shared = self._shared()
        return {
            "status": "draining" if shared.draining else ("degraded" if problems else "ok"),
            "problems": problems,
            "pid": os.getpid(),
            "version": __version__,
            "uptime": round(time.monotonic() - self.started, 3),
            "profile": shared.snapshot.profile.source,
            "generation": self.generation,
            "servers": self._server_info(),
            "store": str(self._store().path),
            "metrics": self.metrics.address,
        }

    async def _cmd_stats(self, args: dict) -> dict:
        shared = self._shared()
        servers = shared.server_counters.to_dict()
        for s in shared.snapshot.profile.servers:
            servers.setdefault(s.name, shared.server_counters.get(s.name).to_dict())
        return {
            "servers": servers,
            "tenants": shared.tenant_counters.to_dict(),
            "generation": self.generation,
            "uptime": round(time.monotonic() - self.started, 3),
            "pooled_upstreams": len(shared.pool),
            "fds": self.fds.info(),
            "auth": shared.verifier.info(),
            "reloads": dict(self.metrics.reloads),
        }

    async def _cmd_reload(self, args: dict) -> dict:
        try:
            return {"generation": await self.reload()}
        except ConfigError as exc:
            raise OperatorError(
                "profile refused, still serving the previous one:\n" + str(exc),
                code="invalid",
                hint="fix the profile (check it with `arcus config check PATH`) and reload again",
            ) from None
        except OperatorError as exc:  # e.g. a new listener cannot bind: same shape, same promise
            if exc.code == "unavailable":  # shutting down: nothing keeps serving
                raise
            raise OperatorError(
                "profile refused, still serving the previous one:\n" + exc.message, code=exc.code, hint=exc.hint
            ) from None

    async def _cmd_conns(self, args: dict) -> list[dict]:
        return [c.info() for c in sorted(self._shared().connections.values(), key=lambda c: c.id)]

    async def _cmd_kill(self, args: dict) -> dict:
        conn_id = args.get("id")
        if not isinstance(conn_id, int) or isinstance(conn_id, bool):
            raise OperatorError("kill needs an integer connection id", code="invalid", hint="see `arcus ctl conns`")
        conn = self._shared().connections.get(conn_id)
        if conn is None:
            raise NotFound(f"no live connection {conn_id}", hint="see `arcus ctl conns`")
        conn.abort("killed by operator")
        return {"killed": conn_id}

    async def _cmd_shutdown(self, args: dict) -> dict:
        graceful = args.get("graceful", False)
        if not isinstance(graceful, bool):  # "false" is a true string: a typed request stops nothing by mistake
            raise OperatorError(f"graceful must be true or false, not {graceful!r}", code="invalid",
                                hint='pass {"graceful": true} or {"graceful": false}')
        # answer first, then stop
        asyncio.get_running_loop().call_soon(self.request_stop, graceful)
        return {"shutting_down": True, "graceful": graceful}


async def _close_later(resolver: Any) -> None:
    """Close a resolver a reload replaced, once the lookups it may still be doing are over
    (each is bounded by its ``timeout``)."""
    await asyncio.sleep(resolver.config.timeout + 1.0)
    try:
        await asyncio.wait_for(resolver.close(), 5)
    except (TimeoutError, OSError) as exc:
        log.warning("resolver %s did not close cleanly: %s", resolver.name, exc)


CORE_ARGS: dict[str, tuple[str, ...]] = {
    "health": (), "stats": (), "reload": (), "conns": (), "kill": ("id",), "shutdown": ("graceful",),
    "escaper.list": (), "escaper.show": ("escaper",), "escaper.float.set": ("escaper", "addresses"),
}
"""The arguments the daemon's own and the escaper commands take: any other is refused (a
misspelt ``{"graceful": true}`` must not shut the daemon down at once)."""


def _taking(cmd: str, allowed: tuple[str, ...], handler: Any) -> Any:
    @functools.wraps(handler)
    async def checked(args: dict) -> Any:
        only_args(args, allowed, cmd)
        return await handler(args)

    return checked
