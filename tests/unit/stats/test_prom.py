"""The Prometheus exposition: user folding, and the text read back by prometheus-client's parser."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from arcus.stats.counters import Counters, CounterSet
from arcus.stats.latency import Recorded
from arcus.stats.prom import OTHER_USER, Figures, fold_users, render


def counts(requests: int, down: int = 0, **errors: int) -> dict:
    return {"conns_total": 0, "conns_active": 0, "requests": requests, "bytes_up": 0, "bytes_down": down, "errors": errors}


def counters(requests: int, down: int = 0, **errors: int) -> Counters:
    c = Counters()
    c.requests, c.bytes_down = requests, down
    c.errors.update(errors)
    return c


def test_fold_keeps_the_first_seen_users_and_sums_the_rest_per_tenant() -> None:
    items = [
        ("acme/zed", counters(1, 10)),
        ("acme/alice", counters(2, 20, denied=1)),
        ("beta/bob", counters(3, 30, denied=2, upstream_connect=1)),
        ("acme/carol", counters(4, 40, denied=5)),
        ("beta/dave", counters(5, 50)),
    ]
    out = fold_users(items, 2)
    assert list(out) == [("acme", "zed"), ("acme", "alice"), ("beta", OTHER_USER), ("acme", OTHER_USER)]
    assert out[("acme", OTHER_USER)] == counts(4, 40, denied=5)
    assert out[("beta", OTHER_USER)] == counts(8, 80, denied=2, upstream_connect=1)
    assert items[2][1].to_dict() == counts(3, 30, denied=2, upstream_connect=1)  # the inputs are not changed
    assert out[("acme", "alice")] == counts(2, 20, denied=1)
    assert fold_users(items, 0) == {("acme", OTHER_USER): counts(7, 70, denied=6), ("beta", OTHER_USER): counts(8, 80, denied=2, upstream_connect=1)}
    assert len(fold_users(items, 100)) == 5


def test_counter_set_items_keep_first_seen_order() -> None:
    cs = CounterSet()
    for name in ("b", "a", "c", "a"):
        cs.get(name).requests += 1
    assert [n for n, _ in cs.items()] == ["b", "a", "c"]


def parse(figures: Figures) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(render(figures).decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_render_reads_back_with_prometheus_clients_parser() -> None:
    lat = Recorded(buckets=(0.1, 1.0), max_users=1)

    def rec(kind="request", user="alice", duration=0.05, host="h", error=None, escaper="direct"):
        return SimpleNamespace(kind=kind, server="http", tenant="acme", user=user, escaper=escaper, host=host,
                               bytes_up=1, bytes_down=10, duration=duration, error_code=error)

    lat.observe_batch([rec(duration=d) for d in (0.05, 0.1, 0.5, 3.0)])
    lat.observe_batch([rec(user="bob", error="upstream_connect"), rec(user="carol")])  # folded: max_users=1
    lat.observe_batch([rec(kind="connection", duration=9.0, host="")])  # an HTTP connection's own: not counted
    lat.observe_batch([rec(kind="connection", duration=9.0, escaper="socks")])  # a tunnel: counted, no duration
    lat.observe_batch([object()])  # not a record: skipped
    f = Figures(
        version="9.9",
        servers={"http": {**counts(7, 700, upstream_connect=2), "conns_total": 5, "conns_active": 1}},
        tenants={"acme": counts(7, 700)},
        users={("acme", "alice"): counts(3), ("acme", OTHER_USER): counts(4)},
        resolvers={"system": {"name": "system", "type": "system", "cached": 2, "lookups": 4, "cache_hits": 3, "queries": 1}},
        records={"queued": 2, "dropped": 1, "access_failed": 0},
        audit=None,
        fds={"open": 12, "limit": 1024, "low": 0},
        reloads={"done": 2, "refused": 1},
        pool=3,
        auth={"kdf_runs": 5, "pending": 0},
        histograms=lat.snapshot(),
        escapers=lat.escapers(),
        listeners_down=1,
    )
    s = parse(f)

    def v(name: str, **labels: str) -> float:
        return s[(name, frozenset(labels.items()))]

    assert v("arcus_build_info", version="9.9") == 1
    assert v("arcus_server_connections_total", server="http") == 5
    assert v("arcus_server_connections_active", server="http") == 1
    assert v("arcus_server_requests_total", server="http") == 7
    assert v("arcus_server_traffic_out_bytes_total", server="http") == 700
    assert v("arcus_server_errors_total", server="http", code="upstream_connect") == 2
    assert v("arcus_tenant_requests_total", tenant="acme") == 7
    assert v("arcus_user_requests_total", tenant="acme", user="_other") == 4
    assert ("arcus_user_connections_total", frozenset({("tenant", "acme"), ("user", "alice")})) not in s
    assert v("arcus_resolver_cache_hits_total", resolver="system") == 3
    assert v("arcus_resolver_timeouts_total", resolver="system") == 0
    assert v("arcus_records_queued") == 2 and v("arcus_records_dropped_total") == 1
    assert v("arcus_audit_enabled") == 0
    assert v("arcus_fds_limit") == 1024
    assert v("arcus_reloads_total", result="done") == 2 and v("arcus_reloads_total", result="refused") == 1
    assert v("arcus_upstream_pool_connections") == 3
    assert v("arcus_auth_kdf_runs_total") == 5
    assert v("arcus_request_duration_seconds_bucket", server="http", le="0.1") == 4  # le is inclusive
    assert v("arcus_request_duration_seconds_bucket", server="http", le="1.0") == 5
    assert v("arcus_request_duration_seconds_bucket", server="http", le="+Inf") == 6
    assert v("arcus_request_duration_seconds_count", server="http") == 6
    assert abs(v("arcus_request_duration_seconds_sum", server="http") - 3.75) < 1e-9
    assert v("arcus_tenant_request_duration_seconds_count", tenant="acme") == 6
    assert v("arcus_escaper_request_duration_seconds_count", escaper="direct") == 6
    assert v("arcus_user_request_duration_seconds_count", tenant="acme", user="alice") == 4
    assert v("arcus_user_request_duration_seconds_count", tenant="acme", user="_other") == 2
    assert v("arcus_user_request_duration_seconds_bucket", tenant="acme", user="_other", le="0.1") == 2
    assert ("arcus_user_request_duration_seconds_count", frozenset({("tenant", "acme"), ("user", "bob")})) not in s
    assert v("arcus_escaper_requests_total", escaper="direct") == 6
    assert v("arcus_escaper_requests_total", escaper="socks") == 1
    assert v("arcus_escaper_traffic_out_bytes_total", escaper="direct") == 60
    assert v("arcus_escaper_errors_total", escaper="direct", code="upstream_connect") == 1
    assert v("arcus_resolver_cache_misses_total", resolver="system") == 1
    assert v("arcus_resolver_cache_entries", resolver="system") == 2
    assert v("arcus_listeners_down") == 1


def test_empty_figures_render() -> None:
    s = parse(Figures())
    assert s[("arcus_reloads_total", frozenset({("result", "done")}))] == 0
    assert not any(name.startswith("arcus_request_duration") for name, _ in s)
