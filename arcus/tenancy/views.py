"""What the data plane knows of tenants and users: settings, compiled policies, live limits.

Views are built by the runtime (``arcus.runtime.snapshot.build_tenancy``) off the event loop
from one consistent read of the store and carried by the Snapshot (``arcus.tenancy.directory``).
Limiters are the exception to "immutable": their state (tokens, active connections) must
survive reloads, so they live in ``Limits`` objects kept in a registry keyed by ``Scope``
(``Shared.limits``) and only their rates are updated on a reload.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from arcus.icap.stage import IcapPolicy
from arcus.limit import ConcurrencyLimit, Shaper, TokenBucket
from arcus.policy import Policy


def client_address(client_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address as ranges are matched (an IPv4-mapped IPv6 address as IPv4); None
    when it is not an IP address (a Unix socket peer)."""
    try:
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class Scope(NamedTuple):
    """Whose limiters: the box, a tenant (by name) or a user (by ``tenant/user``)."""

    kind: str  # "box" | "tenant" | "user"
    name: str = ""

    @staticmethod
    def tenant(name: str) -> "Scope":
        return Scope("tenant", name)

    @staticmethod
    def user(key: str) -> "Scope":
        return Scope("user", key)


BOX = Scope("box")


@dataclass(frozen=True, slots=True)
class LimitSpec:
    max_conns: int | None = None
    rps: float | None = None
    bandwidth: float | None = None  # bytes/s, each direction

    @property
    def any(self) -> bool:
        return self.max_conns is not None or self.rps is not None or self.bandwidth is not None


class Limits:
    """Live limiters of one scope (the box, a tenant, a user)."""

    __slots__ = ("conns", "rate", "up", "down", "spec")

    def __init__(self, spec: LimitSpec) -> None:
        self.spec = spec
        self.conns = ConcurrencyLimit(spec.max_conns)
        self.rate = TokenBucket(spec.rps) if spec.rps is not None else None
        self.up = Shaper(spec.bandwidth) if spec.bandwidth is not None else None
        self.down = Shaper(spec.bandwidth) if spec.bandwidth is not None else None

    def update(self, spec: LimitSpec, now: float) -> None:
        if spec == self.spec:
            return
        self.spec = spec
        self.conns.set_limit(spec.max_conns)
        if spec.rps is None:
            self.rate = None
        elif self.rate is None:
            self.rate = TokenBucket(spec.rps)
        else:
            self.rate.set_rate(spec.rps, now=now)
        if spec.bandwidth is None:
            self.up = self.down = None
        elif self.up is None or self.down is None:
            self.up, self.down = Shaper(spec.bandwidth), Shaper(spec.bandwidth)
        else:
            self.up.set_rate(spec.bandwidth, now=now)
            self.down.set_rate(spec.bandwidth, now=now)


@dataclass(frozen=True, slots=True)
class UserView:
    tenant: str
    name: str
    secret: str
    blocked: bool
    expires: float | None  # unix time; None = never
    limits: LimitSpec

    @property
    def key(self) -> str:
        return f"{self.tenant}/{self.name}"


@dataclass(frozen=True, slots=True)
class TenantView:
    name: str
    suspended: bool = False
    auth: str = "none"  # none | optional | required
    exempt: tuple = ()  # ip_network objects that never need credentials
    realm: bytes = b""
    policy: Policy | None = None  # None: no rule and default allow (the fast path)
    explicit_ids: frozenset[str] = frozenset()  # allow rules with dest_cidrs: they open special ranges
    block_page: str | None = None
    log_query: bool = False
    lock_sources: bool = False  # from its source ranges, only its own users are admitted
    icap: IcapPolicy | None = None  # bodies go to this ICAP service (arcus.icap); None: no ICAP
    users: dict[str, UserView] = field(default_factory=dict)
    limits: LimitSpec = LimitSpec()

    def is_exempt(self, client_ip: str) -> bool:
        if not self.exempt:
            return False
        addr = client_address(client_ip)
        return addr is not None and any(addr in net for net in self.exempt)


def apply_limits(registry: dict[Scope, Limits], box: LimitSpec, tenants: Iterable[TenantView], now: float) -> None:
    """Create or update the live limiters (on the event loop, before a Snapshot swap).

    Limiters of scopes that are gone are kept while connections may still hold them; they are
    dropped when no connection is active in them.
    """
    wanted: dict[Scope, LimitSpec] = {BOX: box}
    for t in tenants:
        if t.limits.any:
            wanted[Scope.tenant(t.name)] = t.limits
        for u in t.users.values():
            if u.limits.any:
                wanted[Scope.user(u.key)] = u.limits
    for key, spec in wanted.items():
        lim = registry.get(key)
        if lim is None:
            registry[key] = Limits(spec)
        else:
            lim.update(spec, now)
    for key in [k for k in registry if k not in wanted]:
        lim = registry[key]
        if lim.conns.active == 0:
            del registry[key]
        else:
            lim.update(LimitSpec(), now)
