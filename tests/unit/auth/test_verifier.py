"""The Verifier: throttle per client key (IPv6 /64), attempts counted before hashing, bounded
concurrency per user and per source, its own pool, and the credential cache in front.

The KDF is a fake (pure logic under test): ``GatedKdf`` holds each check until the test lets
it finish, so "in flight" is a state the test controls instead of a race it hopes to win.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from arcus.auth.credcache import CredentialCache, FailureThrottle
from arcus.auth.secrets import hash_secret
from arcus.auth.verifier import KeyedSlots, Outcome, Verifier

BOUND = 5.0  # seconds any test waits for something, at most


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedKdf:
    """Password "good" matches; every call blocks until ``release`` (or immediately if open)."""

    def __init__(self, open_: bool = False) -> None:
        self.gate = threading.Event()
        if open_:
            self.gate.set()
        self.lock = threading.Lock()
        self.calls = 0
        self.running = 0
        self.max_running = 0

    def __call__(self, stored: str, password: str) -> bool:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            assert self.gate.wait(BOUND), "the test never released the KDF"
            return password == "good"
        finally:
            with self.lock:
                self.running -= 1

    def release(self) -> None:
        self.gate.set()


def verifier(kdf, clock=None, **kw) -> Verifier:
    return Verifier(CredentialCache(), FailureThrottle(max_failures=5, window=60.0, block=30.0), kdf=kdf, clock=clock or Clock(), **kw)


async def until(cond, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 2 * BOUND))


# --- issue 10 #4: the throttle key is the /64 of an IPv6 client --------------------------------


def test_five_failures_from_one_ipv6_address_throttle_its_whole_64() -> None:
    v = verifier(GatedKdf(open_=True))
    for _ in range(5):
        assert v.known(None, "x", "fd99::10").outcome is Outcome.WRONG
    for host in ("fd99::10", "fd99::11", "fd99::12", "fd99::13", "fd99::14", "fd99::ffff:ffff:ffff:ffff"):
        check = v.known("acme\0alice\0s", "good", host)
        assert check is not None and check.outcome is Outcome.THROTTLED, host
        assert 0 < check.retry_after <= 30.0
    # the next /64 and IPv4 clients are not affected
    assert v.known("acme\0alice\0s", "good", "fd99:0:0:1::10") is None
    assert v.known("acme\0alice\0s", "good", "10.0.0.1") is None


def test_rotating_addresses_in_a_64_still_counts_one_key() -> None:
    v = verifier(GatedKdf(open_=True))
    for i in range(5):
        v.known(None, "x", f"fd99::{0x10 + i:x}")  # one failure from each of five addresses
    assert v.known(None, "x", "fd99::99").outcome is Outcome.THROTTLED


def test_ipv4_mapped_ipv6_counts_as_its_ipv4_address() -> None:
    v = verifier(GatedKdf(open_=True))
    for i in range(5):
        v.known(None, "x", "::ffff:192.0.2.7" if i % 2 else "192.0.2.7")
    assert v.known(None, "x", "192.0.2.7").outcome is Outcome.THROTTLED
    assert v.known(None, "x", "::ffff:192.0.2.7").outcome is Outcome.THROTTLED
    assert v.known("k", "x", "192.0.2.8") is None


def test_ipv6_throttle_reaches_the_kdf_path_too() -> None:
    kdf = GatedKdf(open_=True)
    v = verifier(kdf)

    async def main() -> None:
        for i in range(5):
            assert (await v.verify("acme\0alice\0s", "s", f"wrong{i}", "fd99::10")).outcome is Outcome.WRONG
        await until(lambda: v.pending == 0, "the pool to drain")
        check = await v.verify("acme\0alice\0s", "s", "good", "fd99::11")
        assert check.outcome is Outcome.THROTTLED

    run(main())
    assert kdf.calls == 5


# --- issue 10 #7: bounded, counted before hashing, own pool ----------------------------------


def test_a_flood_from_one_source_runs_the_kdf_at_most_max_failures_times() -> None:
    kdf = GatedKdf()
    v = verifier(kdf)

    async def main() -> list:
        tasks = [asyncio.ensure_future(v.verify("acme\0alice\0s", "s", f"wrong{i}", "127.0.0.1")) for i in range(200)]
        await until(lambda: kdf.running == 2, "two checks in the KDF")
        kdf.release()
        return await asyncio.gather(*tasks)

    results = run(main())
    outcomes = [r.outcome for r in results]
    assert kdf.calls == 5  # counted before hashing: the 5th check started the block
    assert kdf.max_running <= 2
    assert outcomes.count(Outcome.WRONG) == 5
    assert outcomes.count(Outcome.BUSY) + outcomes.count(Outcome.THROTTLED) == 195
    assert all(r.retry_after > 0 for r in results if r.outcome is not Outcome.WRONG)
    assert v.pending == 0 and v.by_source.held("127.0.0.1") == 0 and v.by_user.held("acme\0alice\0s") == 0


def test_concurrent_checks_per_user_are_bounded_across_sources() -> None:
    kdf = GatedKdf()
    v = verifier(kdf, max_waiters=1)

    async def main() -> list:
        tasks = [asyncio.ensure_future(v.verify("acme\0alice\0s", "s", f"w{i}", f"10.0.0.{i}")) for i in range(1, 9)]
        await until(lambda: kdf.running == 2, "two checks in the KDF")
        await until(lambda: sum(t.done() for t in tasks) == 5, "the checks over the bound to be refused")
        assert kdf.running == 2  # a third source does not get a third KDF for the same user
        kdf.release()
        return await asyncio.gather(*tasks)

    outcomes = [r.outcome for r in run(main())]
    assert kdf.max_running == 2
    assert outcomes.count(Outcome.BUSY) == 5  # 2 checking, 1 waiting, 5 over max_waiters
    assert outcomes.count(Outcome.WRONG) == 3


def test_a_waiter_gives_up_after_the_bounded_wait_and_leaks_no_slot() -> None:
    kdf = GatedKdf()
    v = verifier(kdf, per_source=1, wait=0.05)

    async def main() -> None:
        first = asyncio.ensure_future(v.verify("u1", "s", "good", "10.0.0.1"))
        await until(lambda: kdf.running == 1, "the first check in the KDF")
        second = await v.verify("u2", "s", "good", "10.0.0.1")
        assert second.outcome is Outcome.BUSY
        kdf.release()
        assert (await first).outcome is Outcome.OK
        await until(lambda: v.pending == 0, "the pool to drain")
        assert v.by_source.held("10.0.0.1") == 0 and v.by_source.waiting("10.0.0.1") == 0
        assert (await v.verify("u2", "s", "good", "10.0.0.1")).outcome is Outcome.OK

    run(main())


def test_a_cancelled_client_keeps_its_slot_until_the_kdf_ends_and_the_result_is_cached() -> None:
    kdf = GatedKdf()
    v = verifier(kdf, per_source=1)

    async def main() -> None:
        task = asyncio.ensure_future(v.verify("u", "s", "good", "10.0.0.1"))
        await until(lambda: kdf.running == 1, "the check in the KDF")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert v.by_source.held("10.0.0.1") == 1  # the thread still hashes: the bound still holds
        waiter = asyncio.ensure_future(v.verify("u", "s", "good", "10.0.0.1"))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        kdf.release()
        assert (await waiter).outcome is Outcome.OK  # from the cache the cancelled check filled

    run(main())
    assert kdf.calls == 1


def test_a_waiter_cancelled_while_queued_leaks_nothing() -> None:
    kdf = GatedKdf()
    v = verifier(kdf, per_source=1)

    async def main() -> None:
        first = asyncio.ensure_future(v.verify("u1", "s", "good", "10.0.0.1"))
        await until(lambda: kdf.running == 1, "the first check in the KDF")
        queued = asyncio.ensure_future(v.verify("u2", "s", "good", "10.0.0.1"))
        await until(lambda: v.by_source.waiting("10.0.0.1") == 1, "the second check to queue")
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)
        kdf.release()
        await first
        await until(lambda: v.pending == 0, "the pool to drain")
        assert v.by_source.held("10.0.0.1") == 0 and v.by_source.waiting("10.0.0.1") == 0

    run(main())


def test_the_pool_is_bounded_and_refuses_when_full() -> None:
    kdf = GatedKdf()
    v = verifier(kdf, workers=1, queue=1)

    async def main() -> list:
        tasks = [asyncio.ensure_future(v.verify(f"u{i}", "s", "good", f"10.0.0.{i}")) for i in range(3)]
        await until(lambda: kdf.running == 1 and v.pending == 2, "one running, one queued")
        await until(lambda: tasks[2].done(), "the third to be refused")
        kdf.release()
        return await asyncio.gather(*tasks)

    outcomes = [r.outcome for r in run(main())]
    assert outcomes == [Outcome.OK, Outcome.OK, Outcome.BUSY]


def test_the_default_executor_does_not_wait_behind_password_checks() -> None:
    kdf = GatedKdf()
    v = verifier(kdf)

    async def main() -> None:
        tasks = [asyncio.ensure_future(v.verify(f"u{i}", "s", "w", f"10.0.{i}.1")) for i in range(40)]
        await until(lambda: kdf.running == 2, "the pool busy")
        # what the control plane's store calls use: answered while every KDF thread is held
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "store"), 1.0) == "store"
        kdf.release()
        await asyncio.gather(*tasks)

    run(main())


def test_a_verified_password_is_not_hashed_again_and_success_forgets_the_counted_attempt() -> None:
    kdf = GatedKdf(open_=True)
    clock = Clock()
    v = verifier(kdf, clock)

    async def main() -> None:
        for i in range(4):
            assert v.known("u", f"bad{i}", "10.0.0.1") is None
            assert (await v.verify("u", "s", f"bad{i}", "10.0.0.1")).outcome is Outcome.WRONG
        assert (await v.verify("u", "s", "good", "10.0.0.1")).outcome is Outcome.OK  # the 5th counted attempt
        await until(lambda: v.pending == 0, "the pool to drain")
        assert v.known("u", "good", "10.0.0.1").outcome is Outcome.OK  # cached, not throttled
        assert v.throttle.blocked("10.0.0.1", clock.now) == 0.0
        assert v.known("u", "bad0", "10.0.0.1").outcome is Outcome.WRONG  # a cached failure still counts

    run(main())
    assert kdf.calls == 5


def test_waiters_behind_a_check_of_the_same_password_take_its_cached_result() -> None:
    kdf = GatedKdf()
    v = verifier(kdf, per_source=1)

    async def main() -> list:
        tasks = [asyncio.ensure_future(v.verify("u", "s", "good", "10.0.0.1")) for _ in range(6)]
        await until(lambda: kdf.running == 1, "the first check in the KDF")
        kdf.release()
        return await asyncio.gather(*tasks)

    assert [r.outcome for r in run(main())] == [Outcome.OK] * 6
    assert kdf.calls == 1  # a browser's parallel connections cost one KDF


def test_the_real_kdf_runs_in_the_verifiers_own_threads() -> None:
    names: list[str] = []
    stored = hash_secret("right")

    def spy(s: str, p: str) -> bool:
        names.append(threading.current_thread().name)
        from arcus.auth.verifier import _kdf

        return _kdf(s, p)

    v = Verifier(kdf=spy)

    async def main() -> None:
        assert (await v.verify("u", stored, "right", "10.0.0.1")).outcome is Outcome.OK
        assert (await v.verify("u", stored, "wrong", "10.0.0.1")).outcome is Outcome.WRONG
        assert (await v.verify("u", "$plain-text", "x", "10.0.0.2")).outcome is Outcome.WRONG  # unreadable: admits nobody

    try:
        run(main())
    finally:
        v.close()
    assert names and all(n.startswith("arcus-kdf") for n in names)


def test_keyed_slots_hand_over_in_order_and_forget_idle_keys() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        slots = KeyedSlots(1, 2)
        assert slots.take("a") and not slots.take("a")
        f1, f2 = slots.enqueue("a", loop), slots.enqueue("a", loop)
        assert f1 is not None and f2 is not None and slots.enqueue("a", loop) is None
        slots.give("a")
        assert f1.done() and not f2.done() and slots.held("a") == 1
        f2.cancel()
        slots.give("a")
        assert slots.held("a") == 0 and slots.waiting("a") == 0
        assert slots._held == {} and slots._waiting == {}

    run(main())


@pytest.mark.parametrize("bad", [dict(workers=0), dict(queue=-1), dict(wait=0)])
def test_bad_bounds_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        Verifier(**bad)
