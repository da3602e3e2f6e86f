"""What the servers share with the runtime: the current Snapshot, the live connections, the
upstream pool and the counters.

The runtime owns one ``Shared`` and swaps ``Shared.snapshot`` on reload (one reference
assignment); a connection reads it once, when it is accepted, and keeps that Snapshot until
it ends.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arcus.audit.records import Records
from arcus.auth.credcache import CredentialCache, FailureThrottle
from arcus.auth.verifier import Verifier
from arcus.policy.egress import HostAddresses
from arcus.policy.intercept import NO_INTERCEPTION, Plan
from arcus.serve.pool import UpstreamPool
from arcus.tenancy.directory import EMPTY_TENANCY, Tenancy
from arcus.tenancy.views import Limits, Scope, apply_limits
from arcus.stats import CounterSet

if TYPE_CHECKING:
    from arcus.config.schema import Profile, ServerConfig
    from arcus.escape.base import Escaper
    from arcus.resolve.base import Resolver

@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the data plane reads, compiled once, immutable."""

    generation: int
    profile: "Profile"
    escapers: dict[str, "Escaper"]
    resolvers: dict[str, "Resolver"]
    servers: dict[str, "ServerConfig"] = field(default_factory=dict)
    tenancy: Tenancy = EMPTY_TENANCY
    intercept: Plan = NO_INTERCEPTION  # which tenants' TLS tunnels are intercepted (arcus.policy.intercept)


def client_sni(transport) -> str | None:
    """The name a TLS client gave the proxy itself (set by the listeners' SNI callbacks)."""
    sslobj = transport.get_extra_info("ssl_object")
    return getattr(sslobj, "arcus_sni", None) if sslobj is not None else None


class Tracked:
    """A live client connection as the registry, the sweeper and `ctl conns` see it.

    Timeouts are deadlines checked by the runtime's sweeper once a second instead of a timer
    per connection: setting one is an attribute write on the hot path. When ``idle_window`` is
    set, the deadline is an idle bound: moved on as long as bytes keep flowing (the sweeper
    notes ``seen_activity`` on every pass, so the bound is the window plus at most one sweep),
    or while the client takes, however slowly, what is held for it (``unsent`` shrinking: a
    slow reader has stopped our reading of the upstream, which is then silent through no fault
    of its own).
    """

    __slots__ = (
        "shared", "server", "id", "tenant", "client", "target", "started", "bytes_up", "bytes_down", "deadline",
        "idle_window", "seen_activity", "seen_unsent",
    )

    shared: "Shared"
    id: int
    server: str
    tenant: str
    client: str
    target: str
    started: float
    bytes_up: int
    bytes_down: int
    deadline: float
    idle_window: float
    seen_activity: int
    seen_unsent: int

    def track(self, shared: "Shared", server: str, tenant: str) -> None:
        """The fields every tracked connection starts with (set in its ``__init__``)."""
        self.shared = shared
        self.server = server
        self.id = 0
        self.tenant = tenant
        self.client = ""
        self.target = ""
        self.started = time.monotonic()
        self.bytes_up = 0
        self.bytes_down = 0
        self.deadline = 0.0
        self.idle_window = 0.0
        self.seen_activity = 0
        self.seen_unsent = -1  # what ``unsent`` said when an idle bound last ran out (-1: not looked)

    def unsent(self) -> int:
        """Bytes written for the client that it has not taken yet (0 where not known); asked by
        the sweeper only when an idle bound ran out with no byte moved."""
        return 0

    def state_name(self) -> str:
        raise NotImplementedError

    def on_timeout(self) -> None:
        raise NotImplementedError

    def abort(self, reason: str) -> None:
        raise NotImplementedError

    def drain(self) -> None:
        """Finish what is in flight, then close (graceful shutdown)."""
        raise NotImplementedError

    def info(self) -> dict:
        return {
            "id": self.id,
            "server": self.server,
            "tenant": self.tenant,
            "client": self.client,
            "target": self.target,
            "age": round(time.monotonic() - self.started, 3),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "state": self.state_name(),
        }


class Shared:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.connections: dict[int, Tracked] = {}
        self.server_counters = CounterSet()
        self.tenant_counters = CounterSet()
        self.user_counters = CounterSet()  # keyed "tenant/user"
        self.records = Records()  # every connection's and request's record: access log, audit, readers
        self.limits: dict[Scope, Limits] = {}  # live limiters by scope, kept across Snapshots
        self.credcache = CredentialCache()  # verified credentials: a KDF does not run per request
        self.throttle = FailureThrottle()  # failed logins per client address (IPv6: per /64)
        self.verifier = Verifier(self.credcache, self.throttle)  # bounded password checks, own thread pool
        # set by the runtime: rehash(tenant, user, old_secret, password) upgrades a legacy hash
        self.rehash: Callable[[str, str, str, str], None] | None = None
        apply_limits(self.limits, snapshot.tenancy.box, snapshot.tenancy.tenants.values(), time.monotonic())
        self.draining = False
        self.ids = itertools.count(1)
        self.request_ids = itertools.count(1)
        self.boot = format(int(time.time()) & 0xFFFFFF, "06x")
        self.pool = UpstreamPool()
        self.host = HostAddresses()  # the box's own addresses, live: the runtime fills and updates it
        self.data_dir: Path | None = None  # the daemon's data dir (CAs for the onboarding page): set by the runtime
        self.interception: Any = None  # TLS interception's CAs and leaves (arcus.serve.intercept), set by the runtime

    def swap(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` current (on the event loop): limiter rates first, then the one reference."""
        apply_limits(self.limits, snapshot.tenancy.box, snapshot.tenancy.tenants.values(), time.monotonic())
        self.snapshot = snapshot

    def next_request_id(self) -> str:
        return f"{self.boot}-{next(self.request_ids):x}"

    def sweep(self, now: float) -> None:
        """Fire the deadlines that passed (called by the runtime about once a second)."""
        for conn in list(self.connections.values()):
            # bytes moved since the previous sweep: looked at on every sweep, so that an idle
            # bound counts from the last bytes seen moving, not from whatever moved before it
            # was set (which would stretch the first window to twice its length)
            activity = conn.bytes_up + conn.bytes_down
            moved = activity != conn.seen_activity
            if moved:
                conn.seen_activity = activity
                conn.seen_unsent = -1
            deadline = conn.deadline
            if deadline and now >= deadline:
                if conn.idle_window:
                    if moved:
                        conn.deadline = now + conn.idle_window
                        continue
                    # no byte moved: a client still taking (slowly) what is held for it is not
                    # idle, and the upstream we stopped reading for it is not at fault. A first
                    # look gives one more window to show that what it holds goes down.
                    unsent = conn.unsent()
                    before, conn.seen_unsent = conn.seen_unsent, unsent
                    if unsent and (before < 0 or unsent < before):
                        conn.deadline = now + conn.idle_window
                        continue
                try:
                    conn.on_timeout()
                except Exception:  # a bug in one connection must not stop the sweep
                    logging.getLogger("arcus.serve").exception("timeout handling failed for connection %s", conn.id)
                    conn.abort("internal error")
        self.pool.expire(now)
