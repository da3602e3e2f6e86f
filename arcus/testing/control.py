"""A real ControlServer on its own event loop in a background thread, as inside the daemon,
for tests of control clients and CLI commands against fake or store-backed handlers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arcus.control.server import ControlServer, Handler


class ServerThread:
    def __init__(self, path: Path, handlers: Mapping[str, Handler], **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(path, handlers, **kw)
        self._thread = threading.Thread(target=self.loop.run_forever, name="control-test", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.run(self.server.start())
        return self

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


class TenancyDaemon:
    """The part of the daemon the tenancy handlers use (:class:`arcus.runtime.tenancy.TenancyHost`),
    for tests that drive them without listeners: a real Store, a real Shared holding a Snapshot of
    ``profile`` (the embedded default) built as the daemon builds it, and ``refresh_tenants``
    rebuilding its store part as the daemon does. ``refreshes`` counts the rebuilds; ``calls``
    records what :meth:`handlers` were sent."""

    def __init__(self, store: Any, profile: str | None = None) -> None:
        from arcus.config import load_profile
        from arcus.runtime.snapshot import build_snapshot, load_store
        from arcus.serve.context import Shared

        self.store = store
        self.shared = Shared(build_snapshot(1, load_profile(profile), load_store(store), frozenset()))
        self.refreshes = 0
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def refresh_tenants(self) -> int:
        self.refreshes += 1
        snapshot = await asyncio.to_thread(self._rebuilt)
        self.shared.swap(snapshot)
        return self.refreshes

    def seed(self, fill: Any) -> None:
        """``fill(store)`` writes what a test starts from; the Snapshot is rebuilt (not counted)."""
        fill(self.store)
        self.shared.swap(self._rebuilt())

    def _rebuilt(self) -> Any:
        from arcus.runtime.snapshot import load_store, with_store

        return with_store(self.shared.snapshot, self.shared.snapshot.generation + 1, load_store(self.store))

    def handlers(self) -> dict[str, Handler]:
        """The daemon's real tenancy handlers, each call and its arguments recorded."""
        import json

        from arcus.runtime.tenancy import tenancy_handlers

        def wrap(cmd: str, handler: Handler) -> Handler:
            async def recorded(args: dict[str, Any]) -> Any:
                self.calls.append((cmd, json.loads(json.dumps(args))))
                return await handler(args)

            return recorded

        return {cmd: wrap(cmd, h) for cmd, h in tenancy_handlers(self).items()}

    async def close(self) -> None:
        for resolver in self.shared.snapshot.resolvers.values():
            await resolver.close()
