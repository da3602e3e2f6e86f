"""What the data plane knows of tenants and users: settings, compiled policies, live limits.

Built by the runtime (``arcus.runtime.snapshot.build_tenancy``) off the event loop from one
consistent read of the store, and carried by the Snapshot. Limiters are the exception to
"immutable": their state (tokens, active connections) must survive reloads, so they live in
``Limits`` objects kept in ``Shared.limits`` and only their rates are updated on a reload.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from arcus.limit import ConcurrencyLimit, Shaper, TokenBucket
from arcus.policy import Policy


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
    users: dict[str, UserView] = field(default_factory=dict)
    limits: LimitSpec = LimitSpec()

    def is_exempt(self, client_ip: str) -> bool:
        if not self.exempt:
            return False
        try:
            addr = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.exempt)


@dataclass(frozen=True, slots=True)
class Tenancy:
    tenants: dict[str, TenantView]
    box: LimitSpec = LimitSpec()
    any_users: bool = False  # some tenant has users: credentials must be looked at
    any_limits: bool = False  # some scope has a rate or bandwidth limit: requests must be metered
    proxy_hosts: dict[str, str] = field(default_factory=dict)  # "acme.proxy.example" or "*.x" -> tenant

    def by_proxy_host(self, sni: str | None) -> TenantView | None:
        """The tenant whose proxy host names include ``sni`` (exact first, then the nearest "*.")."""
        if not sni or not self.proxy_hosts:
            return None
        name = sni.lower().rstrip(".")
        owner = self.proxy_hosts.get(name)
        if owner is None:
            parts = name.split(".")
            for i in range(1, len(parts)):
                owner = self.proxy_hosts.get("*." + ".".join(parts[i:]))
                if owner is not None:
                    break
        return self.tenants.get(owner) if owner is not None else None

    def get(self, name: str) -> TenantView:
        view = self.tenants.get(name)
        return view if view is not None else TenantView(name=name, realm=f'Basic realm="arcus {name}"'.encode())


EMPTY_TENANCY = Tenancy(tenants={})


def apply_limits(registry: dict[str, Limits], tenancy: Tenancy, now: float) -> None:
    """Create or update the live limiters for ``tenancy`` (on the event loop, before the swap).

    Keys: "" for the box, "t:NAME" for tenants, "u:TENANT/USER" for users. Limiters of scopes
    that are gone are kept while connections may still hold them; they are dropped when no
    connection is active in them.
    """
    wanted: dict[str, LimitSpec] = {"": tenancy.box}
    for t in tenancy.tenants.values():
        if t.limits.any:
            wanted["t:" + t.name] = t.limits
        for u in t.users.values():
            if u.limits.any:
                wanted["u:" + u.key] = u.limits
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
