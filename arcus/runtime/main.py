"""`arcus serve`: logging, the event loop (uvloop when present) and the daemon."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from arcus.config.schema import LogConfig
from arcus.runtime.daemon import Daemon


def setup_logging(config: LogConfig) -> None:
    root = logging.getLogger("arcus")
    root.handlers.clear()
    if config.target == "stderr":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(config.target)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(getattr(logging, config.level.upper(), logging.INFO))
    root.propagate = False
    logging.getLogger("arcus.access").disabled = not config.access


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(profile: str | None, data_dir: Path, socket_path: Path) -> int:
    """Run the daemon until it is told to stop; return the exit status."""
    from arcus.config import load_profile

    # Validate the profile before anything else so errors come out before a loop starts.
    profile_obj = load_profile(profile)
    setup_logging(profile_obj.log)
    daemon = Daemon(profile, data_dir, socket_path)
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(daemon.run())
    return 0
