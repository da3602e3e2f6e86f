"""Escapers in the running daemon: their life cycle across Snapshots, and their control commands.

Life cycle (the daemon calls these; see docs/escapers.md):

- ``await start_escapers(new, old)`` once a Snapshot is built, before it is swapped in: each
  escaper takes over the live state of the escaper of the same name and type in ``old`` (a
  published ``direct_float`` set, pool breaker states) and starts its background work
  (health checks).
- ``close_escapers(old, new)`` after the swap (and ``close_escapers(current)`` at shutdown):
  stops the background work of the escapers ``new`` no longer holds. Connections that captured
  the old Snapshot can still connect through them.

Commands:

- ``escaper.list`` -> ``[info, ...]``: every escaper's type and live state (pool members and
  their health, float addresses).
- ``escaper.show {escaper}`` -> ``info``.
- ``escaper.float.set {escaper, addresses}``: replace a ``direct_float`` escaper's egress set
  live (``addresses`` a list of IP addresses, may be empty); the next connection uses it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from arcus.errors import NotFound, OperatorError
from arcus.escape.base import Escaper
from arcus.escape.direct_float import DirectFloatEscaper
from arcus.serve.context import Snapshot

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

log = logging.getLogger("arcus.daemon")

MAX_FLOAT_ADDRESSES = 4096


async def start_escapers(new: Snapshot, old: Snapshot | None) -> None:
    """Carry live state over from ``old`` and start ``new``'s background work."""
    previous = old.escapers if old is not None else {}
    for name, escaper in new.escapers.items():
        before = previous.get(name)
        if before is not None and before is not escaper and type(before) is type(escaper):
            escaper.adopt(before)
        try:
            await escaper.start()
        except Exception:  # one escaper's checks failing to start must not stop the daemon
            log.exception("escaper %s could not start its background work", name)


def close_escapers(old: Snapshot, new: Snapshot | None = None) -> None:
    """Stop what ``old``'s escapers run, except the ones ``new`` still holds (same object)."""
    keep = {id(e) for e in new.escapers.values()} if new is not None else set()
    for escaper in old.escapers.values():
        if id(escaper) not in keep:
            try:
                escaper.close()
            except Exception:
                log.exception("escaper %s did not close cleanly", escaper.name)


def _escaper(daemon: Any, args: dict[str, Any]) -> Escaper:
    name = args.get("escaper")
    if not isinstance(name, str) or not name:
        raise OperatorError("missing escaper name", code="invalid", hint='pass {"escaper": "NAME"}')
    escapers = daemon.shared.snapshot.escapers
    escaper = escapers.get(name)
    if escaper is None:
        known = ", ".join(escapers) or "none"
        raise NotFound(f"no escaper {name!r} in the running profile", hint=f"escapers: {known}")
    return escaper


def escaper_handlers(daemon: Any) -> dict[str, Handler]:
    """The handlers the daemon registers next to its own (``daemon.shared.snapshot`` is read)."""

    async def escaper_list(args: dict[str, Any]) -> list[dict[str, Any]]:
        return [e.info() for e in daemon.shared.snapshot.escapers.values()]

    async def escaper_show(args: dict[str, Any]) -> dict[str, Any]:
        return _escaper(daemon, args).info()

    async def float_set(args: dict[str, Any]) -> dict[str, Any]:
        escaper = _escaper(daemon, args)
        if not isinstance(escaper, DirectFloatEscaper):
            raise OperatorError(
                f"escaper {escaper.name} is {escaper.type_name}, not direct_float",
                code="invalid",
                hint="egress addresses can be set live on direct_float escapers only",
            )
        addresses = args.get("addresses")
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise OperatorError(
                "addresses must be a list of IP addresses", code="invalid", hint='e.g. {"addresses": ["192.0.2.10"]}'
            )
        if len(addresses) > MAX_FLOAT_ADDRESSES:
            raise OperatorError(f"at most {MAX_FLOAT_ADDRESSES} addresses", code="invalid")
        try:
            current = escaper.set_addresses(addresses)
        except ValueError as exc:
            raise OperatorError(str(exc), code="invalid", hint="write IPv4 or IPv6 addresses, e.g. 192.0.2.10") from None
        log.info("escaper %s: egress addresses set to %s", escaper.name, ", ".join(current) or "none")
        return {"escaper": escaper.name, "addresses": list(current)}

    return {
        "escaper.list": escaper_list,
        "escaper.show": escaper_show,
        "escaper.float.set": float_set,
    }
