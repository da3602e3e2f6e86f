"""Concurrency limits: ceilings, live changes, all-or-nothing acquisition."""

from __future__ import annotations

import pytest

from arcus.limit import ConcurrencyLimit, release_all, try_acquire_all


def test_ceiling_and_release() -> None:
    c = ConcurrencyLimit(2)
    assert c.try_acquire() and c.try_acquire()
    assert not c.try_acquire()
    assert c.active == 2
    c.release()
    assert c.try_acquire()
    assert c.active == 2


def test_unlimited_still_counts() -> None:
    c = ConcurrencyLimit(None)
    assert all(c.try_acquire() for _ in range(1000))
    assert c.active == 1000


def test_zero_refuses_everything() -> None:
    assert not ConcurrencyLimit(0).try_acquire()


def test_lowering_below_active_closes_nothing_and_refuses_new() -> None:
    c = ConcurrencyLimit(5)
    for _ in range(5):
        c.try_acquire()
    c.set_limit(2)
    assert c.active == 5 and not c.try_acquire()
    for _ in range(3):
        c.release()
    assert not c.try_acquire()  # 2 active, limit 2
    c.release()
    assert c.try_acquire()
    c.set_limit(None)
    assert c.try_acquire()


def test_over_release_is_a_bug() -> None:
    c = ConcurrencyLimit(1)
    with pytest.raises(RuntimeError):
        c.release()
    assert c.active == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_rejects_bad_limits(bad: object) -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimit(bad)  # type: ignore[arg-type]


def test_try_acquire_all_names_the_refusing_level_and_rolls_back() -> None:
    glob, tenant, user = ConcurrencyLimit(10), ConcurrencyLimit(1), ConcurrencyLimit(5)
    assert try_acquire_all(glob, tenant, user) is None
    assert (glob.active, tenant.active, user.active) == (1, 1, 1)
    assert try_acquire_all(glob, tenant, user) is tenant
    assert (glob.active, tenant.active, user.active) == (1, 1, 1)
    release_all(glob, tenant, user)
    assert (glob.active, tenant.active, user.active) == (0, 0, 0)
