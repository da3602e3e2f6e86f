"""Where CAs live on disk, and the three ways a CA home changes: create, import, rotate.

Layout under the data dir (0700 directories, 0600 files)::

    ca/box/                       the box's CA, used by every tenant without its own
    ca/tenants/<tenant>/          a tenant's own CA (never shared with another tenant)
        current                   the name of the generation in use
        .lock                     serialises changes (flock)
        <generation>/             one CA: 20261204T150723Z-<first 12 hex of its SHA-256>
            ca.pem ca.key         the CA certificate and its key
            chain.pem             (imported intermediates) the certificates above it
            leaf.key              the one key pair every leaf of this CA uses
            meta.json             origin (generated|imported), created, retired_at, retired_until
            leaves/<sha256>.pem   the on-disk leaf cache (arcus.tls.certcache)

A generation is written in full into a temporary directory and renamed into place; only then is
``current`` replaced (write + rename), so a failure at any step leaves the home as it was and
no half-written generation. Rotation keeps the old generation, marked retired until the last
leaf it can have signed expires (the rotation time plus the longest leaf validity, capped by
its own expiry); rotation deletes generations retired past that date. The leaf cache lives in
the generation's directory and its keys include the CA's fingerprint, so a new CA never serves
a leaf of an old one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

from cryptography import x509

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.names import validate_name
from arcus.privfiles import DIR_MODE, make_private_dirs
from arcus.tls import ca as calib
from arcus.tls.ca import CertificateAuthority, KeyType
from arcus.tls.certcache import cached_count
from arcus.tls.files import atomic_write, locked, sync_dir
from arcus.tls.leaf import LEAF_MAX_DAYS

CURRENT = "current"
META = "meta.json"


def check_tenant(tenant: str | None) -> str | None:
    return None if tenant is None else validate_name("tenant", tenant)


def who(tenant: str | None) -> str:
    return f"tenant {tenant!r}" if tenant else "the box"


class CAStore:
    """The CAs under ``data_dir/ca``; every method takes the tenant (None: the box)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "ca"

    def home(self, tenant: str | None) -> Path:
        tenant = check_tenant(tenant)
        return self.root / "box" if tenant is None else self.root / "tenants" / tenant

    # -- reading ---------------------------------------------------------------------------------

    def current_name(self, tenant: str | None) -> str | None:
        try:
            return (self.home(tenant) / CURRENT).read_text().strip() or None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OperatorError(f"cannot read the CA of {who(tenant)}: {exc.strerror}: {exc.filename}") from None

    def current(self, tenant: str | None) -> CertificateAuthority | None:
        """The tenant's own CA in use (None when it has none)."""
        name = self.current_name(tenant)
        if name is None:
            return None
        directory = self.home(tenant) / name
        try:
            return CertificateAuthority.load(directory)
        except (OSError, ValueError) as exc:
            why = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise OperatorError(f"the CA of {who(tenant)} cannot be read ({why})",
                                hint=f"restore {directory} from a backup, or point {self.home(tenant) / CURRENT} "
                                     "at a generation that is intact") from None

    def resolve(self, tenant: str | None) -> tuple[CertificateAuthority, str | None]:
        """The CA that signs leaves for ``tenant``: its own, else the box's; and whose it is."""
        if tenant is not None:
            own = self.current(tenant)
            if own is not None:
                return own, tenant
        box = self.current(None)
        if box is None:
            raise NotFound(f"{who(tenant)} has no CA and the box has none" if tenant else "the box has no CA",
                           hint="create one with `arcus ca init` (or `arcus ca init --tenant T` for one tenant)")
        return box, None

    def trust_anchor(self, tenant: str | None) -> tuple[x509.Certificate, str | None]:
        """The certificate ``tenant``'s clients must trust -- the top of its CA's chain (the root
        when the chain reaches one; the CA itself when it is a root) -- and whose CA it is."""
        authority, owner = self.resolve(tenant)
        return (authority.cert, *authority.chain)[-1], owner

    def leaf_dirs(self) -> list[Path]:
        """The ``leaves/`` directory of every generation kept (box and tenants, current and
        retired): what :class:`arcus.tls.certcache.LeafPruner` prunes."""
        homes = [self.root / "box"]
        tenants = self.root / "tenants"
        if tenants.is_dir():
            homes.extend(sorted(p for p in tenants.iterdir() if p.is_dir()))
        out = []
        for home in homes:
            if home.is_dir():
                out.extend(sorted(g / "leaves" for g in home.iterdir() if (g / "leaves").is_dir()))
        return out

    def tenants_with_own(self) -> list[str]:
        base = self.root / "tenants"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / CURRENT).exists())

    def generations(self, tenant: str | None, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Every generation kept: the current one first, then the retired ones, newest first."""
        now = now or calib.utcnow()
        home = self.home(tenant)
        current = self.current_name(tenant)
        out: list[dict[str, Any]] = []
        if not home.is_dir():
            return out
        for gen in sorted((p for p in home.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True):
            try:
                authority = CertificateAuthority.load(gen)
            except (OSError, ValueError):
                continue
            meta = _read_meta(gen)
            info = {"generation": gen.name, "status": "current" if gen.name == current else "retired",
                    "origin": meta.get("origin", "generated"), **authority.describe(),
                    "cached_leaves": cached_count(authority)}
            if gen.name != current:
                info["retired_at"] = meta.get("retired_at")
                info["retired_until"] = meta.get("retired_until") or authority.cert.not_valid_after_utc.isoformat()
            out.append(info)
        out.sort(key=lambda i: i["status"] != "current")
        return out

    # -- changing --------------------------------------------------------------------------------

    def init(self, tenant: str | None, kind: KeyType = "ec", days: int = calib.DEFAULT_DAYS,
             now: dt.datetime | None = None) -> CertificateAuthority:
        now = now or calib.utcnow()
        cert, key = calib.generate(check_tenant(tenant), kind, days, now)
        return self._install(tenant, cert, key, [], "generated", replace=False, now=now)

    def import_(self, tenant: str | None, cert_data: bytes, key_data: bytes, chain_data: bytes | None,
                *, replace: bool = False, now: dt.datetime | None = None) -> CertificateAuthority:
        now = now or calib.utcnow()
        check_tenant(tenant)
        cert, key, chain = calib.from_pem(cert_data, key_data, chain_data, now)
        return self._install(tenant, cert, key, chain, "imported", replace=replace, now=now)

    def rotate(self, tenant: str | None, kind: KeyType | None = None, days: int | None = None,
               now: dt.datetime | None = None) -> CertificateAuthority:
        """A new generated CA becomes current (same key type and lifetime as the old unless given)."""
        now = now or calib.utcnow()
        old = self.current(tenant)
        if old is None:
            raise NotFound(f"{who(tenant)} has no CA to rotate", hint=f"create one with `arcus ca init{_flag(tenant)}`")
        if kind is None:
            kind = calib.kind_of(old.key)
        if days is None:
            lifetime = old.cert.not_valid_after_utc - old.cert.not_valid_before_utc
            days = max(1, min(calib.MAX_DAYS, round(lifetime.total_seconds() / 86400)))
        cert, key = calib.generate(check_tenant(tenant), kind, days, now)
        return self._install(tenant, cert, key, [], "generated", replace=True, now=now)

    def _install(self, tenant: str | None, cert: x509.Certificate, key: calib.CAKey,
                 chain: list[x509.Certificate], origin: str, *, replace: bool, now: dt.datetime) -> CertificateAuthority:
        home = self.home(tenant)
        try:
            return self._install_locked(home, tenant, cert, key, chain, origin, replace=replace, now=now)
        except OSError as exc:
            raise OperatorError(f"cannot write the CA of {who(tenant)} under {home}: {exc.strerror or exc}",
                                hint="check the permissions and free space of the data dir (--data-dir)") from None

    def _install_locked(self, home: Path, tenant: str | None, cert: x509.Certificate, key: calib.CAKey,
                        chain: list[x509.Certificate], origin: str, *, replace: bool,
                        now: dt.datetime) -> CertificateAuthority:
        with locked(home):
            _sweep(home)
            old_name = self.current_name(tenant)
            if old_name is not None and not replace:
                raise AlreadyExists(f"{who(tenant)} already has a CA",
                                    hint=f"use `arcus ca rotate{_flag(tenant)}` to replace it (the old one is kept, retired)")
            gen = f"{now:%Y%m%dT%H%M%SZ}-{calib.fingerprint(cert)[:12]}"
            final = home / gen
            if final.exists():
                raise AlreadyExists(f"generation {gen} exists already", hint="try again in a second")
            tmp = home / f".new-{os.getpid()}-{os.urandom(4).hex()}"
            tmp.mkdir(mode=DIR_MODE)
            try:
                os.chmod(tmp, DIR_MODE)
                atomic_write(tmp / calib.KEY_FILE, calib.key_pem(key))
                atomic_write(tmp / calib.LEAF_KEY_FILE, calib.key_pem(calib.generate_leaf_key()))
                if chain:
                    atomic_write(tmp / calib.CHAIN_FILE, b"".join(calib.cert_pem(c) for c in chain))
                atomic_write(tmp / calib.CA_FILE, calib.cert_pem(cert))
                atomic_write(tmp / META, _meta_bytes({"origin": origin, "created": now.isoformat()}))
                make_private_dirs(tmp / "leaves")
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            try:
                atomic_write(home / CURRENT, gen.encode() + b"\n")
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
            sync_dir(home)
            if old_name is not None:
                self._retire(home / old_name, now)
                self._prune(home, now, keep={gen, old_name})
        return CertificateAuthority.load(final)

    def _retire(self, gen: Path, now: dt.datetime) -> None:
        meta = _read_meta(gen)
        try:
            not_after = x509.load_pem_x509_certificate((gen / calib.CA_FILE).read_bytes()).not_valid_after_utc
        except (OSError, ValueError):
            return
        until = min(not_after, now + dt.timedelta(days=LEAF_MAX_DAYS))
        meta.update(retired_at=now.isoformat(), retired_until=until.isoformat())
        atomic_write(gen / META, _meta_bytes(meta))

    def _prune(self, home: Path, now: dt.datetime, keep: set[str]) -> None:
        """Delete retired generations whose last leaf has expired (rename away first, then remove)."""
        for gen in home.iterdir():
            if gen.name in keep or gen.name.startswith(".") or not gen.is_dir():
                continue
            until = _read_meta(gen).get("retired_until")
            if until and dt.datetime.fromisoformat(until) < now:
                trash = home / f".gone-{gen.name}"
                with contextlib.suppress(OSError):
                    os.rename(gen, trash)
                    shutil.rmtree(trash, ignore_errors=True)


def _sweep(home: Path) -> None:
    """Remove what a killed writer left behind (``.new-*`` directories, ``.*.tmp`` files); under the lock."""
    for p in home.iterdir():
        if p.name.startswith((".new-", ".gone-")) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(".") and p.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                p.unlink()


def _flag(tenant: str | None) -> str:
    return f" --tenant {tenant}" if tenant else ""


def _meta_bytes(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n"


def _read_meta(gen: Path) -> dict[str, Any]:
    try:
        value = json.loads((gen / META).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def check_kind(kind: str) -> KeyType:
    if kind not in calib.KEY_TYPES:
        raise OperatorError(f"unknown key type {kind!r}", hint=f"use one of: {', '.join(calib.KEY_TYPES)}")
    return kind  # type: ignore[return-value]
