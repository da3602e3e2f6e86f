"""The profile's plain sections: ``timeouts``, ``limits``, ``log``, ``runtime``, ``audit``, ``metrics``.

``timeouts`` and ``limits`` appear at the top level (defaults for every server) and inside a
server (overriding those defaults key by key), so both are parsed against a base value.
Every key is a field of the schema dataclass of the same name; defaults live in ``schema.py``.
"""

from __future__ import annotations

from dataclasses import fields, replace

from arcus.config.schema import AuditConfig, HttpLimits, LogConfig, MetricsConfig, RuntimeConfig, Timeouts
from arcus.config.yamlnodes import (
    Reader,
    Section,
    read_address,
    read_bandwidth,
    read_bool,
    read_choice,
    read_duration,
    read_int,
    read_rate,
    read_size,
    read_str,
)

TIMEOUT_KEYS = tuple(f.name for f in fields(Timeouts))
LIMIT_READERS: dict[str, Reader[int]] = {
    "max_request_line": read_size,
    "max_header_bytes": read_size,
    "max_headers": read_int(1),
    "max_pool_per_host": read_int(0),  # 0 turns upstream keep-alive pooling off
}
LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_timeouts(parent: Section, base: Timeouts) -> Timeouts:
    sec = parent.section("timeouts", TIMEOUT_KEYS)
    if sec is None:
        return base
    changes = {key: sec.take(key, read_duration, getattr(base, key)) for key in TIMEOUT_KEYS}
    sec.finish()
    parent.ok = parent.ok and sec.ok
    return replace(base, **changes)


def parse_limits(parent: Section, base: HttpLimits) -> HttpLimits:
    sec = parent.section("limits", tuple(LIMIT_READERS))
    if sec is None:
        return base
    changes = {key: sec.take(key, reader, getattr(base, key)) for key, reader in LIMIT_READERS.items()}
    result = replace(base, **changes)
    # Cross-field: the request line is part of the head, so it cannot be allowed to be longer.
    if sec.ok and (sec.has("max_request_line") or sec.has("max_header_bytes")):
        if result.max_request_line > result.max_header_bytes:
            key = "max_request_line" if sec.has("max_request_line") else "max_header_bytes"
            sec.error(
                f"max_request_line ({result.max_request_line}) cannot exceed max_header_bytes "
                f"({result.max_header_bytes}), which counts the request line too",
                sec.value_line(key),
            )
    sec.finish()
    parent.ok = parent.ok and sec.ok
    return result


def parse_log(parent: Section) -> LogConfig:
    base = LogConfig()
    sec = parent.section("log", ("level", "target", "access"))
    if sec is None:
        return base
    config = LogConfig(
        level=sec.take("level", read_choice(LOG_LEVELS), base.level),
        target=sec.take("target", read_str, base.target),  # "stderr" or a file path
        access=sec.take("access", read_bool, base.access),
    )
    sec.finish()
    parent.ok = parent.ok and sec.ok
    return config


def parse_runtime(parent: Section) -> RuntimeConfig:
    base = RuntimeConfig()
    sec = parent.section("runtime", ("graceful_timeout", "max_connections", "rps", "bandwidth"))
    if sec is None:
        return base
    config = RuntimeConfig(
        graceful_timeout=sec.take("graceful_timeout", read_duration, base.graceful_timeout),
        max_connections=sec.take("max_connections", read_int(1), base.max_connections),
        rps=sec.take("rps", read_rate, base.rps),
        bandwidth=sec.take("bandwidth", read_bandwidth, base.bandwidth),
    )
    sec.finish()
    parent.ok = parent.ok and sec.ok
    return config


def parse_audit(parent: Section) -> AuditConfig:
    base = AuditConfig()
    keys = ("enabled", "retention", "max_size", "queue", "batch", "flush_interval")
    sec = parent.section("audit", keys)
    if sec is None:
        return base
    config = AuditConfig(
        enabled=sec.take("enabled", read_bool, base.enabled),
        retention=sec.take("retention", read_duration, base.retention),
        max_size=sec.take("max_size", read_size, base.max_size),
        queue=sec.take("queue", read_int(1), base.queue),
        batch=sec.take("batch", read_int(1), base.batch),
        flush_interval=sec.take("flush_interval", read_duration, base.flush_interval),
    )
    sec.finish()
    parent.ok = parent.ok and sec.ok
    return config


def parse_metrics(parent: Section) -> MetricsConfig:
    """``metrics: {listen: 127.0.0.1:9090, max_users: 100}``; no section: no listener."""
    base = MetricsConfig()
    sec = parent.section("metrics", ("listen", "max_users"))
    if sec is None:
        return base
    config = MetricsConfig(
        listen=sec.need("listen", read_address),
        max_users=sec.take("max_users", read_int(0), base.max_users),
        line=sec.line,
    )
    sec.finish()
    parent.ok = parent.ok and sec.ok
    return config
