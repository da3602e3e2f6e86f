"""Building Snapshots: profile + store -> one immutable object the data plane reads.

Building does blocking work (reading files, SQLite, /proc) and so runs in a worker thread;
only the final reference swap happens on the event loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from arcus.auth.tenants import TenantTable
from arcus.config.schema import Profile
from arcus.escape import build_escaper
from arcus.resolve import build_resolver
from arcus.serve.context import Snapshot


def build_snapshot(generation: int, profile: Profile, tenants: Iterable, own_addresses: frozenset[str]) -> Snapshot:
    resolvers = {r.name: build_resolver(r) for r in profile.resolvers}
    escapers = {e.name: build_escaper(e, resolvers, own_addresses) for e in profile.escapers}
    return Snapshot(
        generation=generation,
        profile=profile,
        tenants=TenantTable.build(tenants),
        escapers=escapers,
        resolvers=resolvers,
        servers={s.name: s for s in profile.servers},
    )


def with_tenants(snapshot: Snapshot, generation: int, tenants: Iterable) -> Snapshot:
    """A Snapshot that differs only in its tenants: escapers and resolver caches are kept."""
    return dataclasses.replace(snapshot, generation=generation, tenants=TenantTable.build(tenants))
