"""The tenant directory of a Snapshot: every tenant's view, found by name, source address or
the name a client gave the proxy itself (SNI), and the box's limits.

One object, built off the event loop by ``arcus.runtime.snapshot.build_tenancy``: the
source-address table (``arcus.auth.tenants.TenantTable``, longest prefix, cached) and the
views (settings, users, compiled policies) of the same store read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arcus.auth.tenants import TenantTable
from arcus.tenancy.views import LimitSpec, TenantView

DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Tenancy:
    tenants: dict[str, TenantView]
    sources: TenantTable = field(default_factory=lambda: TenantTable.build(()))
    box: LimitSpec = LimitSpec()
    any_users: bool = False  # some tenant has users: credentials must be looked at
    any_limits: bool = False  # some scope has a rate or bandwidth limit: requests must be metered
    proxy_hosts: dict[str, str] = field(default_factory=dict)  # "acme.proxy.example" or "*.x" -> tenant

    def get(self, name: str) -> TenantView:
        """The view of tenant ``name``; an unknown name (a tenant removed since) gets defaults."""
        view = self.tenants.get(name)
        return view if view is not None else TenantView(name=name, realm=f'Basic realm="arcus {name}"'.encode())

    def by_source(self, client_ip: str) -> TenantView:
        """The tenant whose source range holds ``client_ip`` most specifically, else ``default``."""
        return self.get(self.sources.lookup(client_ip).name)

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


EMPTY_TENANCY = Tenancy(tenants={})
