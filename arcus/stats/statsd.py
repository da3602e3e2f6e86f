"""StatsD lines of the daemon's figures: the families of ``/metrics``, pushed over UDP.

One definition of the metrics: :func:`statsd_lines` reads the same prometheus-client families
that :class:`arcus.stats.prom.FiguresCollector` yields for ``/metrics`` and writes each sample
as a StatsD line with DogStatsD tags (the form g3proxy's StatsD output uses)::

    arcus.server.requests.total:12|c|#server:http
    arcus.server.connections.active:3|g|#server:http

- the name: the Prometheus name without ``arcus_``, ``_`` turned into ``.``, after the
  profile's ``prefix`` (``arcus_server_requests_total`` → ``arcus.server.requests.total``);
- counters are sent as the increase since the previous flush (StatsD sums them per its own
  interval), and only when they moved; a counter that went down (a resolver rebuilt by a
  reload starts at 0) sends its new value;
- gauges are sent at each flush;
- histograms send their ``count`` and ``sum`` as counters (no buckets: StatsD has none);
  ``arcus_build_info`` is not sent.

Lines are packed into datagrams of at most ``max_packet`` bytes, ``\\n``-separated. Sans-io:
the daemon's side (:mod:`arcus.runtime.metrics`) owns the socket and the clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from arcus.stats.prom import Figures, FiguresCollector

_UNSAFE = re.compile(r"[|,#:\s@]")

Last = dict[tuple[str, str], float]
"""``(name, tags)`` -> a counter's value at the previous flush."""


def _num(v: float) -> str:
    if float(v).is_integer():
        return str(int(v))
    return repr(round(float(v), 6))


def _tags(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "|#" + ",".join(f"{_UNSAFE.sub('_', k)}:{_UNSAFE.sub('_', str(v))}" for k, v in sorted(labels.items()))


def statsd_lines(families: Iterable[Any], prefix: str, last: Last) -> list[str]:
    """The StatsD lines of prometheus-client ``families``; ``last`` is updated (see the module)."""
    out: list[str] = []
    for fam in families:
        kind = fam.type
        if kind not in ("counter", "gauge", "histogram"):
            continue
        for sample in fam.samples:
            sname = sample.name
            if kind == "histogram":
                if not (sname.endswith("_count") or sname.endswith("_sum")):
                    continue
            elif kind == "counter" and not sname.endswith("_total"):
                continue  # _created
            short = sname[len("arcus_"):] if sname.startswith("arcus_") else sname
            name = f"{prefix}.{short.replace('_', '.')}"
            tags = _tags(sample.labels)
            value = float(sample.value)
            if kind == "gauge":
                out.append(f"{name}:{_num(value)}|g{tags}")
                continue
            key = (name, tags)
            before = last.get(key, 0.0)
            last[key] = value
            delta = value - before if value >= before else value
            if delta:
                out.append(f"{name}:{_num(delta)}|c{tags}")
    return out


def packets(lines: Iterable[str], max_packet: int) -> list[bytes]:
    """``lines`` joined by ``\\n`` into datagrams of at most ``max_packet`` bytes (a longer line
    goes alone)."""
    out: list[bytes] = []
    current = bytearray()
    for line in lines:
        data = line.encode()
        if current and len(current) + 1 + len(data) > max_packet:
            out.append(bytes(current))
            current = bytearray()
        if current:
            current += b"\n"
        current += data
    if current:
        out.append(bytes(current))
    return out


def render_statsd(figures: Figures, prefix: str, last: Last, max_packet: int) -> list[bytes]:
    """The datagrams of one flush (call it off the event loop, one flush at a time: ``last``)."""
    return packets(statsd_lines(FiguresCollector(figures).collect(), prefix, last), max_packet)
