"""Leaves on demand for the data plane: coalesced, off the event loop, cached in memory and on disk.

``await factory.get(ca, sni, upstream, ips)`` returns a :class:`Leaf`: the certificate, and the
two files ``ssl.SSLContext.load_cert_chain(leaf.chain_file, leaf.key_file)`` takes (Python's
``ssl`` loads a server certificate from files only).

1. Memory: an ``OrderedDict`` LRU of ``memory_entries`` leaves, looked up on the loop (a dict
   lookup and a comparison of dates); a leaf within ``renew_before`` of its end is dropped, unless
   a new one could not end later (the upstream's certificate or the CA ends as soon).
2. Coalescing: the first request for a key starts one job in the factory's own small
   ``ThreadPoolExecutor``; every concurrent request for the same key awaits that job (shielded,
   so a cancelled client does not cancel the others' leaf). One signature per host however many
   clients ask at once.
3. The job (in the worker thread): the disk cache ``<CA generation>/leaves/<key>.pem`` (leaf then
   served chain, 0600), used when it parses, was issued by this CA and is not near its end;
   otherwise :func:`arcus.tls.leaf.issue` and an atomic write of that file.

The key is a SHA-256 over the CA's fingerprint, the SNI, the upstream names and end date and the
IPs: a rotated CA (another fingerprint, another directory) never serves a leaf of the old one,
and an upstream that renewed its certificate gets a new leaf. The disk cache is not pruned here;
files of expired leaves are replaced when asked for again, and :func:`prune` removes expired ones
and bounds their number; :class:`LeafPruner` runs it on a schedule over every CA generation of a
data dir (the daemon's task, ``CAStore.leaf_dirs``), with an injectable clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import functools
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from arcus.privfiles import make_private_dirs
from arcus.tls import leaf as leaflib
from arcus.tls.ca import CertificateAuthority, cert_pem, utcnow
from arcus.tls.files import atomic_write
from arcus.tls.leaf import LEAF_DAYS, LEAF_MAX_DAYS, Upstream

Key = tuple[str, str, tuple[str, ...], tuple[str, ...], str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Leaf:
    cert: x509.Certificate
    chain_file: Path  # the leaf, then the served chain (PEM)
    key_file: Path  # the CA's shared leaf key (PEM, 0600)
    not_after: dt.datetime


@dataclass(slots=True)
class LeafStats:
    issued: int = 0
    memory_hits: int = 0
    disk_hits: int = 0
    coalesced: int = 0


@dataclass(frozen=True, slots=True)
class _Request:
    ca: CertificateAuthority
    sni: str | None
    upstream: Upstream | None
    ips: tuple[str, ...]
    key: Key = field(compare=False)

    @property
    def digest(self) -> str:
        return hashlib.sha256("\0".join("\x1f".join(p) if isinstance(p, tuple) else p
                                        for p in self.key).encode()).hexdigest()


def request(ca: CertificateAuthority, sni: str | None, upstream: Upstream | None = None,
            ips: Sequence[str] = ()) -> _Request:
    sni = leaflib.normalize_host(sni) if sni else None
    ips_t = tuple(ips)
    if upstream is None:
        key: Key = (ca.fingerprint, sni or "", (), (), "", ips_t)
    else:
        key = (ca.fingerprint, sni or "", upstream.dns_names, upstream.ip_addresses,
               upstream.not_after.isoformat(), ips_t)
    return _Request(ca, sni, upstream, ips_t, key)


class LeafFactory:
    """Leaves for any number of CAs; one instance per daemon (``close()`` on shutdown)."""

    def __init__(self, *, workers: int = 2, memory_entries: int = 4096, leaf_days: int = LEAF_DAYS,
                 renew_before: dt.timedelta = dt.timedelta(hours=1),
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        if not 1 <= leaf_days <= LEAF_MAX_DAYS:
            raise ValueError(f"leaf_days must be between 1 and {LEAF_MAX_DAYS}")
        if memory_entries < 1 or workers < 1:
            raise ValueError("memory_entries and workers must be at least 1")
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arcus-leaf")
        self._memory: OrderedDict[Key, Leaf] = OrderedDict()
        self._memory_entries = memory_entries
        self._pending: dict[Key, asyncio.Future[tuple[Leaf, bool]]] = {}
        self._leaf_days = leaf_days
        self._renew_before = renew_before
        self._clock = clock
        self.stats = LeafStats()

    async def get(self, ca: CertificateAuthority, sni: str | None, upstream: Upstream | None = None,
                  ips: Sequence[str] = ()) -> Leaf:
        req = request(ca, sni, upstream, ips)
        hit = self._memory_hit(req)
        if hit is not None:
            return hit
        job = self._pending.get(req.key)
        if job is None:
            job = asyncio.get_running_loop().run_in_executor(self._pool, self._produce, req)
            self._pending[req.key] = job
            job.add_done_callback(functools.partial(self._finished, req.key))
        else:
            self.stats.coalesced += 1
        leaf, _ = await asyncio.shield(job)
        return leaf

    def get_blocking(self, ca: CertificateAuthority, sni: str | None, upstream: Upstream | None = None,
                     ips: Sequence[str] = ()) -> Leaf:
        """The same lookup from a thread that is not an event loop (tools, the bench); no coalescing."""
        req = request(ca, sni, upstream, ips)
        hit = self._memory_hit(req)
        if hit is not None:
            return hit
        leaf, from_disk = self._produce(req)
        self._count(from_disk)
        self._remember(req.key, leaf)
        return leaf

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def forget_memory(self) -> None:
        self._memory.clear()

    # -- on the loop -------------------------------------------------------------------------------

    def _fresh(self, req: _Request, not_after: dt.datetime, now: dt.datetime) -> bool:
        """Still worth serving: not near its end, or no new leaf could end later."""
        if not_after <= now:
            return False
        if not_after - now > self._renew_before:
            return True
        best = min(now + dt.timedelta(days=self._leaf_days), req.ca.cert.not_valid_after_utc)
        if req.upstream is not None:
            best = min(best, req.upstream.not_after)
        return not_after >= best.replace(microsecond=0)  # certificates keep whole seconds

    def _memory_hit(self, req: _Request) -> Leaf | None:
        key = req.key
        leaf = self._memory.get(key)
        if leaf is None:
            return None
        if not self._fresh(req, leaf.not_after, self._clock()):
            del self._memory[key]
            return None
        self._memory.move_to_end(key)
        self.stats.memory_hits += 1
        return leaf

    def _remember(self, key: Key, leaf: Leaf) -> None:
        self._memory[key] = leaf
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_entries:
            self._memory.popitem(last=False)

    def _count(self, from_disk: bool) -> None:
        if from_disk:
            self.stats.disk_hits += 1
        else:
            self.stats.issued += 1

    def _finished(self, key: Key, job: asyncio.Future[tuple[Leaf, bool]]) -> None:
        self._pending.pop(key, None)
        if job.cancelled() or job.exception() is not None:  # exception(): retrieved, never "never retrieved"
            return
        leaf, from_disk = job.result()
        self._count(from_disk)
        self._remember(key, leaf)

    # -- in a worker thread ------------------------------------------------------------------------

    def _produce(self, req: _Request) -> tuple[Leaf, bool]:
        ca = req.ca
        path = ca.leaves_dir / f"{req.digest}.pem"
        now = self._clock()
        cached = self._from_disk(req, path, now)
        if cached is not None:
            return cached, True
        cert = leaflib.issue(ca, req.sni, req.upstream, req.ips, now=now, days=self._leaf_days)
        data = cert_pem(cert) + ca.served_chain_pem
        try:
            atomic_write(path, data, durable=False)
        except FileNotFoundError:  # the leaves directory was removed by hand
            make_private_dirs(ca.leaves_dir)
            atomic_write(path, data, durable=False)
        return Leaf(cert, path, ca.leaf_key_file, cert.not_valid_after_utc), False

    def _from_disk(self, req: _Request, path: Path, now: dt.datetime) -> Leaf | None:
        ca = req.ca
        try:
            data = path.read_bytes()
            cert = x509.load_pem_x509_certificate(data)
        except (OSError, ValueError):
            return None  # absent, or torn by a crash: issue again
        if cert.issuer != ca.cert.subject or cert.public_key() != ca.leaf_public_key:
            return None
        if cert.not_valid_before_utc > now or not self._fresh(req, cert.not_valid_after_utc, now):
            return None
        return Leaf(cert, path, ca.leaf_key_file, cert.not_valid_after_utc)


def prune(ca: CertificateAuthority, now: dt.datetime | None = None, keep: int | None = None) -> int:
    """Delete cached leaves of ``ca`` that have expired or do not parse, then (with ``keep``) the
    least recently written beyond ``keep``; return how many. For a periodic task of the daemon."""
    return prune_dir(ca.leaves_dir, now, keep)


def prune_dir(leaves_dir: Path, now: dt.datetime | None = None, keep: int | None = None) -> int:
    """:func:`prune` for one ``leaves/`` directory (no CA key needed to read it)."""
    now = now or utcnow()
    if not leaves_dir.is_dir():
        return 0
    removed = 0
    alive: list[tuple[float, Path]] = []
    for path in leaves_dir.glob("*.pem"):
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            mtime = path.stat().st_mtime
        except (OSError, ValueError):
            cert = None
        if cert is None or cert.not_valid_after_utc <= now:
            removed += _unlink(path)
        else:
            alive.append((mtime, path))
    if keep is not None and len(alive) > keep:
        alive.sort()
        for _, path in alive[:len(alive) - keep]:
            removed += _unlink(path)
    return removed


class LeafPruner:
    """Prunes the on-disk leaf caches of every CA generation on a schedule.

    ``dirs()`` lists the ``leaves/`` directories (``CAStore(data_dir).leaf_dirs``: box and
    tenants, current and retired generations); every ``interval`` seconds ``run()`` prunes them in
    a worker thread (file reads and unlinks never on the event loop) at ``clock()`` -- the
    injectable clock that decides what has expired -- keeping at most ``keep`` leaves per
    generation. ``tick()`` is one pass (what the schedule calls, and what tests call). A pass that
    fails (an unreadable directory) is logged by the caller's task and the schedule goes on.
    """

    def __init__(self, dirs: Callable[[], list[Path]], *, interval: float = 3600.0, keep: int | None = 100_000,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.dirs = dirs
        self.interval = interval
        self.keep = keep
        self.clock = clock
        self.passes = 0
        self.removed = 0  # leaves removed since start

    def tick(self) -> int:
        """One pass over every generation (blocking: run it in a thread); how many were removed."""
        now = self.clock()
        removed = sum(prune_dir(d, now, self.keep) for d in self.dirs())
        self.passes += 1
        self.removed += removed
        return removed

    async def run(self, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Every ``interval`` seconds, one ``tick`` in a worker thread, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.tick)
            except Exception as exc:  # noqa: BLE001 - one bad pass must not end the schedule
                if on_error is not None:
                    on_error(exc)


def _unlink(path: Path) -> int:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1


def cached_count(ca: CertificateAuthority) -> int:
    try:
        return sum(1 for p in os.scandir(ca.leaves_dir) if p.name.endswith(".pem"))
    except FileNotFoundError:
        return 0
