"""Prometheus text exposition of the daemon's figures (``/metrics``), with prometheus-client.

The data plane keeps plain counters (:mod:`arcus.stats.counters`), one ``+=`` per event and no
lock. A scrape copies them into :class:`Figures` on the event loop (a dict copy per server,
tenant and user: microseconds per object), and :func:`render` turns that copy into text in a
worker thread through a :class:`FiguresCollector` registered in a registry of its own, so the
hot path does no work for the metrics at all and the loop does no formatting.

Names follow g3proxy's where it has one (``server.connection.total`` becomes
``arcus_server_connections_total{server=...}``); ``docs/metrics.md`` lists every one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from arcus.stats.counters import Counters
from arcus.stats.latency import OTHER_USER, Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Counts = Mapping[str, Any]
"""``Counters.to_dict()``: conns_total, conns_active, requests, bytes_up, bytes_down, errors."""


@dataclass(slots=True)
class Figures:
    """One scrape's copy of the daemon's counters: plain data, safe to read in another thread."""

    version: str = ""
    uptime: float = 0.0
    generation: int = 0
    servers: dict[str, Counts] = field(default_factory=dict)
    tenants: dict[str, Counts] = field(default_factory=dict)
    users: dict[tuple[str, str], Counts] = field(default_factory=dict)  # (tenant, user), folded
    resolvers: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # Resolver.describe(): counters, "cached"
    records: Mapping[str, int] = field(default_factory=dict)  # Records.stats()
    audit: Mapping[str, int] | None = None  # AuditSink.stats(); None: audit off
    fds: Mapping[str, int] = field(default_factory=dict)  # FdWatch.info()
    reloads: Mapping[str, int] = field(default_factory=dict)  # {"done": n, "refused": n}
    pool: int = 0  # idle upstream connections kept for reuse
    auth: Mapping[str, int] = field(default_factory=dict)  # Verifier.info()
    histograms: Mapping[str, list[Histogram]] = field(default_factory=dict)  # Recorded.snapshot()
    escapers: Mapping[str, Counts] = field(default_factory=dict)  # Recorded.escapers()
    listeners_down: int = 0  # configured listeners not bound or not serving


def fold_users(items: Iterable[tuple[str, Counters]], bound: int) -> dict[tuple[str, str], Counts]:
    """``("tenant/user", Counters)`` in first-seen order → ``{(tenant, user): counts}``, bounded.

    The first ``bound`` users keep a label of their own for the daemon's life (first seen, so a
    series never changes hands and counters stay monotonic); the others are summed per tenant
    under ``user="_other"``. Cardinality: at most ``bound`` + one per tenant. Runs on the event
    loop at each scrape: the folded users cost a few attribute reads each (10,000 users: ~5 ms).
    """
    out: dict[tuple[str, str], Counts] = {}
    others: dict[str, list] = {}  # tenant -> [conns_total, conns_active, requests, up, down, errors]
    for n, (key, c) in enumerate(items):
        tenant, _, user = key.partition("/")
        if n < bound:
            out[(tenant, user)] = c.to_dict()
            continue
        acc = others.get(tenant)
        if acc is None:
            acc = others[tenant] = [0, 0, 0, 0, 0, {}]
        acc[0] += c.conns_total
        acc[1] += c.conns_active
        acc[2] += c.requests
        acc[3] += c.bytes_up
        acc[4] += c.bytes_down
        if c.errors:
            errors = acc[5]
            for code, k in c.errors.items():
                errors[code] = errors.get(code, 0) + k
    for tenant, acc in others.items():
        out[(tenant, OTHER_USER)] = dict(zip(("conns_total", "conns_active", "requests", "bytes_up", "bytes_down", "errors"), acc))
    return out


def _per_object(prefix: str, what: str, labels: list[str], objects: Mapping[Any, Counts], conns: bool) -> Iterator[Metric]:
    """The counters of servers, tenants or users: families labelled by ``labels`` (the keys)."""
    fams: list[tuple[Metric, str]] = []
    if conns:
        fams.append((CounterMetricFamily(f"{prefix}_connections", f"Client connections accepted, per {what}.", labels=labels), "conns_total"))
        fams.append((GaugeMetricFamily(f"{prefix}_connections_active", f"Client connections open now, per {what}.", labels=labels), "conns_active"))
    fams.append((CounterMetricFamily(f"{prefix}_requests", f"HTTP requests and tunnels (g3's tasks), per {what}.", labels=labels), "requests"))
    fams.append((CounterMetricFamily(f"{prefix}_traffic_in_bytes", f"Payload bytes from clients to upstreams, per {what}.", labels=labels), "bytes_up"))
    fams.append((CounterMetricFamily(f"{prefix}_traffic_out_bytes", f"Payload bytes from upstreams to clients, per {what}.", labels=labels), "bytes_down"))
    errors = CounterMetricFamily(f"{prefix}_errors", f"Requests and tunnels that ended in an error, per {what} and error code.", labels=[*labels, "code"])
    for key, counts in objects.items():
        lv = list(key)
        for fam, name in fams:
            fam.add_metric(lv, counts.get(name, 0))  # type: ignore[attr-defined]
        for code, n in sorted(counts.get("errors", {}).items()):
            errors.add_metric([*lv, code], n)
    for fam, _ in fams:
        yield fam
    yield errors


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


HISTOGRAMS = (("server", "server"), ("tenant", "tenant"), ("user", "user (folded as the user counters)"), ("escaper", "escaper"))
"""Families of :meth:`Recorded.snapshot` and what their help text calls them; the server's keeps
its first name, ``arcus_request_duration_seconds``."""


class FiguresCollector(Collector):
    """A prometheus-client collector over one :class:`Figures` copy."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        yield InfoMetricFamily("arcus_build", "The daemon's version.", value={"version": f.version})
        yield _gauge("arcus_uptime_seconds", "Seconds since the daemon started.", f.uptime)
        yield _gauge("arcus_generation", "Generation of the Snapshot serving now (each reload or store change adds one).", f.generation)
        yield from _per_object("arcus_server", "server", ["server"], {(k,): v for k, v in f.servers.items()}, conns=True)
        yield from _per_object("arcus_tenant", "tenant", ["tenant"], {(k,): v for k, v in f.tenants.items()}, conns=True)
        yield from _per_object("arcus_user", "user", ["tenant", "user"], f.users, conns=False)
        yield from self._resolvers()
        yield from self._box()
        yield from _per_object("arcus_escaper", "escaper", ["escaper"], {(k,): v for k, v in f.escapers.items()}, conns=False)
        for family, what in HISTOGRAMS:
            rows = f.histograms.get(family)
            if not rows:
                continue
            names = list(rows[0][0])
            hist = HistogramMetricFamily(
                "arcus_request_duration_seconds" if family == "server" else f"arcus_{family}_request_duration_seconds",
                f"Duration of HTTP requests per {what}, from the request record (first byte in to last byte out).",
                labels=names,
            )
            for labels, buckets, total in rows:
                hist.add_metric([labels[n] for n in names], [(_le(b), c) for b, c in buckets], total)
            yield hist

    def _resolvers(self) -> Iterator[Metric]:
        fams = {
            "lookups": CounterMetricFamily("arcus_resolver_lookups", "Name lookups asked of a resolver (IP literals not counted).", labels=["resolver"]),
            "cache_hits": CounterMetricFamily("arcus_resolver_cache_hits", "Lookups answered from a positive cache entry.", labels=["resolver"]),
            "negative_hits": CounterMetricFamily("arcus_resolver_negative_hits", "Lookups refused from a negative cache entry.", labels=["resolver"]),
            "queries": CounterMetricFamily("arcus_resolver_queries", "Queries actually sent (cache misses after de-duplication).", labels=["resolver"]),
            "failures": CounterMetricFamily("arcus_resolver_failures", "Queries that failed, timeouts included.", labels=["resolver"]),
            "timeouts": CounterMetricFamily("arcus_resolver_timeouts", "Queries that timed out.", labels=["resolver"]),
        }
        entries = GaugeMetricFamily("arcus_resolver_cache_entries", "Names in a resolver's cache now (positive and negative).", labels=["resolver"])
        misses = CounterMetricFamily(
            "arcus_resolver_cache_misses", "Lookups not answered from the cache (asked, or joined a question in flight).", labels=["resolver"]
        )
        for name, stats in sorted(self.figures.resolvers.items()):
            for key, fam in fams.items():
                fam.add_metric([name], stats.get(key, 0))
            misses.add_metric([name], max(0, stats.get("lookups", 0) - stats.get("cache_hits", 0) - stats.get("negative_hits", 0)))
            entries.add_metric([name], stats.get("cached", 0))
        yield from fams.values()
        yield misses
        yield entries

    def _box(self) -> Iterator[Metric]:
        f = self.figures
        rec = f.records
        yield _gauge("arcus_records_queued", "Request records waiting for the records writer thread.", rec.get("queued", 0))
        yield _counter("arcus_records_dropped", "Request records dropped because the records queue was full.", rec.get("dropped", 0))
        yield _counter("arcus_access_log_failed", "Access-log writes that failed.", rec.get("access_failed", 0))
        audit = f.audit or {}
        yield _gauge("arcus_audit_enabled", "1 when the audit log is on.", 1 if f.audit is not None else 0)
        yield _counter("arcus_audit_written", "Audit events committed to audit.db.", audit.get("written", 0))
        yield _counter("arcus_audit_dropped", "Audit events lost (queue full, disk full, closed).", audit.get("dropped", 0))
        yield _gauge("arcus_audit_queued", "Audit events waiting for the audit writer.", audit.get("queued", 0))
        yield _gauge("arcus_audit_db_bytes", "Size of audit.db and its WAL.", audit.get("db_bytes", 0))
        yield _gauge("arcus_fds_open", "File descriptors open now.", f.fds.get("open", 0))
        yield _gauge("arcus_fds_limit", "The soft limit on open file descriptors.", f.fds.get("limit", 0))
        yield _counter(
            "arcus_fds_low_checks",
            "Sweeps (one a second) that found fewer than 5% (at least 32) descriptors free: accepts fail then.",
            f.fds.get("low", 0),
        )
        reloads = CounterMetricFamily("arcus_reloads", "Profile reloads, by result (done or refused).", labels=["result"])
        for result in ("done", "refused"):
            reloads.add_metric([result], f.reloads.get(result, 0))
        yield reloads
        yield _gauge("arcus_listeners_down", "Listeners of the profile not bound or no longer serving (then /ready answers 503).", f.listeners_down)
        yield _gauge("arcus_upstream_pool_connections", "Idle keep-alive upstream connections kept for reuse.", f.pool)
        auth = f.auth
        yield _gauge("arcus_auth_checks_pending", "Password checks waiting for or running in the KDF pool.", auth.get("pending", 0))
        yield _counter("arcus_auth_kdf_runs", "Password hashes computed (scrypt/argon2/...).", auth.get("kdf_runs", 0))
        yield _counter("arcus_auth_refused_busy", "Logins refused because the KDF pool was full.", auth.get("refused_busy", 0))
        yield _gauge("arcus_auth_throttled_keys", "Client addresses (IPv6: /64s) with failed logins being throttled.", auth.get("throttled_keys", 0))
        yield _gauge("arcus_auth_cached_credentials", "Verified credentials cached (no KDF run for them).", auth.get("cached", 0))


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def render(figures: Figures) -> bytes:
    """The Prometheus text of ``figures`` (call it off the event loop: it formats every series)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(figures))
    return generate_latest(registry)
