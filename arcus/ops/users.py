"""Users of a tenant: add, list, show, remove, passwd, block/unblock, set, import.

Secrets arrive hashed (the CLI hashes passwords in its own process): a secret that
:func:`arcus.auth.secrets.identify_secret` does not accept is refused, and no result or error
ever carries one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from arcus.auth.secrets import identify_secret
from arcus.errors import OperatorError
from arcus.names import validate_name
from arcus.store import Store
from arcus.store.users import MAX_IMPORT, who

SETTINGS = ("expires_at", "max_conns", "rps", "bandwidth")
SECRET_HINT = "send a hashed secret (`arcus user add`/`passwd` hash the password for you)"


def _names(tenant: str, name: str | None = None) -> None:
    validate_name("tenant", tenant)
    if name is not None:
        validate_name("user", name)


def check_secret(value: object, owner: str) -> str:
    """A hashed secret identify_secret accepts; the error names ``owner``, never the value."""
    if not isinstance(value, str):
        raise OperatorError(f"{owner}: missing secret" if value is None else f"{owner}: secret must be text",
                            code="invalid", hint=SECRET_HINT)
    try:
        identify_secret(value)
    except OperatorError as exc:
        raise OperatorError(f"{owner}: {exc.message}", code="invalid", hint=exc.hint) from None
    return value


def require_tenant(store: Store, tenant: str) -> None:
    """NotFound unless ``tenant`` exists: asked before a password is, so nobody types one in vain."""
    validate_name("tenant", tenant)
    store.get_tenant(tenant)


def add(store: Store, tenant: str, name: str, secret: str, expires_at: str | None = None) -> dict[str, Any]:
    _names(tenant, name)
    check_secret(secret, who(tenant, name))
    return store.add_user(tenant, name, secret, expires_at=expires_at).to_dict()


def list_all(store: Store, tenant: str) -> list[dict[str, Any]]:
    _names(tenant)
    return [u.to_dict() for u in store.list_users(tenant)]


def show(store: Store, tenant: str, name: str) -> dict[str, Any]:
    _names(tenant, name)
    return store.get_user(tenant, name).to_dict()


def remove(store: Store, tenant: str, name: str) -> dict[str, Any]:
    """The user and the policy rules written for it."""
    _names(tenant, name)
    store.remove_user(tenant, name)
    return {"removed": name}


def passwd(store: Store, tenant: str, name: str, secret: str) -> dict[str, Any]:
    _names(tenant, name)
    check_secret(secret, who(tenant, name))
    return store.set_user(tenant, name, secret=secret).to_dict()


def set_blocked(store: Store, tenant: str, name: str, blocked: bool) -> dict[str, Any]:
    _names(tenant, name)
    return store.set_user(tenant, name, blocked=blocked).to_dict()


def change(store: Store, tenant: str, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Change expiry and limits (:data:`SETTINGS`); None resets one."""
    _names(tenant, name)
    for key in ("secret", "blocked"):
        if key in changes:
            raise OperatorError(f"{key} is not set here", code="invalid",
                                hint="use passwd for the secret, block / unblock for blocking")
    unknown = [k for k in changes if k not in SETTINGS]
    if unknown:
        raise OperatorError(f"unknown user setting {unknown[0]!r}", code="invalid",
                            hint=f"settings: {', '.join(SETTINGS)}")
    if not changes:
        raise OperatorError("nothing to change", code="invalid", hint=f"give one or more of: {', '.join(SETTINGS)}")
    return store.set_user(tenant, name, **dict(changes)).to_dict()


def import_users(
    store: Store, tenant: str, entries: Sequence[tuple[str, str, str | None]], *, replace: bool = False
) -> dict[str, Any]:
    """Many ``(name, hashed secret, expires_at)`` users in one transaction; with ``replace``
    existing users get the entry's secret and expiry, without it one existing name refuses all."""
    _names(tenant)
    if len(entries) > MAX_IMPORT:
        raise OperatorError(f"more than {MAX_IMPORT} users to import", code="invalid",
                            hint="split the file and import it in parts")
    for number, (name, secret, _) in enumerate(entries, start=1):
        where = f"user import entry {number}"
        try:
            validate_name("user", name)
        except OperatorError as exc:
            raise OperatorError(f"{where}: {exc.message}", code="invalid", hint=exc.hint) from None
        check_secret(secret, f"{where} ({name!r})")
    return {"imported": store.import_users(tenant, entries, replace=replace)}
