"""The leaf factory: one signature per key under a hundred concurrent requests, memory LRU, disk
cache across restarts, rotation never serving an old CA's leaves."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import stat
import threading
from pathlib import Path

import pytest

from arcus.tls import certcache
from arcus.tls.ca import utcnow
from arcus.tls.castore import CAStore
from arcus.tls.certcache import LeafFactory
from arcus.tls.leaf import Upstream


@pytest.fixture
def store(tmp_path: Path) -> CAStore:
    s = CAStore(tmp_path)
    s.init(None)
    s.init("acme")
    return s


def count_issues(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every real signature (the factory's only call into leaf.issue), and which thread made it."""
    calls: list[str] = []
    real = certcache.leaflib.issue

    def counting(*a, **kw):  # type: ignore[no-untyped-def]
        calls.append(threading.current_thread().name)
        return real(*a, **kw)

    monkeypatch.setattr(certcache.leaflib, "issue", counting)
    return calls


def test_a_hundred_concurrent_gets_sign_once_off_the_loop(store: CAStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_issues(monkeypatch)
    ca = store.current("acme")
    assert ca is not None
    factory = LeafFactory()

    async def main() -> list[certcache.Leaf]:
        return await asyncio.gather(*(factory.get(ca, "busy.example.com") for _ in range(100)))

    try:
        leaves = asyncio.run(main())
    finally:
        factory.close()
    assert len(calls) == 1 and calls[0].startswith("arcus-leaf")
    assert len({id(leaf) for leaf in leaves}) == 1
    assert factory.stats.issued == 1 and factory.stats.coalesced == 99


def test_memory_lru_is_bounded_and_disk_serves_a_restart(store: CAStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_issues(monkeypatch)
    ca = store.current(None)
    assert ca is not None
    hosts = [f"h{i}.example" for i in range(5)]

    async def fetch(factory: LeafFactory) -> list[certcache.Leaf]:
        return [await factory.get(ca, h) for h in hosts]

    first = LeafFactory(memory_entries=3)
    try:
        leaves = asyncio.run(fetch(first))
        assert len(calls) == 5
        again = asyncio.run(fetch(first))  # h0, h1 evicted from memory: served from disk
        assert len(calls) == 5
        assert first.stats.memory_hits + first.stats.disk_hits == 5 and first.stats.disk_hits >= 2
        assert [leaf.cert for leaf in again] == [leaf.cert for leaf in leaves]
    finally:
        first.close()
    for leaf in leaves:
        assert stat.S_IMODE(os.stat(leaf.chain_file).st_mode) == 0o600
        assert leaf.chain_file.parent == ca.leaves_dir
        assert stat.S_IMODE(os.stat(leaf.key_file).st_mode) == 0o600

    restarted = LeafFactory()  # a new process over the same directory
    try:
        after = asyncio.run(fetch(restarted))
    finally:
        restarted.close()
    assert len(calls) == 5 and restarted.stats.issued == 0 and restarted.stats.disk_hits == 5
    assert [leaf.cert.serial_number for leaf in after] == [leaf.cert.serial_number for leaf in leaves]


def test_a_rotated_ca_never_serves_the_old_leaves(store: CAStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_issues(monkeypatch)
    old = store.current("acme")
    assert old is not None
    factory = LeafFactory()
    try:
        before = factory.get_blocking(old, "shop.example.com")
        new = store.rotate("acme")
        after = factory.get_blocking(new, "shop.example.com")
    finally:
        factory.close()
    assert len(calls) == 2
    assert after.cert.issuer == new.cert.subject and after.cert.public_key() == new.leaf_public_key
    assert after.chain_file.parent == new.leaves_dir != before.chain_file.parent


def test_different_upstream_names_are_different_leaves(store: CAStore) -> None:
    ca = store.current(None)
    assert ca is not None
    end = utcnow() + dt.timedelta(days=3)
    factory = LeafFactory()
    try:
        a = factory.get_blocking(ca, "x.example", Upstream(("x.example", "y.example"), (), end))
        b = factory.get_blocking(ca, "x.example", Upstream(("x.example",), (), end))
        c = factory.get_blocking(ca, "x.example")
        d = factory.get_blocking(ca, "X.EXAMPLE.")  # same host, normalised
    finally:
        factory.close()
    assert len({a.chain_file, b.chain_file, c.chain_file}) == 3 and d is c


def test_a_leaf_near_its_end_is_issued_again(store: CAStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_issues(monkeypatch)
    ca = store.current(None)
    assert ca is not None
    clock = [utcnow()]
    factory = LeafFactory(leaf_days=2, clock=lambda: clock[0])
    try:
        first = factory.get_blocking(ca, "x.example")
        assert factory.get_blocking(ca, "x.example") is first
        clock[0] += dt.timedelta(days=2) - dt.timedelta(minutes=30)  # inside renew_before (1 h)
        second = factory.get_blocking(ca, "x.example")
    finally:
        factory.close()
    assert len(calls) == 2 and second.cert.serial_number != first.cert.serial_number
    assert certcache.prune(ca, clock[0] + dt.timedelta(days=3)) == 1


def test_a_torn_cache_file_is_issued_again(store: CAStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_issues(monkeypatch)
    ca = store.current(None)
    assert ca is not None
    factory = LeafFactory()
    try:
        leaf = factory.get_blocking(ca, "x.example")
        leaf.chain_file.write_bytes(leaf.chain_file.read_bytes()[:100])
        factory.forget_memory()
        again = factory.get_blocking(ca, "x.example")
    finally:
        factory.close()
    assert len(calls) == 2 and again.cert != leaf.cert


def test_a_cancelled_first_asker_does_not_cancel_the_others(store: CAStore) -> None:
    ca = store.current(None)
    assert ca is not None
    factory = LeafFactory()

    async def main() -> certcache.Leaf:
        first = asyncio.ensure_future(factory.get(ca, "c.example"))
        second = asyncio.ensure_future(factory.get(ca, "c.example"))
        await asyncio.sleep(0)
        first.cancel()
        return await asyncio.wait_for(second, 10)

    try:
        leaf = asyncio.run(main())
    finally:
        factory.close()
    assert leaf.cert.issuer == ca.cert.subject and factory.stats.issued == 1


def test_an_error_reaches_every_asker(store: CAStore) -> None:
    ca = store.current(None)
    assert ca is not None
    factory = LeafFactory()
    expired = Upstream(("old.example",), (), utcnow() - dt.timedelta(days=1))

    async def main() -> list[object]:
        return await asyncio.gather(*(factory.get(ca, "old.example", expired) for _ in range(3)),
                                    return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        factory.close()
    assert all(isinstance(r, certcache.leaflib.LeafError) for r in results)


def test_a_restart_serves_a_leaf_with_its_chain_from_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from arcus.tls.ca import cert_pem, key_pem
    from tests.unit.tls.helpers import handshake, make_ca

    calls = count_issues(monkeypatch)
    root = make_ca("Corp Root", path_length=1)
    inter = make_ca("Corp Proxy CA", root, path_length=0)
    ca = CAStore(tmp_path).import_(None, cert_pem(inter[0]), key_pem(inter[1]), cert_pem(root[0]))
    first = LeafFactory()
    try:
        leaf = first.get_blocking(ca, "app.corp.example")
    finally:
        first.close()
    again = LeafFactory()
    try:
        cached = again.get_blocking(CAStore(tmp_path).current(None), "app.corp.example")  # type: ignore[arg-type]
    finally:
        again.close()
    assert len(calls) == 1 and again.stats.disk_hits == 1 and cached.cert == leaf.cert
    assert handshake(cached, cert_pem(root[0]), "app.corp.example") == "app.corp.example"


def test_rotation_gives_distinct_subjects(store: CAStore) -> None:
    old = store.current("acme")
    new = store.rotate("acme")
    assert old is not None and old.cert.subject != new.cert.subject
    assert new.cert.subject.rfc4514_string().startswith("CN=Arcus CA acme ")
    assert "OU=acme,O=Arcus" in new.cert.subject.rfc4514_string()


def test_a_leaf_bounded_by_a_soon_ending_upstream_is_not_reissued_every_time(
        store: CAStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_issues(monkeypatch)
    ca = store.current(None)
    assert ca is not None
    clock = [utcnow()]
    up = Upstream(("soon.example",), (), clock[0] + dt.timedelta(minutes=30))
    factory = LeafFactory(clock=lambda: clock[0])
    try:
        first = factory.get_blocking(ca, "soon.example", up)
        clock[0] += dt.timedelta(minutes=10)
        assert factory.get_blocking(ca, "soon.example", up) is first  # a new leaf could not end later
        factory.forget_memory()
        assert factory.get_blocking(ca, "soon.example", up).cert == first.cert  # nor from disk
        clock[0] += dt.timedelta(minutes=25)  # now past the upstream's end: the leaf is not served
        with pytest.raises(certcache.leaflib.LeafError):
            factory.get_blocking(ca, "soon.example", up)
    finally:
        factory.close()
    assert len(calls) == 2 and factory.stats.issued == 1 and factory.stats.disk_hits == 1


def test_prune_removes_expired_and_bounds_the_count(store: CAStore) -> None:
    ca = store.current(None)
    assert ca is not None
    factory = LeafFactory()
    try:
        for i in range(5):
            leaf = factory.get_blocking(ca, f"p{i}.example")
            os.utime(leaf.chain_file, (1000 + i, 1000 + i))  # p0 written first
    finally:
        factory.close()
    (ca.leaves_dir / "torn.pem").write_bytes(b"-----BEGIN CERT")
    assert certcache.cached_count(ca) == 6
    assert certcache.prune(ca, keep=3) == 3  # the torn file, then p0 and p1
    left = sorted(p.name for p in ca.leaves_dir.iterdir())
    assert len(left) == 3 and certcache.cached_count(ca) == 3
    assert certcache.prune(ca, utcnow() + dt.timedelta(days=31)) == 3  # all expired by then


def test_the_scheduled_prune_covers_every_generation_at_its_clock(store: CAStore) -> None:
    t0 = utcnow()
    factory = LeafFactory(clock=lambda: t0)
    try:
        old = store.current("acme")
        assert old is not None
        factory.get_blocking(old, "old.example")  # a leaf of the generation about to be retired
        store.rotate("acme")
        for tenant in (None, "acme"):
            ca = store.current(tenant)
            assert ca is not None
            for i in range(2):
                factory.get_blocking(ca, f"h{i}.example")
    finally:
        factory.close()
    dirs = store.leaf_dirs()
    assert len(dirs) == 3  # the box's, acme's current and acme's retired generation
    assert sum(len(list(d.glob("*.pem"))) for d in dirs) == 5
    now = [t0]
    pruner = certcache.LeafPruner(store.leaf_dirs, interval=0.01, keep=None, clock=lambda: now[0])
    assert pruner.tick() == 0  # nothing has expired at t0
    now[0] = t0 + dt.timedelta(days=31)  # leaves last 30 days by default
    assert pruner.tick() == 5
    assert sum(len(list(d.glob("*.pem"))) for d in dirs) == 0
    assert (pruner.passes, pruner.removed) == (2, 5)


def test_the_schedule_runs_passes_off_the_loop_and_survives_a_failing_one(tmp_path: Path) -> None:
    seen: list[BaseException] = []
    calls: list[str] = []
    second = threading.Event()

    def dirs() -> list[Path]:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise PermissionError("unreadable")
        second.set()
        return []

    pruner = certcache.LeafPruner(dirs, interval=0.01, clock=utcnow)

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(pruner.run(seen.append), name="test-prune")
        assert await asyncio.to_thread(second.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert len(calls) >= 2  # the failing pass did not end the schedule
    assert [type(e) for e in seen] == [PermissionError]
    assert threading.main_thread().name not in calls  # every pass ran in a worker thread


def test_a_pruner_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError):
        certcache.LeafPruner(list, interval=0)
