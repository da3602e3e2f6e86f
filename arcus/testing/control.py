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
