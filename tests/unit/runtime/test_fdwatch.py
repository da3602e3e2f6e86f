"""FdWatch and raise_limit against this process's real descriptor table and limits."""

from __future__ import annotations

import logging
import resource

import pytest

from arcus.runtime.fdwatch import WARN_EVERY, FdWatch, count_open, raise_limit


def test_count_open_sees_a_new_descriptor() -> None:
    before = count_open()
    with open(__file__, "rb"):
        assert count_open() == before + 1


def test_plenty_of_room_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    watch = FdWatch(count_open() + 1000, reserve=32)
    assert watch.check(0.0) is False
    assert watch.low == 0 and not caplog.records


def test_short_of_descriptors_is_counted_every_time_and_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "arcus.daemon")
    watch = FdWatch(count_open() + 10, reserve=32)
    assert watch.check(100.0) and watch.check(101.0) and watch.check(100.0 + WARN_EVERY)
    assert watch.low == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert f"of {watch.limit} file descriptors open" in warnings[0] and "fds.low" in warnings[0]
    assert watch.info() == {"open": count_open(), "limit": watch.limit, "low": 3}


def test_default_reserve_is_five_percent_at_least_32() -> None:
    assert FdWatch(1024).reserve == 51
    assert FdWatch(256).reserve == 32


def test_raise_limit_lifts_the_soft_limit_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 64:
        pytest.skip("needs a finite hard limit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard // 2), hard))
    try:
        assert raise_limit() == (hard, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
