"""Who a connection or a request belongs to: the identification order, in one function.

Order (per connection at accept, refined per request with what the request says):

1. the server's own tenant (``tenant:`` in the profile): nothing can change it, and only that
   tenant's users are admitted on it;
2. the authenticated user's tenant: ``alice@acme`` names tenant acme and must authenticate
   against acme's users; a plain ``alice`` is looked up in the tenant found by 3-5 — unless
   the tenant found by the source address *locks* its ranges (``lock_sources``): from them
   only its own users are admitted, and ``alice@acme`` is refused (403 ``tenant_locked``);
3. the client's source address (longest prefix);
4. over TLS to the proxy, the name the client gave the proxy itself (SNI) matched against the
   tenants' ``proxy_hosts``, when the source address matched no tenant (every TLS listener);
5. an ``X-Tenant-ID`` header, honoured only from the server's ``trusted_proxies`` and only when
   the source address matched no tenant; it never overrides 1 or 2 and is stripped before
   forwarding;
6. else ``default`` (which an operator can suspend, or give ``default_action: deny``).

``identify`` is pure (no I/O, no clock): verifying a password is the caller's next step
(``arcus.tenancy.admission``). Its answer always names the tenant the request is attributed
to, refused or not, so records and counters never fall back to ``default`` by accident.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from arcus.errors import ErrorCode, Refusal
from arcus.tenancy.directory import DEFAULT, Tenancy
from arcus.tenancy.views import TenantView, client_address


@dataclass(frozen=True, slots=True)
class Claims:
    """What a connection (and the request on it) says about who it is."""

    client_ip: str
    server_tenant: str | None = None  # the server's ``tenant:``
    trusted_proxies: tuple[str, ...] = ()
    sni: str | None = None  # the name the client gave the proxy itself over TLS
    username: str | None = None
    password: str | None = None
    tenant_header: str | None = None  # X-Tenant-ID


@dataclass(frozen=True, slots=True)
class Credentials:
    tenant: TenantView
    name: str
    password: str


@dataclass(frozen=True, slots=True)
class Identity:
    """``tenant``: whose request it is (also when refused). ``credentials``: to verify before
    admission (their tenant is ``tenant``). ``refusal``: the request is not served."""

    tenant: TenantView
    credentials: Credentials | None = None
    refusal: Refusal | None = None


def identify(tenancy: Tenancy, claims: Claims) -> Identity:
    """The identification order above, applied to ``claims``."""
    if claims.server_tenant is not None:
        base = tenancy.get(claims.server_tenant)
        by_source = in_range = False
    else:
        base = tenancy.by_source(claims.client_ip)
        by_source = in_range = base.name != DEFAULT
        if not by_source and claims.sni is not None:
            by_sni = tenancy.by_proxy_host(claims.sni)
            if by_sni is not None:
                base = by_sni
                by_source = True
    tv = base
    if (
        claims.tenant_header is not None
        and claims.server_tenant is None
        and not by_source
        and claims.trusted_proxies
        and in_ranges(claims.client_ip, claims.trusted_proxies)
    ):
        name = claims.tenant_header.strip()
        if name not in tenancy.tenants:
            return Identity(tv, refusal=Refusal(ErrorCode.UNKNOWN_TENANT, f"X-Tenant-ID names no tenant: {name[:64]!r}"))
        tv = tenancy.tenants[name]
    if claims.username is not None:
        user, named = split_user(claims.username)
        password = claims.password or ""
        if named is not None and named != tv.name:
            if claims.server_tenant is not None or named not in tenancy.tenants:
                # a server bound to a tenant admits only that tenant's users
                return Identity(tv, refusal=Refusal(ErrorCode.AUTH_REQUIRED, "these credentials are not valid here", realm=tv.realm))
            if tv.lock_sources and in_range and tv is base:
                return Identity(
                    tv,
                    refusal=Refusal(
                        ErrorCode.TENANT_LOCKED, f"tenant {tv.name} admits only its own users from its network"
                    ),
                )
            other = tenancy.tenants[named]
            return Identity(other, credentials=Credentials(other, user, password))
        if named is not None or tv.auth != "none":
            return Identity(tv, credentials=Credentials(tv, user, password))
        # this tenant does not use credentials: they are ignored (and never forwarded)
    if tv.auth == "required" and not tv.is_exempt(claims.client_ip):
        return Identity(
            tv, refusal=Refusal(ErrorCode.AUTH_REQUIRED, "this proxy needs your user name and password", realm=tv.realm)
        )
    return Identity(tv)


# ------------------------------------------------------------------------ what requests carry

PROXY_AUTHORIZATION = b"proxy-authorization"
X_TENANT_ID = b"x-tenant-id"


def scan_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None]:
    """(Proxy-Authorization value, X-Tenant-ID value) of a request, each None when absent."""
    auth = tenant = None
    for name, value in headers:
        n = len(name)
        if n == 19 and name.lower() == PROXY_AUTHORIZATION:
            auth = value
        elif n == 11 and name.lower() == X_TENANT_ID:
            tenant = value
    return auth, tenant


def parse_basic(value: bytes) -> tuple[str, str] | None:
    """(username, password) of ``Basic <base64>``; None when it is not well-formed Basic."""
    scheme, _, rest = value.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        raw = base64.b64decode(rest.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, colon, password = text.partition(":")
    if not colon or not user:
        return None
    return user, password


def split_user(username: str) -> tuple[str, str | None]:
    """``alice@acme`` -> ("alice", "acme"); ``alice`` -> ("alice", None)."""
    if "@" in username:
        user, _, tenant = username.rpartition("@")
        if user and tenant:
            return user, tenant
    return username, None


def in_ranges(client_ip: str, ranges: Iterable[str]) -> bool:
    addr = client_address(client_ip)
    if addr is None:
        return False
    for cidr in ranges:
        net = ipaddress.ip_network(cidr, strict=False)
        if addr.version == net.version and addr in net:
            return True
    return False
