"""CAs: init, show, export, import and rotate (files under the data dir; no daemon needed).

The same functions serve the CLI and, later, the daemon's control handlers. Each returns plain
data; refusals are :class:`arcus.errors.OperatorError` with a hint, and change nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization

from arcus.errors import NotFound, OperatorError
from arcus.paths import STORE_FILE
from arcus.store import Store
from arcus.store.migrations import DEFAULT_TENANT
from arcus.tls import ca as calib
from arcus.tls.castore import CAStore, check_kind, check_tenant, who

Format = Literal["pem", "der"]
MAX_INPUT = 1024 * 1024


def _days(days: int | None) -> int | None:
    if days is not None and not 1 <= days <= calib.MAX_DAYS:
        raise OperatorError(f"--days must be between 1 and {calib.MAX_DAYS}, not {days}")
    return days


def known_tenant(data_dir: Path, tenant: str | None) -> str | None:
    """``tenant`` (checked) when the store has it, or None for the box; refused (NotFound, one
    line, nothing written: a missing store file is not created) for a tenant it does not have."""
    tenant = check_tenant(tenant)
    if tenant is None or tenant == DEFAULT_TENANT:
        return tenant
    path = data_dir / STORE_FILE
    message = f"no tenant {tenant!r} in {path} (add it first: arcus tenant add {tenant})"
    if not path.is_file():
        raise NotFound(message)
    with Store.open(path) as store:
        try:
            store.get_tenant(tenant)
        except NotFound:
            raise NotFound(message) from None
    return tenant


def init(data_dir: Path, tenant: str | None = None, key: str = "ec", days: int = calib.DEFAULT_DAYS,
         now: dt.datetime | None = None) -> dict[str, Any]:
    """A new CA for ``tenant`` (None: the box; a tenant must be in the store); refused when it
    has one (use rotate)."""
    tenant = known_tenant(data_dir, tenant)
    kind = check_kind(key)
    days = _days(days) or calib.DEFAULT_DAYS
    CAStore(data_dir).init(tenant, kind, days, now)
    return show(data_dir, tenant, now)


def show(data_dir: Path, tenant: str | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """The CA that signs ``tenant``'s leaves (its own, else the box's) and every generation kept."""
    store = CAStore(data_dir)
    authority, owner = store.resolve(check_tenant(tenant))
    out: dict[str, Any] = {
        "tenant": tenant,
        "uses": "own" if owner is not None else "box",
        "current": authority.describe(),
        "generations": store.generations(owner, now),
    }
    if tenant is None:
        out["tenants_with_own_ca"] = store.tenants_with_own()
    return out


def export(data_dir: Path, tenant: str | None = None, fmt: str = "pem") -> bytes:
    """The certificate ``tenant``'s clients must trust: the top of its CA's chain (the root when the
    chain reaches one; the CA itself when it is a root)."""
    if fmt not in ("pem", "der"):
        raise OperatorError(f"unknown format {fmt!r}", hint="use pem or der")
    anchor, _ = CAStore(data_dir).trust_anchor(check_tenant(tenant))
    encoding = serialization.Encoding.PEM if fmt == "pem" else serialization.Encoding.DER
    return anchor.public_bytes(encoding)


def _read(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT + 1)
    except OSError as exc:
        raise OperatorError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_INPUT:
        raise OperatorError(f"the {what} {path} is larger than {MAX_INPUT // 1024} KiB")
    return data


def import_(data_dir: Path, cert_file: Path, key_file: Path, chain_file: Path | None = None,
            tenant: str | None = None, *, replace: bool = False, now: dt.datetime | None = None) -> dict[str, Any]:
    """An operator's own root or intermediate becomes ``tenant``'s CA (checked first)."""
    tenant = known_tenant(data_dir, tenant)
    cert = _read(cert_file, "certificate file")
    key = _read(key_file, "key file")
    chain = _read(chain_file, "chain file") if chain_file is not None else None
    CAStore(data_dir).import_(tenant, cert, key, chain, replace=replace, now=now)
    return show(data_dir, tenant, now)


def rotate(data_dir: Path, tenant: str | None = None, key: str | None = None, days: int | None = None,
           now: dt.datetime | None = None) -> dict[str, Any]:
    """A new CA becomes current; the old one is kept, retired, until its last leaf expires."""
    tenant = check_tenant(tenant)
    CAStore(data_dir).rotate(tenant, check_kind(key) if key is not None else None, _days(days), now)
    return show(data_dir, tenant, now)


__all__ = ["init", "show", "export", "import_", "rotate", "who"]
