"""Tenants: add, list, show, set, remove, suspend and resume."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from arcus.errors import OperatorError
from arcus.names import validate_name
from arcus.store import Store
from arcus.store.tenants import SETTINGS


def check_name(name: str) -> str:
    return validate_name("tenant", name)


def add(store: Store, name: str, display_name: str | None = None, sources: Sequence[str] = ()) -> dict[str, Any]:
    """A new tenant with its source ranges (longest prefix wins among tenants)."""
    return store.add_tenant(check_name(name), display_name, sources).to_dict()


def list_all(store: Store) -> list[dict[str, Any]]:
    return [t.to_dict() for t in store.list_tenants()]


def show(store: Store, name: str) -> dict[str, Any]:
    """The tenant's settings with its user and rule counts (live usage is the daemon's to add)."""
    tenant = store.get_tenant(check_name(name))
    return {**tenant.to_dict(), "users": len(store.list_users(name)), "rules": len(store.list_rules(name))}


def change(store: Store, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Change settings (``arcus.store.tenants.SETTINGS``); None resets one to its default."""
    check_name(name)
    if not changes:
        raise OperatorError("nothing to change", code="invalid", hint=f"give one or more of: {', '.join(SETTINGS)}")
    return store.set_tenant(name, **dict(changes)).to_dict()


def remove(store: Store, name: str) -> dict[str, Any]:
    store.remove_tenant(check_name(name))
    return {"removed": name}


def set_suspended(store: Store, name: str, suspended: bool) -> dict[str, Any]:
    return store.set_suspended(check_name(name), suspended).to_dict()
