"""Figures taken from the request records: duration histograms and the escapers' counters.

The data plane does nothing for them: every HTTP request and every tunnel already ends in one
record (``arcus.audit.records``); a subscription hands the records to
:meth:`Recorded.observe_batch` in the records writer thread, which counts each one. A scrape
(or a StatsD flush) reads a copy under the same lock, held by the event loop no longer than a
copy of the buckets.

- request durations (``kind == "request"``), one histogram per server, tenant, user (folded
  as :func:`arcus.stats.prom.fold_users` folds the counters: the first ``max_users`` users
  seen keep a label, the others are summed per tenant under ``_other``) and escaper;
- per escaper: requests and tunnels, payload bytes each way, errors by code (g3's
  ``escaper.task.total``, ``escaper.traffic.*``).

Records the records queue dropped are missing here too (``arcus_records_dropped_total``).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from typing import Any, Protocol

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds in seconds (``+Inf`` is added), prometheus-client's defaults stretched to a minute."""
MAX_SERIES = 1000
"""Label sets kept at most per family; beyond, records of new ones are not counted there."""
OTHER_USER = "_other"

Histogram = tuple[dict[str, str], list[tuple[float, int]], float]
"""``(labels, [(upper bound, cumulative count)...], sum)``, the last bound ``inf``."""
FAMILIES = ("server", "tenant", "user", "escaper")


class _Record(Protocol):
    kind: str
    server: str
    tenant: str
    user: str | None
    escaper: str
    host: str
    bytes_up: int
    bytes_down: int
    duration: float
    error_code: str | None


class Recorded:
    """See the module. ``max_users``: users with a histogram of their own."""

    def __init__(self, buckets: Iterable[float] = BUCKETS, max_users: int = 100) -> None:
        self.bounds = tuple(sorted(buckets))
        self.max_users = max_users
        self._lock = threading.Lock()
        # family -> key -> (counts per bucket, [sum]); the key is a tuple of label values
        self._hists: dict[str, dict[tuple[str, ...], tuple[list[int], list[float]]]] = {f: {} for f in FAMILIES}
        self._labelled_users: set[tuple[str, str]] = set()
        self._escapers: dict[str, list[Any]] = {}  # name -> [requests, up, down, {code: n}]

    def observe_batch(self, records: Iterable[_Record]) -> None:
        """Count a batch: first summed per distinct (labels, bucket) in plain dicts, then each
        distinct key applied to its series once (a batch has few distinct keys)."""
        bounds = self.bounds
        hits: dict[tuple, int] = {}  # (server, tenant, escaper, user, bucket) -> requests
        sums: dict[tuple, float] = {}  # (server, tenant, escaper, user) -> seconds
        esc: dict[str, list[Any]] = {}  # escaper -> [requests, up, down, {code: n}]
        for r in records:
            try:
                if r.kind == "request":
                    d = r.duration
                    labels = (r.server, r.tenant, r.escaper, r.user)
                    key = (*labels, bisect.bisect_left(bounds, d))
                    hits[key] = hits.get(key, 0) + 1
                    sums[labels] = sums.get(labels, 0.0) + d
                elif not (r.host or r.error_code):
                    continue  # an HTTP connection's own record: its requests are counted
                e = esc.get(r.escaper)
                if e is None:
                    e = esc[r.escaper] = [0, 0, 0, {}]
                e[0] += 1
                e[1] += r.bytes_up
                e[2] += r.bytes_down
                if r.error_code:
                    e[3][r.error_code] = e[3].get(r.error_code, 0) + 1
            except (AttributeError, TypeError):
                continue  # not a record: skipped, never a stopped writer
        hists = self._hists
        with self._lock:
            for (server, tenant, escaper, user, i), n in hits.items():
                self._count(hists["server"], (server,), i, n)
                self._count(hists["tenant"], (tenant,), i, n)
                self._count(hists["escaper"], (escaper,), i, n)
                if user is not None:
                    self._count(hists["user"], self._user_key(tenant, user), i, n)
            for (server, tenant, escaper, user), total in sums.items():
                self._add(hists["server"], (server,), total)
                self._add(hists["tenant"], (tenant,), total)
                self._add(hists["escaper"], (escaper,), total)
                if user is not None:
                    self._add(hists["user"], self._user_key(tenant, user), total)
            for name, (n, up, down, errors) in esc.items():
                mine = self._escapers.get(name)
                if mine is None:
                    if len(self._escapers) >= MAX_SERIES:
                        continue
                    mine = self._escapers[name] = [0, 0, 0, {}]
                mine[0] += n
                mine[1] += up
                mine[2] += down
                for code, k in errors.items():
                    mine[3][code] = mine[3].get(code, 0) + k

    def _user_key(self, tenant: str, user: str) -> tuple[str, str]:
        key = (tenant, user)
        if key in self._labelled_users:
            return key
        if len(self._labelled_users) < self.max_users:
            self._labelled_users.add(key)
            return key
        return (tenant, OTHER_USER)

    def _series(self, family: dict, key: tuple[str, ...]) -> tuple[list[int], list[float]] | None:
        series = family.get(key)
        if series is None:
            if len(family) >= MAX_SERIES:
                return None
            series = family[key] = ([0] * (len(self.bounds) + 1), [0.0])
        return series

    def _count(self, family: dict, key: tuple[str, ...], i: int, n: int) -> None:
        series = self._series(family, key)
        if series is not None:
            series[0][i] += n

    def _add(self, family: dict, key: tuple[str, ...], seconds: float) -> None:
        series = self._series(family, key)
        if series is not None:
            series[1][0] += seconds

    def snapshot(self) -> dict[str, list[Histogram]]:
        """``{family: [histogram...]}`` for each of :data:`FAMILIES`, sorted by labels."""
        with self._lock:
            copied = {f: [(k, list(c), s[0]) for k, (c, s) in series.items()] for f, series in self._hists.items()}
        out: dict[str, list[Histogram]] = {}
        for fam, items in copied.items():
            names = ("tenant", "user") if fam == "user" else (fam,)
            rows: list[Histogram] = []
            for key, counts, total in sorted(items):
                cumulative, running = [], 0
                for bound, n in zip((*self.bounds, float("inf")), counts):
                    running += n
                    cumulative.append((bound, running))
                rows.append((dict(zip(names, key)), cumulative, total))
            out[fam] = rows
        return out

    def escapers(self) -> dict[str, dict[str, Any]]:
        """``{escaper: {"requests", "bytes_up", "bytes_down", "errors": {code: n}}}``."""
        with self._lock:
            return {
                name: {"requests": e[0], "bytes_up": e[1], "bytes_down": e[2], "errors": dict(e[3])}
                for name, e in sorted(self._escapers.items())
            }
