"""Control command ``resolve``: ask one of the running daemon's resolvers, as the data plane would.

``{"cmd": "resolve", "args": {"resolver": "dns", "host": "example.net"}}`` goes through the
resolver of the current Snapshot, its cache included (as ``g3proxy-ctl resolver NAME query``
does), so an operator sees what a client would get: the addresses, whether the cache answered
and how long the answer stays cached. A failure is an error reply with the resolver's reason
and its code (``resolve_failed`` or ``resolve_timeout``); the lookup is bounded by the
resolver's own timeout.

The daemon object needs only ``shared.snapshot.resolvers`` (name -> Resolver).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arcus.control.protocol import arg, only_args
from arcus.errors import EscapeError, NotFound, OperatorError
from arcus.names import validate_name
from arcus.resolve.base import ip_literal

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

MAX_HOST = 253
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
HOST_HINT = "give a domain name such as example.net (letters, digits, -, _ and dots) or an IP address"


def resolve_handlers(daemon: Any) -> dict[str, Handler]:
    """The handlers to register next to the daemon's own: ``{"resolve": ...}``."""

    async def resolve(args: dict[str, Any]) -> dict[str, Any]:
        name = validate_name("resolver", arg(args, "resolver", str))
        host = check_host(arg(args, "host", str))
        only_args(args, ("resolver", "host"), "resolve")
        resolvers = daemon.shared.snapshot.resolvers
        resolver = resolvers.get(name)
        if resolver is None:
            defined = ", ".join(sorted(resolvers)) or "none"
            raise NotFound(f'no resolver "{name}" in the running profile',
                           hint=f"defined resolvers: {defined} (under resolvers: in the profile)")
        started = time.monotonic()
        try:
            found = await resolver.lookup(host)
        except EscapeError as exc:
            raise OperatorError(exc.message, code=exc.code,
                                hint=f"the data plane answers such a request with {exc.status}") from None
        return {
            "resolver": name,
            "type": resolver.config.type,
            "host": host,
            "addresses": list(found.addresses),
            "cached": found.cached,
            "ttl": round(found.ttl, 3),
            "elapsed": round(time.monotonic() - started, 6),
            "stats": resolver.describe(),
        }

    return {"resolve": resolve}


def check_host(host: str) -> str:
    """A domain name (one trailing dot allowed) or an IP literal; anything else is refused."""
    if ip_literal(host) is not None:
        return host
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > MAX_HOST or not all(_LABEL.match(label) for label in name.split(".")):
        raise OperatorError(f"invalid host name {host[:80]!r}", code="invalid", hint=HOST_HINT)
    return name.lower()
