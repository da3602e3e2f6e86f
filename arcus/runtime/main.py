"""`arcus serve`: logging, the event loop (uvloop when present) and the daemon."""

from __future__ import annotations

import asyncio
import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from arcus.config.schema import LogConfig
from arcus.errors import OperatorError
from arcus.runtime.daemon import Daemon
from arcus.stats.logs import LOG_FORMAT, JsonFormatter, TenantLevels


def setup_logging(config: LogConfig) -> PreparedLog:
    """Open the profile's log target and return what points the ``arcus`` loggers at it; called
    at start and on every reload (which opens first: a target that cannot be opened refuses the
    reload before anything changed).

    The new handler is opened before the old one is dropped, so a target that cannot be opened
    raises OperatorError and leaves logging as it was. A reload (SIGHUP from logrotate) reopens
    a log file. Access-log lines are written by the records writer thread
    (:class:`arcus.audit.records.AccessLog`), in batches, to the handler set up here.

    ``format``: text or JSON lines (:mod:`arcus.stats.logs`); ``max_size``: a file rotates at
    that size, ``backups`` old files kept; ``tenants``: per-tenant minimum levels, a filter on
    the handler (the loggers let the lowest level through, the filter decides per line).
    """
    if config.target == "stderr":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            if config.max_size is not None:
                handler = RotatingFileHandler(config.target, maxBytes=config.max_size, backupCount=config.backups)
            else:
                handler = logging.FileHandler(config.target)
        except OSError as exc:
            raise OperatorError(
                f"cannot open the log file {config.target}: {exc.strerror or exc}",
                code="invalid",
                hint="create its directory, or set log.target in the profile to stderr or another file",
            ) from None
    handler.setFormatter(JsonFormatter() if config.format == "json" else logging.Formatter(LOG_FORMAT))
    levels = TenantLevels.from_config(config.level, config.tenants)
    if levels.per_tenant:
        handler.addFilter(levels)
    return PreparedLog(handler, levels.lowest, config.access)


class PreparedLog:
    """A log target opened for a profile: ``install()`` points the loggers at it, ``discard()``
    closes it unused (a reload refused later on)."""

    def __init__(self, handler: logging.Handler, level: int, access: bool) -> None:
        self.handler, self.level, self.access = handler, level, access
        self.installed = False

    def install(self) -> None:
        self.installed = True
        root = logging.getLogger("arcus")
        old = list(root.handlers)
        root.handlers[:] = [self.handler]
        for h in old:
            h.close()
        root.setLevel(self.level)
        root.propagate = False
        logging.getLogger("arcus.access").disabled = not self.access

    def discard(self) -> None:
        if not self.installed:
            self.handler.close()  # a file closed; stderr's handler leaves stderr open


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
    setup_logging(profile_obj.log).install()
    daemon = Daemon(profile, data_dir, socket_path, setup_log=setup_logging)
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(daemon.run())
    return 0
