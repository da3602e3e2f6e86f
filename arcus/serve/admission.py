"""Admission, shared by every server: who is asking (tenant, user), and may the request leave.

Protocol-neutral: each step returns a ``Refusal`` (an HTTP-like status, a stable error code
and a message) or what comes next; the server turns a refusal into its own answer (an HTTP
status, a SOCKS reply code). Steps, in order (see ``arcus.serve.gate`` for the identification
order):

1. ``identify(...)``: the tenant, and the credentials to check (if any);
2. ``credentials_known(...)`` / ``verify_credentials(...)``: the user, from the cache or by
   running the key-derivation function in a worker thread;
3. ``accept_user(...)``: blocked, expired, the user's connection slot;
4. ``admit(...)``: suspended tenant, request rate, bandwidth shapers, policy, and the
   per-address check that goes to the escaper (DNS rebinding).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from arcus.auth.secrets import needs_rehash
from arcus.auth.verifier import Check, Outcome
from arcus.policy import Request as PolicyRequest
from arcus.serve import gate
from arcus.serve.tenancy import Limits, TenantView, UserView

UTC = timezone.utc


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 403, 407, 429, 503 (HTTP meaning; other protocols map it)
    code: str  # stable error code: X-Arcus-Error, stats, audit
    message: str
    retry_after: float = 0.0
    rule: str | None = None  # the policy rule that refused
    realm: bytes = b""  # for 407: the Proxy-Authenticate value
    redirect_to: str | None = None  # for a policy redirect (status 302)


@dataclass(frozen=True, slots=True)
class Credentials:
    tenant: TenantView
    name: str
    password: str


@dataclass(slots=True)
class Admitted:
    decision: str = "allow"  # allow | report (allowed, a report rule matched)
    rule: str | None = None
    reports: tuple = ()
    check: Callable[[str], Any] | None = None  # per-address policy check for the escaper
    shape_up: tuple = ()
    shape_down: tuple = ()


def identify(
    snap: Any,
    server_tenant: str | None,
    trusted_proxies: tuple[str, ...],
    conn_tenant: str,
    client_ip: str,
    username: str | None,
    password: str | None,
    tenant_header: str | None = None,
) -> TenantView | Credentials | Refusal:
    """The tenant of a request, or the credentials to verify first, or a refusal."""
    tenancy = snap.tenancy
    tv = tenancy.get(conn_tenant)
    if (
        tenant_header is not None
        and server_tenant is None
        and conn_tenant == "default"
        and trusted_proxies
        and gate.in_ranges(client_ip, trusted_proxies)
    ):
        name = tenant_header.strip()
        if name not in tenancy.tenants:
            return Refusal(403, "unknown_tenant", f"X-Tenant-ID names no tenant: {name[:64]!r}")
        tv = tenancy.tenants[name]
    if username is not None:
        user, named = gate.split_user(username)
        if named is not None and named != tv.name:
            if server_tenant is not None or named not in tenancy.tenants:
                # a server bound to a tenant admits only that tenant's users
                return Refusal(407, "auth_required", "these credentials are not valid here", realm=tv.realm)
            return Credentials(tenancy.tenants[named], user, password or "")
        if named is not None or tv.auth != "none":
            return Credentials(tv, user, password or "")
        # this tenant does not use credentials: they are ignored (and never forwarded)
    if tv.auth == "required" and not tv.is_exempt(client_ip):
        return Refusal(407, "auth_required", "this proxy needs your user name and password", realm=tv.realm)
    return tv


def _cache_key(tv: TenantView, user: UserView) -> str:
    return f"{tv.name}\0{user.name}\0{user.secret}"


def credentials_known(shared: Any, creds: Credentials, client_ip: str) -> UserView | Refusal | None:
    """The verdict without a key derivation when it can be had: a throttled address, an unknown
    user, or a cached result. None: the secret must be verified (``verify_credentials``)."""
    user = creds.tenant.users.get(creds.name)
    check = shared.verifier.known(None if user is None else _cache_key(creds.tenant, user), creds.password, client_ip)
    return None if check is None else _verdict(creds, user, check)


async def verify_credentials(shared: Any, creds: Credentials, client_ip: str) -> UserView | Refusal:
    """Run the key-derivation function through the Verifier (its own bounded pool, throttled)."""
    tv = creds.tenant
    user = tv.users[creds.name]
    check = await shared.verifier.verify(_cache_key(tv, user), user.secret, creds.password, client_ip)
    if check.outcome is Outcome.OK and shared.rehash is not None and needs_rehash(user.secret):
        # a legacy hash (md5-crypt, G3 fast hash...): store a scrypt one for the password just verified
        shared.rehash(tv.name, user.name, user.secret, creds.password)
    return _verdict(creds, user, check)


def _verdict(creds: Credentials, user: UserView | None, check: Check) -> UserView | Refusal:
    if check.outcome is Outcome.THROTTLED:
        return Refusal(429, "auth_throttled", "too many failed logins from your address; wait and try again", check.retry_after)
    if check.outcome is Outcome.BUSY:
        return Refusal(429, "auth_throttled", "too many logins are being checked; try again shortly", check.retry_after)
    if check.outcome is Outcome.WRONG or user is None:
        return Refusal(407, "auth_required", "unknown user or wrong password", realm=creds.tenant.realm)
    if user.blocked:
        return Refusal(403, "user_blocked", f"user {user.name} is blocked")
    if user.expires is not None and time.time() >= user.expires:
        return Refusal(403, "user_expired", f"the account of user {user.name} has expired")
    return user


def hold_user_slot(shared: Any, user: UserView) -> bool:
    """Take a connection slot of ``user`` (released with ``release_user_slot``); False when full."""
    lim: Limits | None = shared.limits.get("u:" + user.key)
    if lim is None or lim.spec.max_conns is None:
        return True
    return lim.conns.try_acquire()


def release_user_slot(shared: Any, user_key: str) -> None:
    lim = shared.limits.get("u:" + user_key)
    if lim is not None and lim.spec.max_conns is not None and lim.conns.active > 0:
        lim.conns.release()


def admit(
    shared: Any,
    snap: Any,
    tv: TenantView,
    user: UserView | None,
    *,
    host: str,
    port: int,
    client_ip: str,
    method: str,
    path: str | None,
    is_tunnel: bool,
) -> Admitted | Refusal:
    if tv.suspended:
        return Refusal(403, "tenant_suspended", f"tenant {tv.name} is suspended")
    out = Admitted()
    if snap.tenancy.any_limits:
        limits = shared.limits
        scopes = (
            limits.get(""),
            limits.get("t:" + tv.name) if tv.limits.any else None,
            limits.get("u:" + user.key) if user is not None and user.limits.any else None,
        )
        buckets = [lim.rate for lim in scopes if lim is not None and lim.rate is not None]
        if buckets:
            now = time.monotonic()
            wait = max(b.wait(now) for b in buckets)
            if wait > 0:
                return Refusal(429, "rate_limited", "too many requests; slow down", wait)
            for b in buckets:
                b.take(now)
        out.shape_up = tuple(lim.up for lim in scopes if lim is not None and lim.up is not None)
        out.shape_down = tuple(lim.down for lim in scopes if lim is not None and lim.down is not None)
    policy = tv.policy
    if policy is None:
        return out
    ctx = PolicyRequest(
        host,
        port,
        client_ip,
        now=datetime.now(UTC),
        user=user.name if user is not None else None,
        method=method,
        path=path,
        is_tunnel=is_tunnel,
    )
    decision = policy.decide(ctx)
    out.rule = decision.rule_id
    out.reports = decision.reports
    if decision.action == "deny" or (decision.action == "redirect" and is_tunnel):
        return Refusal(403, "denied", decision.reason, rule=decision.rule_id or "default")
    if decision.action == "redirect":
        return Refusal(302, "redirected", f"moved to {decision.redirect_to}", rule=decision.rule_id, redirect_to=decision.redirect_to or "/")
    if decision.reports:
        out.decision = "report"
    if decision.needs_address:
        out.check = address_check(policy, ctx, tv)
    return out


def address_check(policy: Any, ctx: PolicyRequest, tv: TenantView) -> Callable[[str], Any]:
    """The policy, once more, for each address the name resolved to (DNS rebinding): a reason
    string refuses, True opens a special-purpose address (an explicit allow rule), None leaves it
    to the escaper's egress guard."""

    def check(ip: str) -> str | bool | None:
        d = policy.decide(dataclasses.replace(ctx, dest_ip=ip))
        if d.action != "allow":
            return f"denied by rule {d.rule_id or 'default'}: {d.reason}"
        return True if d.rule_id in tv.explicit_ids else None

    return check
