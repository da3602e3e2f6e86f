"""StatsD lines from the same families as /metrics: names, tags, counter deltas, packing."""

from __future__ import annotations

from arcus.stats.prom import Figures, FiguresCollector
from arcus.stats.statsd import packets, render_statsd, statsd_lines


def counts(requests: int, down: int = 0, **errors: int) -> dict:
    return {"conns_total": requests, "conns_active": 1, "requests": requests, "bytes_up": 0, "bytes_down": down,
            "errors": errors}


def lines(f: Figures, last: dict, prefix: str = "arcus") -> list[str]:
    return statsd_lines(FiguresCollector(f).collect(), prefix, last)


def test_counters_are_sent_as_increases_and_gauges_each_time() -> None:
    last: dict = {}
    first = lines(Figures(servers={"http": counts(5, 500, denied=2)}, uptime=1.5), last, prefix="edge.arcus")
    assert "edge.arcus.server.requests.total:5|c|#server:http" in first
    assert "edge.arcus.server.errors.total:2|c|#code:denied,server:http" in first
    assert "edge.arcus.server.connections.active:1|g|#server:http" in first
    assert "edge.arcus.uptime.seconds:1.5|g" in first
    assert not any(x.startswith("edge.arcus.build") for x in first)
    second = lines(Figures(servers={"http": counts(7, 500, denied=2)}, uptime=2.5), last, prefix="edge.arcus")
    assert "edge.arcus.server.requests.total:2|c|#server:http" in second
    assert not any(x.startswith("edge.arcus.server.errors.total") for x in second)  # did not move: not sent
    assert not any(x.startswith("edge.arcus.server.traffic.out.bytes.total") for x in second)
    assert "edge.arcus.uptime.seconds:2.5|g" in second
    # a counter that went down (a rebuilt resolver) sends its new value
    third = lines(Figures(servers={"http": counts(3, 500, denied=2)}), last, prefix="edge.arcus")
    assert "edge.arcus.server.requests.total:3|c|#server:http" in third


def test_histograms_send_count_and_sum_not_buckets() -> None:
    hist = {"server": [({"server": "http"}, [(0.1, 1), (float("inf"), 2)], 0.75)]}
    out = lines(Figures(histograms=hist), {})
    assert "arcus.request.duration.seconds.count:2|c|#server:http" in out
    assert "arcus.request.duration.seconds.sum:0.75|c|#server:http" in out
    assert not any(".bucket" in x for x in out)


def test_unsafe_label_characters_are_replaced() -> None:
    out = lines(Figures(tenants={"a|b:c,d#e": counts(1)}), {})
    assert "arcus.tenant.requests.total:1|c|#tenant:a_b_c_d_e" in out


def test_packets_respect_the_size() -> None:
    data = packets(["a" * 10, "b" * 10, "c" * 10, "d" * 40], 25)
    assert data == [b"a" * 10 + b"\n" + b"b" * 10, b"c" * 10, b"d" * 40]
    assert all(len(p) <= 25 for p in data[:-1])
    assert render_statsd(Figures(), "arcus", {}, 512) and all(len(p) <= 512 for p in render_statsd(Figures(), "arcus", {}, 512))
