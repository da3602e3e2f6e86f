"""The checks a request passes before it may leave: who it is, whether it may, how fast.

Pure helpers for the servers: header scanning, Basic credentials, tenant selection in the
documented order, and the block page. The servers own the I/O (verifying a secret runs in a
worker thread) and the answers.

Identification order (per connection, refined per request):
1. the server's own tenant (``tenant:`` in the profile): nothing can change it;
2. the authenticated user's tenant: ``alice@acme`` names tenant acme and must authenticate
   against acme's users; a plain ``alice`` is looked up in the tenant found by 3-4;
3. the client's source address (longest prefix);
3b. over TLS to the proxy, the name the client gave the proxy (SNI) matched against the tenants'
   ``proxy_hosts`` (when the source address matched no tenant);
4. an ``X-Tenant-ID`` header, honoured only from the server's ``trusted_proxies`` and only when
   the source address matched no tenant; it never overrides 1 or 2 and is stripped before
   forwarding;
5. else ``default`` (which an operator can suspend, or give ``default_action: deny``).
"""

from __future__ import annotations

import base64
import binascii
import html
import ipaddress
from collections.abc import Iterable

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
    try:
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for cidr in ranges:
        net = ipaddress.ip_network(cidr, strict=False)
        if addr.version == net.version and addr in net:
            return True
    return False


DEFAULT_BLOCK_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Blocked</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>This request was blocked</h1>
<p>{reason}</p>
<p>Rule: <code>{rule}</code><br>Tenant: <code>{tenant}</code><br>Host: <code>{host}</code><br>
Request id: <code>{request_id}</code></p>
<p>If you think this is a mistake, tell your administrator the request id.</p>
</body></html>
"""


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render_block_page(template: str | None, *, tenant: str, rule: str, reason: str, request_id: str, host: str) -> bytes:
    """The 403 page: the tenant's template (``str.format`` fields, values HTML-escaped) or ours.

    A template with an unknown field or a stray brace is shown with that part left as written,
    never failing the request.
    """
    fields = _Fields(
        tenant=html.escape(tenant),
        rule=html.escape(rule),
        reason=html.escape(reason),
        request_id=html.escape(request_id),
        host=html.escape(host),
    )
    try:
        return (template or DEFAULT_BLOCK_PAGE).format_map(fields).encode("utf-8")
    except (ValueError, IndexError, AttributeError):
        return DEFAULT_BLOCK_PAGE.format_map(fields).encode("utf-8")
