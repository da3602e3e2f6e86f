"""The profile's plain sections: ``timeouts``, ``limits``, ``log``, ``runtime``, ``audit``, ``metrics``.

``timeouts`` and ``limits`` appear at the top level (defaults for every server) and inside a
server (overriding those defaults key by key), so both are parsed against a base value.
Every key is a field of the schema dataclass of the same name; defaults live in ``schema.py``.
"""

from __future__ import annotations

import re
from dataclasses import fields, replace

from yaml.nodes import MappingNode, ScalarNode

from arcus.config.schema import AuditConfig, HttpLimits, LogConfig, MetricsConfig, RuntimeConfig, StatsdConfig, Timeouts
from arcus.config.yamlnodes import (
    Reader,
    Section,
    join_where,
    line_of,
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
from arcus.names import is_valid_name

TIMEOUT_KEYS = tuple(f.name for f in fields(Timeouts))
LIMIT_READERS: dict[str, Reader[int]] = {
    "max_request_line": read_size,
    "max_header_bytes": read_size,
    "max_headers": read_int(1),
    "max_pool_per_host": read_int(0),  # 0 turns upstream keep-alive pooling off
}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
MIN_LOG_SIZE = 64 * 1024


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
    sec = parent.section("log", ("level", "target", "access", "format", "max_size", "backups", "tenants"))
    if sec is None:
        return base
    config = LogConfig(
        level=sec.take("level", read_choice(LOG_LEVELS), base.level),
        target=sec.take("target", read_str, base.target),  # "stderr" or a file path
        access=sec.take("access", read_bool, base.access),
        format=sec.take("format", read_choice(LOG_FORMATS), base.format),
        max_size=sec.take("max_size", read_size, base.max_size),
        backups=sec.take("backups", read_int(1), base.backups),
        tenants=_tenant_levels(sec),
    )
    if config.max_size is not None and config.max_size < MIN_LOG_SIZE:
        sec.error(f"must be at least {MIN_LOG_SIZE // 1024}KiB", sec.value_line("max_size"), key="max_size")
    if sec.ok and config.target == "stderr":
        for key in ("max_size", "backups"):
            if sec.has(key):
                sec.error(f"{key} applies to a log file; target is stderr (which the journal rotates)", sec.key_line(key))
    sec.finish()
    parent.ok = parent.ok and sec.ok
    return config


def _tenant_levels(log: Section) -> tuple[tuple[str, str], ...]:
    """``tenants: {acme: debug, school: warning}``: names checked as tenant names, levels as ``level``."""
    node = log.value_node("tenants")
    if node is None:
        return ()
    if not isinstance(node, MappingNode):
        log.error("expected a mapping of tenant names to levels, e.g. {acme: debug}", log.value_line("tenants"), key="tenants")
        return ()
    sec = Section(node, log.issues, join_where(log.where, "tenants"), ())
    out: list[tuple[str, str]] = []
    for key_node, value_node in node.value:
        name = key_node.value if isinstance(key_node, ScalarNode) else ""
        if not is_valid_name(name):
            sec.error(f'invalid tenant name "{name}"; use letters, digits, ".", "_" and "-"', line_of(key_node))
            continue
        good, level = sec.read(name, read_choice(LOG_LEVELS), value_node)
        if good and level is not None:
            out.append((name, level))
    log.ok = log.ok and sec.ok
    return tuple(sorted(out))


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


STATSD_MIN_INTERVAL = 0.1
STATSD_MAX_INTERVAL = 3600.0


def parse_metrics(parent: Section) -> MetricsConfig:
    """``metrics: {listen: 127.0.0.1:9090, max_users: 100, statsd: {...}}``; no section: neither.

    A section needs ``listen``, ``statsd`` or both."""
    base = MetricsConfig()
    sec = parent.section("metrics", ("listen", "max_users", "statsd"))
    if sec is None:
        return base
    listen = sec.take("listen", read_address, None)
    max_users = sec.take("max_users", read_int(0), base.max_users)
    statsd = parse_statsd(sec)
    if sec.ok and listen is None and statsd is None:
        sec.error('give "listen" (the /metrics listener), "statsd" (a StatsD target) or both')
    config = MetricsConfig(listen=listen, statsd=statsd, max_users=max_users, line=sec.line)
    sec.finish()
    parent.ok = parent.ok and sec.ok
    return config


def parse_statsd(parent: Section) -> StatsdConfig | None:
    sec = parent.section("statsd", ("target", "interval", "prefix", "max_packet"))
    if sec is None:
        return None
    defaults = StatsdConfig(target=("127.0.0.1", 8125))
    target = sec.need("target", read_address)
    interval = sec.take("interval", read_duration, defaults.interval)
    if sec.has("interval") and not STATSD_MIN_INTERVAL <= interval <= STATSD_MAX_INTERVAL:
        sec.error(f"must be between {STATSD_MIN_INTERVAL:g}s and {STATSD_MAX_INTERVAL:g}s", sec.value_line("interval"), key="interval")
    prefix = sec.take("prefix", read_str, defaults.prefix)
    if sec.has("prefix") and not _PREFIX.fullmatch(prefix):
        sec.error(f'invalid prefix "{prefix}"; write letters, digits, "_" and "-" in words joined by dots, e.g. "arcus.edge1"',
                  sec.value_line("prefix"), key="prefix")
    max_packet = sec.take("max_packet", read_int(512), defaults.max_packet)
    if max_packet > 65507:
        sec.error("must be at most 65507 (the largest UDP datagram)", sec.value_line("max_packet"), key="max_packet")
    sec.finish()
    parent.ok = parent.ok and sec.ok
    if not sec.ok or target is None:
        return None
    return StatsdConfig(target=target, interval=interval, prefix=prefix, max_packet=max_packet)


_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
