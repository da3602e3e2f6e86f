"""A reverse proxy site's upstreams: taken in turn, a failed one passed over for a while (pure
logic, the clock passed in)."""

from __future__ import annotations

from arcus.config.server.http_rproxy import RproxyHost
from arcus.serve.http_rproxy import FAIL_TIMEOUT, Site


def site(*upstreams: str) -> Site:
    return Site(RproxyHost(names=("a.test",), upstream=upstreams[0] if len(upstreams) == 1 else upstreams), None)


def test_upstreams_are_taken_in_turn() -> None:
    s = site("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
    assert s.targets == [("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80)]
    assert [s.pick(0.0) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_a_failed_upstream_is_passed_over_until_its_time_is_up() -> None:
    s = site("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
    s.failed(1, now=100.0)
    assert [s.pick(100.0) for _ in range(4)] == [0, 2, 0, 2]
    assert s.pick(100.0 + FAIL_TIMEOUT - 0.1) == 0
    assert [s.pick(100.0 + FAIL_TIMEOUT) for _ in range(3)] == [1, 2, 0]  # back in the turn


def test_a_request_tries_each_upstream_once() -> None:
    s = site("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
    first = s.pick(0.0)
    assert first == 0
    s.failed(0, 0.0)
    assert s.pick(0.0, frozenset({0})) == 1
    s.failed(1, 0.0)
    assert s.pick(0.0, frozenset({0, 1})) == 2
    s.failed(2, 0.0)
    assert s.pick(0.0, frozenset({0, 1, 2})) is None  # every one tried: the request fails


def test_when_every_upstream_failed_lately_the_one_failed_longest_ago_is_tried() -> None:
    s = site("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
    s.failed(0, 5.0)
    s.failed(1, 1.0)
    s.failed(2, 3.0)
    assert s.pick(6.0) == 1
    assert s.pick(6.0, frozenset({1})) == 2


def test_one_upstream_is_always_the_one() -> None:
    s = site("10.0.0.1:80")
    s.failed(0, 0.0)
    assert s.pick(1.0) == 0  # nothing else to go to: it is tried again
    assert s.pick(1.0, frozenset({0})) is None
