"""Request-duration histograms, fed from the request records in the records writer thread.

The data plane does nothing for them: every HTTP request already ends in one record
(``arcus.audit.records``); a subscription hands the records to :meth:`Latency.observe_batch` in
the writer thread, which counts each duration into its server's buckets. A scrape reads a copy
under the same lock (held for a few dict lookups per record, never by the event loop for
longer than a copy of the buckets).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from typing import Protocol

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds in seconds (``+Inf`` is added), prometheus-client's defaults stretched to a minute."""
MAX_SERIES = 1000
"""Label sets kept at most; beyond, records of new servers are not counted (servers are few)."""


class _Record(Protocol):
    kind: str
    server: str
    duration: float


class Latency:
    """One histogram per server of ``kind == "request"`` record durations."""

    def __init__(self, buckets: Iterable[float] = BUCKETS) -> None:
        self.bounds = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._series: dict[str, tuple[list[int], list[float]]] = {}  # server -> (counts per bucket, [sum])

    def observe_batch(self, records: Iterable[_Record]) -> None:
        bounds = self.bounds
        with self._lock:
            for r in records:
                if r.kind != "request":
                    continue
                series = self._series.get(r.server)
                if series is None:
                    if len(self._series) >= MAX_SERIES:
                        continue
                    series = self._series[r.server] = ([0] * (len(bounds) + 1), [0.0])
                series[0][bisect.bisect_left(bounds, r.duration)] += 1
                series[1][0] += r.duration

    def snapshot(self) -> list[tuple[dict[str, str], list[tuple[float, int]], float]]:
        """``[(labels, [(upper bound, cumulative count)...], sum)]``, the last bound ``inf``."""
        with self._lock:
            copied = [(name, list(counts), total[0]) for name, (counts, total) in self._series.items()]
        out = []
        for name, counts, total in sorted(copied):
            cumulative, running = [], 0
            for bound, n in zip((*self.bounds, float("inf")), counts):
                running += n
                cumulative.append((bound, running))
            out.append(({"server": name}, cumulative, total))
        return out
