"""The dashboard's pure parts: numbers for narrow columns, sparklines, filters, backoff."""

from __future__ import annotations

from arcus.tui.model import Backoff, Counts, Filter, Rates, compact, event_summary, is_blocked, select_conns, sparkline


def test_compact_fits_five_characters():
    assert [compact(v) for v in (0, 0.04, 0.5, 7, 12.5, 999, 1000, 10_240, 1_048_576, 5e12, -3, float("nan"))] == [
        "0", "0", "0.5", "7", "12", "999", "1.0K", "10K", "1.0M", "4.5T", "0", "0"]
    assert all(len(compact(10 ** e)) <= 5 for e in range(16))


def test_sparkline_scales_to_the_maximum_and_keeps_the_last_values():
    assert sparkline([0, 1, 2, 4, 8], 5) == " ▂▃▅█"
    assert sparkline([8, 0, 0], 6) == "   █  "
    assert sparkline([5] * 20, 4) == "████"
    assert sparkline([], 3) == "   "


def test_backoff_doubles_to_its_cap_and_starts_again_after_a_success():
    b = Backoff(0.25, 5.0)
    assert [b.next() for _ in range(8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    b.reset()
    assert b.next() == 0.25


def test_blocked_means_refused_by_the_gateway_not_by_an_upstream():
    assert all(is_blocked(c) for c in ("denied", "tenant_suspended", "auth_required", "rate_limited", "user_blocked"))
    assert not any(is_blocked(c) for c in ("upstream_denied", "upstream_connect", "tenant_conn_limit", "nonsense"))
    c = Counts.of({"requests": 10, "errors": {"denied": 2, "auth_required": 1, "upstream_timeout": 4}})
    assert (c.blocked, c.errors) == (3, 4)


def test_rates_never_go_negative_when_a_counter_restarts():
    before = Counts(requests=100, bytes_up=50)
    assert Rates.between(before, Counts(requests=40, bytes_up=10), 2.0).rps == 0
    assert Rates.between(None, Counts(active=3, requests=40), 2.0) == Rates(active=3)


def test_the_filter_language():
    f = Filter.parse('tenant:Acme blocked "example.com" 443')
    assert f == Filter(fields=(("tenant", "acme"),), words=("example.com", "443"), blocked=True)
    assert Filter.parse('tenant:"acme') == Filter(fields=(("tenant", '"acme'),))  # an open quote while typing
    conns = [{"id": 3, "tenant": "acme", "target": "example.com:443", "bytes_down": 5},
             {"id": 1, "tenant": "ACME", "target": "example.com:80", "bytes_down": 50},
             {"id": 2, "tenant": "default", "target": "example.com:443", "bytes_down": 500}]
    assert [c["id"] for c in select_conns(conns, Filter.parse("tenant:acme example"))] == [1, 3]
    assert [c["id"] for c in select_conns(conns, Filter.parse(":443"), "bytes_down", reverse=True)] == [2, 3]


def test_event_summaries_of_every_events_watch_type():
    assert event_summary({"type": "tunnel", "host": "example.com", "port": 443, "status": 0, "client": "1.2.3.4:5"}) \
        == "example.com:443  from 1.2.3.4:5"
    assert event_summary({"type": "request", "method": "GET", "host": "example.com", "port": 80, "path": "/a",
                          "status": 200}) == "GET example.com/a  200"
    assert event_summary({"type": "request", "method": "GET", "host": "127.0.0.1", "port": 8080, "path": "/",
                          "status": 200}) == "GET 127.0.0.1:8080/  200"  # not the usual port: shown
    assert event_summary({"type": "reload", "generation": 4, "profile": "edge"}) == "reloaded: generation 4, profile edge"
    assert event_summary({"type": "change", "cmd": "user.block", "tenant": "acme", "user": "bob"}) == "user.block acme bob"
    assert event_summary({"type": "problem", "problem": "fds_low", "detail": "12 free"}) == "problem fds_low: 12 free"
    assert event_summary({"type": "new_kind", "a": 1, "b": None}) == "a=1"
