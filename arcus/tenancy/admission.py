"""Admission: may this request leave, and how fast. One ``Gate`` per client connection.

``Gate.check(claims, dest, then)`` is the one entry point a server calls per request (HTTP) or
per tunnel; it runs, in order:

1. identification (``arcus.tenancy.identify``): the tenant, and the credentials to verify;
2. credentials: from the cache, or by the key-derivation function off the event loop
   (``verify_credentials``: the one call into ``arcus.auth.verifier``); a throttled address is
   refused first;
3. the user: blocked, expired; the connection's user slot (moved when the user changes);
4. the tenant slot: a connection whose requests switch tenant (by credentials or a trusted
   ``X-Tenant-ID``) takes a slot in the new tenant and releases the old one;
5. ``admit``: suspended tenant, request rate, bandwidth shapers, policy, and the per-address
   check handed to the escaper (DNS rebinding).

A protocol that authenticates before it knows the destination (SOCKS5) calls
``authenticate`` (1-4) and later ``admit`` (5) itself. ``then`` runs at once or, when a key
derivation is needed, from a task the gate owns (``close`` cancels it). Every verdict carries
the tenant and the user the request is attributed to, refused or not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from arcus.auth.secrets import needs_rehash
from arcus.auth.verifier import Check, Outcome
from arcus.errors import ErrorCode, Refusal
from arcus.policy import Request as PolicyRequest
from arcus.policy.nets import parse_address
from arcus.tenancy.identify import Claims, Credentials, identify
from arcus.tenancy.views import BOX, Limits, Scope, TenantView, UserView

UTC = timezone.utc


class Destination:
    """What the policy sees of where a request goes. A plain slotted class, not a frozen
    dataclass: one is made per request, and a frozen dataclass's ``__init__`` pays an
    ``object.__setattr__`` per field. Treat it as immutable."""

    __slots__ = ("host", "port", "method", "path", "is_tunnel")

    def __init__(self, host: str, port: int, method: str, path: str | None = None, is_tunnel: bool = False) -> None:
        self.host = host
        self.port = port
        self.method = method  # the HTTP method, "CONNECT" for a tunnel, "UDP" for a SOCKS datagram
        self.path = path
        self.is_tunnel = is_tunnel

    def __repr__(self) -> str:
        return f"Destination({self.host!r}, {self.port}, {self.method!r}, {self.path!r}, {self.is_tunnel})"


@dataclass(slots=True)
class Admitted:
    decision: str = "allow"  # allow | report (allowed, a report rule matched)
    rule: str | None = None
    reports: tuple = ()
    check: Callable[[str], Any] | None = None  # per-address policy check for the escaper
    tunnel_check: Callable[[str, str | None], Any] | None = None  # the policy on a tunnel's first bytes
    shape_up: tuple = ()
    shape_down: tuple = ()


ALLOWED = Admitted()
"""The verdict when there is nothing to decide (no policy, no limits): shared, never modified."""

class Slots:
    """The connection slots one client connection holds: the box's, its tenant's, its user's.

    A slot is taken in a scope only when that scope has a connection limit. Moving to another
    tenant or user takes the new slot first and releases the old one only if that succeeded.
    """

    __slots__ = ("limits", "held")

    def __init__(self, limits: dict[Scope, Limits]) -> None:
        self.limits = limits
        self.held: dict[str, tuple[Scope, Limits]] = {}  # kind -> (scope, limiter)

    def take(self, scope: Scope) -> bool:
        """Hold a slot in ``scope`` instead of the one held for its kind; False when full."""
        old = self.held.get(scope.kind)
        if old is not None and old[0] == scope:
            return True
        lim = self.limits.get(scope)
        if lim is not None and lim.spec.max_conns is not None:
            if not lim.conns.try_acquire():
                return False
            self.held[scope.kind] = (scope, lim)
        else:
            self.held.pop(scope.kind, None)
        if old is not None and old[1].conns.active > 0:
            old[1].conns.release()
        return True

    def holds(self, kind: str) -> Scope | None:
        entry = self.held.get(kind)
        return entry[0] if entry is not None else None

    def drop(self, kind: str) -> None:
        entry = self.held.pop(kind, None)
        if entry is not None and entry[1].conns.active > 0:
            entry[1].conns.release()

    def release(self) -> None:
        for kind in list(self.held):
            self.drop(kind)


Verdict = Callable[[Admitted | Refusal], None]


class Gate:
    """Admission state of one client connection: tenant, user, slots, a pending verification.

    Identification is remembered for the connection: a request that makes the same claims as
    the last one admitted (same credentials, same X-Tenant-ID; the client, the server and the
    name given to the proxy are the connection's own) under the same Snapshot is the same
    tenant and user, with the same slots held, so keep-alive requests skip steps 1-4. A user
    whose account expires is not remembered (the expiry is a matter of time, not of claims)."""

    __slots__ = ("shared", "tenant", "user", "tenant_slot", "slots", "task", "name", "known")

    def __init__(self, shared: Any, tenant: TenantView, name: str = "") -> None:
        self.shared = shared
        self.tenant = tenant  # whom the current request (or the connection) is attributed to
        self.user: UserView | None = None
        self.tenant_slot = ""  # the tenant whose connection slot is held
        self.slots = Slots(shared.limits)
        self.task: asyncio.Task | None = None
        self.name = name  # for task names
        self.known: tuple | None = None  # (snapshot, claims key, tenant, user) of the last request admitted

    # -- at accept

    def hold_connection(self) -> Refusal | None:
        """The box's and the tenant's connection slots for the life of the connection."""
        if not self.slots.take(BOX):
            return Refusal(ErrorCode.BOX_CONN_LIMIT, "too many connections (box conn limit)")
        if not self.slots.take(Scope.tenant(self.tenant.name)):
            return Refusal(ErrorCode.TENANT_CONN_LIMIT, "too many connections (tenant conn limit)")
        self.tenant_slot = self.tenant.name
        return None

    # -- per request

    def check(self, snap: Any, claims: Claims, dest: Destination, then: Verdict) -> None:
        """Steps 1-5 for one request or tunnel; ``then(Admitted | Refusal)``."""
        known = self.known
        if known is not None and known[0] is snap and known[1] == (claims.username, claims.password, claims.tenant_header):
            tv = self.tenant = known[2]
            user = self.user = known[3]
            then(admit(self.shared, snap, tv, user, dest, claims.client_ip))
            return

        def identified(refusal: Refusal | None) -> None:
            then(refusal if refusal is not None else self.admit(snap, dest, claims.client_ip))

        self.authenticate(snap, claims, identified)

    def authenticate(self, snap: Any, claims: Claims, then: Callable[[Refusal | None], None]) -> None:
        """Steps 1-4; ``then(None)`` once the request's tenant and user are settled."""
        self.known = None
        who = identify(snap.tenancy, claims)
        self.tenant = who.tenant
        self.user = None  # a request without credentials is nobody's, whatever came before
        if who.refusal is not None:
            then(who.refusal)
            return
        creds = who.credentials
        if creds is None:
            self.slots.drop("user")
            then(self._remember(snap, claims, self._settle_tenant()))
            return
        known = credentials_known(self.shared, creds, claims.client_ip)
        if known is None:
            # a key-derivation function takes a good part of a second: never on the event loop
            self.task = asyncio.get_running_loop().create_task(
                self._verified(snap, claims, creds, then), name=f"arcus-auth-{self.name}"
            )
            return
        then(self._remember(snap, claims, self._accept_user(creds, known)))

    def _remember(self, snap: Any, claims: Claims, refusal: Refusal | None) -> Refusal | None:
        """A request settled without refusal: the next one making the same claims is the same."""
        user = self.user
        if refusal is None and (user is None or user.expires is None):
            self.known = (snap, (claims.username, claims.password, claims.tenant_header), self.tenant, user)
        return refusal

    async def _verified(self, snap: Any, claims: Claims, creds: Credentials, then: Callable[[Refusal | None], None]) -> None:
        result = await verify_credentials(self.shared, creds, claims.client_ip)
        self.task = None
        then(self._remember(snap, claims, self._accept_user(creds, result)))

    def _accept_user(self, creds: Credentials, result: UserView | Refusal) -> Refusal | None:
        if isinstance(result, Refusal):
            return result
        if not self.slots.take(Scope.user(result.key)):
            return Refusal(ErrorCode.USER_CONN_LIMIT, f"user {result.name} has too many connections open")
        self.user = result
        return self._settle_tenant()

    def _settle_tenant(self) -> Refusal | None:
        """The connection's tenant slot follows the tenant its requests are admitted in."""
        name = self.tenant.name
        if name == self.tenant_slot:
            return None
        if not self.slots.take(Scope.tenant(name)):
            return Refusal(ErrorCode.TENANT_CONN_LIMIT, f"tenant {name} has too many connections open")
        self.tenant_slot = name
        return None

    def admit(self, snap: Any, dest: Destination, client_ip: str, charge: bool = True) -> Admitted | Refusal:
        """Step 5 for the settled tenant and user (``charge``: see :func:`admit`)."""
        return admit(self.shared, snap, self.tenant, self.user, dest, client_ip, charge)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.slots.release()
        self.tenant_slot = ""
        self.known = None


# ------------------------------------------------------------------------------ credentials


def _cache_key(tv: TenantView, user: UserView) -> str:
    return f"{tv.name}\0{user.name}\0{user.secret}"


def credentials_known(shared: Any, creds: Credentials, client_ip: str) -> UserView | Refusal | None:
    """The verdict without a key derivation when it can be had: a throttled address, an unknown
    user, or a cached result. None: the secret must be verified (``verify_credentials``)."""
    user = creds.tenant.users.get(creds.name)
    check = shared.verifier.known(None if user is None else _cache_key(creds.tenant, user), creds.password, client_ip)
    return None if check is None else _verdict(creds, user, check)


async def verify_credentials(shared: Any, creds: Credentials, client_ip: str) -> UserView | Refusal:
    """The one call into password verification: ``arcus.auth.verifier`` (its own bounded pool,
    attempts throttled and counted before hashing)."""
    tv = creds.tenant
    user = tv.users[creds.name]
    check = await shared.verifier.verify(_cache_key(tv, user), user.secret, creds.password, client_ip)
    if check.outcome is Outcome.OK and shared.rehash is not None and needs_rehash(user.secret):
        # a legacy hash (md5-crypt, G3 fast hash...): store a scrypt one for the password just verified
        shared.rehash(tv.name, user.name, user.secret, creds.password)
    return _verdict(creds, user, check)


def _verdict(creds: Credentials, user: UserView | None, check: Check) -> UserView | Refusal:
    if check.outcome is Outcome.THROTTLED:
        return Refusal(
            ErrorCode.AUTH_THROTTLED, "too many failed logins from your address; wait and try again", retry_after=check.retry_after
        )
    if check.outcome is Outcome.BUSY:
        return Refusal(ErrorCode.AUTH_THROTTLED, "too many logins are being checked; try again shortly", retry_after=check.retry_after)
    if check.outcome is Outcome.WRONG or user is None:
        return Refusal(ErrorCode.AUTH_REQUIRED, "unknown user or wrong password", realm=creds.tenant.realm)
    if user.blocked:
        return Refusal(ErrorCode.USER_BLOCKED, f"user {user.name} is blocked")
    if user.expires is not None and time.time() >= user.expires:
        return Refusal(ErrorCode.USER_EXPIRED, f"the account of user {user.name} has expired")
    return user


# ---------------------------------------------------------------------------------- policy


def admit(
    shared: Any, snap: Any, tv: TenantView, user: UserView | None, dest: Destination, client_ip: str,
    charge: bool = True,
) -> Admitted | Refusal:
    """Suspension, request rate, shapers, policy (step 5), for a settled tenant and user.
    ``charge`` False: the same request again on another destination (a stream's failover to its
    next upstream): the policy decides again, the request rate is not taken again."""
    if tv.suspended:
        return Refusal(ErrorCode.TENANT_SUSPENDED, f"tenant {tv.name} is suspended")
    policy = tv.policy
    if policy is None and not snap.tenancy.any_limits:
        return ALLOWED  # nothing to decide: the one shared verdict (callers only read it)
    out = Admitted()
    if snap.tenancy.any_limits:
        limits = shared.limits
        scopes = (
            limits.get(BOX),
            limits.get(Scope.tenant(tv.name)) if tv.limits.any else None,
            limits.get(Scope.user(user.key)) if user is not None and user.limits.any else None,
        )
        buckets = [lim.rate for lim in scopes if lim is not None and lim.rate is not None] if charge else []
        if buckets:
            now = time.monotonic()
            wait = max(b.wait(now) for b in buckets)
            if wait > 0:
                return Refusal(ErrorCode.RATE_LIMITED, "too many requests; slow down", retry_after=wait)
            for b in buckets:
                b.take(now)
        out.shape_up = tuple(lim.up for lim in scopes if lim is not None and lim.up is not None)
        out.shape_down = tuple(lim.down for lim in scopes if lim is not None and lim.down is not None)
    if policy is None:
        return out
    ctx = PolicyRequest(
        dest.host,
        dest.port,
        client_ip,
        now=datetime.now(UTC),
        user=user.name if user is not None else None,
        method=dest.method,
        path=dest.path,
        is_tunnel=dest.is_tunnel,
    )
    decision = policy.decide(ctx)
    out.rule = decision.rule_id
    out.reports = decision.reports
    if decision.action == "deny":  # a redirect rule's decision for a tunnel is a deny
        return Refusal(ErrorCode.DENIED, decision.reason, rule=decision.rule_id or "default")
    if decision.action == "redirect":
        return Refusal(
            ErrorCode.REDIRECTED, f"moved to {decision.redirect_to}", rule=decision.rule_id, redirect_to=decision.redirect_to or "/"
        )
    if decision.reports:
        out.decision = "report"
    if decision.needs_address or (decision.rule_id in tv.explicit_ids and _is_address(dest.host)):
        # a literal address a rule with dest_cidrs allowed: the escaper must hear that the rule
        # opens it, or its egress guard refuses a special-purpose one as if no rule had
        out.check = address_check(policy, ctx, tv)
    if dest.is_tunnel and (decision.needs_protocol or _is_address(dest.host)):
        out.tunnel_check = TunnelCheck(policy, ctx)
    return out


def _is_address(host: str | None) -> bool:
    return isinstance(host, str) and (host[-1:].isdigit() or ":" in host) and parse_address(host) is not None


class TunnelCheck:
    """The policy once more when a tunnel's first bytes have named its protocol
    (``arcus.serve.inspection``): for rules with a ``protocols`` condition and, when the tunnel
    goes to a literal address, for host rules, which then apply to the TLS server name the
    client sent (the address stays the destination, for ``dest_cidrs`` and the egress guard).
    Returns the ``Decision``."""

    __slots__ = ("policy", "ctx", "to_address")

    def __init__(self, policy: Any, ctx: PolicyRequest) -> None:
        self.policy = policy
        self.ctx = ctx
        self.to_address = _is_address(ctx.host)

    def __call__(self, protocol: str, sni: str | None) -> Any:
        ctx = self.ctx
        now = datetime.now(UTC)
        if sni and self.to_address:
            ctx = dataclasses.replace(ctx, host=sni, dest_ip=ctx.host, protocol=protocol, now=now)
        else:
            ctx = dataclasses.replace(ctx, protocol=protocol, now=now)
        return self.policy.decide(ctx)


class AddressCheck:
    """The policy, once more, for each address the name resolved to (DNS rebinding): a reason
    string refuses, True opens a special-purpose address (an explicit allow rule), None leaves it
    to the escaper's egress guard. ``rule``: the rule that refused the last address refused, so
    a denial decided on an address is reported with its rule like any other."""

    __slots__ = ("policy", "ctx", "explicit", "rule")

    def __init__(self, policy: Any, ctx: PolicyRequest, tv: TenantView) -> None:
        self.policy = policy
        self.ctx = ctx
        self.explicit = tv.explicit_ids
        self.rule: str | None = None

    def __call__(self, ip: str) -> str | bool | None:
        d = self.policy.decide(dataclasses.replace(self.ctx, dest_ip=ip))
        if d.action != "allow":
            self.rule = d.rule_id or "default"
            # a rule's reason names it ("denied by rule 'x'"); the default's and the guard's say why
            return d.reason if d.rule_id and d.reason.startswith(("denied", "redirected")) else f"denied: {d.reason}"
        return True if d.rule_id in self.explicit else None


def address_check(policy: Any, ctx: PolicyRequest, tv: TenantView) -> AddressCheck:
    return AddressCheck(policy, ctx, tv)
