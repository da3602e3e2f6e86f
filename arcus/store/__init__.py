"""SQLite tenant store: schema, numbered migrations, repositories.

``Store.open(path)`` is the entry point; see :mod:`arcus.store.store`. The file is created
0600 in a 0700 directory, runs in WAL mode, and every change is one transaction together with
its history row.
"""

from arcus.store.migrations import DEFAULT_TENANT, SCHEMA_VERSION
from arcus.store.sources import normalize_source, parse_source
from arcus.store.store import Store, StoreData
from arcus.store.tenants import Tenant
from arcus.store.users import User

__all__ = [
    "DEFAULT_TENANT",
    "SCHEMA_VERSION",
    "Store",
    "StoreData",
    "Tenant",
    "User",
    "normalize_source",
    "parse_source",
]
