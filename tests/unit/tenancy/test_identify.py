"""The identification order (arcus.tenancy.identify) as one table: claims in, tenant and next step out."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from arcus.auth.tenants import TenantTable
from arcus.errors import ErrorCode
from arcus.tenancy.directory import Tenancy
from arcus.tenancy.identify import Claims, identify
from arcus.tenancy.views import TenantView

ACME_NET, GLOBEX_NET, TRUSTED = "10.1.0.0/16", "10.2.0.0/16", "10.9.0.1"


def tenancy(**settings: dict) -> Tenancy:
    """acme (10.1/16, no auth), globex (10.2/16, auth required), initech (no range), default."""
    rows = [
        SimpleNamespace(name="acme", sources=(ACME_NET,), suspended=False),
        SimpleNamespace(name="globex", sources=(GLOBEX_NET,), suspended=False),
        SimpleNamespace(name="initech", sources=(), suspended=False),
    ]
    views = {
        "acme": TenantView("acme", realm=b"acme"),
        "globex": TenantView("globex", auth="required", realm=b"globex"),
        "initech": TenantView("initech", realm=b"initech"),
    }
    for name, changes in settings.items():
        views[name] = dataclasses.replace(views[name], **changes)
    return Tenancy(views, TenantTable.build(rows), proxy_hosts={"initech.proxy.test": "initech"})


T = TRUSTED
CASES = [
    # (description, claims, settings, tenant, credentials tenant or None, refusal code or None)
    ("source range", Claims("10.1.0.5"), {}, "acme", None, None),
    ("no range: default", Claims("192.0.2.1"), {}, "default", None, None),
    ("server binding beats the source", Claims("10.1.0.5", server_tenant="initech"), {}, "initech", None, None),
    ("auth required, none given", Claims("10.2.0.5"), {}, "globex", None, ErrorCode.AUTH_REQUIRED),
    ("plain user in the source tenant", Claims("10.2.0.5", username="bob", password="x"), {}, "globex", "globex", None),
    ("user@tenant moves the request", Claims("10.1.0.5", username="bob@globex", password="x"), {}, "globex", "globex", None),
    ("user@unknown refused", Claims("10.1.0.5", username="bob@nope", password="x"), {}, "acme", None, ErrorCode.AUTH_REQUIRED),
    (
        "a bound server admits only its tenant's users",
        Claims("10.1.0.5", server_tenant="acme", username="bob@globex", password="x"), {}, "acme", None, ErrorCode.AUTH_REQUIRED,
    ),
    ("credentials ignored where none are used", Claims("10.1.0.5", username="bob", password="x"), {}, "acme", None, None),
    ("SNI names the tenant when the range does not", Claims("192.0.2.1", sni="initech.proxy.test"), {}, "initech", None, None),
    ("the range beats SNI", Claims("10.1.0.5", sni="initech.proxy.test"), {}, "acme", None, None),
    (
        "trusted X-Tenant-ID when no range matched",
        Claims(T, trusted_proxies=("10.9.0.0/24",), tenant_header="initech"), {}, "initech", None, None,
    ),
    ("X-Tenant-ID from an untrusted address is ignored", Claims(T, tenant_header="initech"), {}, "default", None, None),
    (
        "X-Tenant-ID never overrides a range",
        Claims("10.1.0.5", trusted_proxies=("10.1.0.0/16",), tenant_header="initech"), {}, "acme", None, None,
    ),
    (
        "X-Tenant-ID naming no tenant",
        Claims(T, trusted_proxies=("10.9.0.0/24",), tenant_header="nope"), {}, "default", None, ErrorCode.UNKNOWN_TENANT,
    ),
    (
        "a 407 for an X-Tenant-ID tenant is that tenant's",
        Claims(T, trusted_proxies=("10.9.0.0/24",), tenant_header="globex"), {}, "globex", None, ErrorCode.AUTH_REQUIRED,
    ),
    (
        "a locked range refuses another tenant's users",
        Claims("10.1.0.5", username="bob@globex", password="x"), {"acme": {"lock_sources": True}}, "acme", None,
        ErrorCode.TENANT_LOCKED,
    ),
    (
        "a locked range admits its own users",
        Claims("10.1.0.5", username="al@acme", password="x"), {"acme": {"lock_sources": True}}, "acme", "acme", None,
    ),
    (
        "a lock holds only on the tenant's ranges",
        Claims("192.0.2.1", username="bob@globex", password="x"), {"acme": {"lock_sources": True}},
        "globex", "globex", None,
    ),
]


@pytest.mark.parametrize(("claims", "settings", "tenant", "creds", "refusal"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_identification_order(claims, settings, tenant, creds, refusal) -> None:
    who = identify(tenancy(**settings), claims)
    assert who.tenant.name == tenant
    assert (who.credentials.tenant.name if who.credentials else None) == creds
    assert (who.refusal.code if who.refusal else None) == refusal
    if refusal is ErrorCode.TENANT_LOCKED:
        assert who.refusal.status == 403 and who.refusal.side == "forbidden"
