"""The profile's ``metrics:`` section: absent means no listener; bad values say file:line."""

from __future__ import annotations

from pathlib import Path

from arcus.config import parse_profile
from arcus.config.schema import MetricsConfig
from tests.unit.config.test_loader import VALID, issues


def test_no_section_no_listener() -> None:
    assert parse_profile(VALID, "p.yaml").metrics == MetricsConfig()
    assert MetricsConfig().listen is None


def test_listen_and_max_users() -> None:
    profile = parse_profile(VALID + "metrics:\n  listen: '[::1]:9090'\n  max_users: 5\n", "p.yaml")
    assert profile.metrics.listen == ("::1", 9090)
    assert profile.metrics.max_users == 5
    assert profile.metrics.line == 16  # the listen: line, which a bind error names


def test_errors_name_the_line(tmp_path: Path) -> None:
    assert issues(tmp_path, VALID + "metrics:\n  listen: nowhere\n") == [
        'P:16: metrics: listen: invalid address "nowhere"; write "host:port" with an IP address or localhost, '
        'e.g. "127.0.0.1:3128" or "[::1]:3128"'
    ]
    assert issues(tmp_path, VALID + "metrics:\n  listen: 127.0.0.1:9090\n  max_users: -1\n  colour: red\n") == [
        'P:17: metrics: max_users: expected a whole number, got "-1"',
        'P:18: metrics: unknown key "colour"; known keys: listen, max_users, statsd',
    ]
    assert issues(tmp_path, VALID + "metrics:\n  max_users: 3\n") == [
        'P:16: metrics: give "listen" (the /metrics listener), "statsd" (a StatsD target) or both'
    ]


def test_statsd_section() -> None:
    from arcus.config.schema import StatsdConfig

    profile = parse_profile(VALID + "metrics:\n  statsd:\n    target: 127.0.0.1:8125\n    interval: 500ms\n    prefix: arcus.edge-1\n", "p.yaml")
    assert profile.metrics.listen is None
    assert profile.metrics.statsd == StatsdConfig(target=("127.0.0.1", 8125), interval=0.5, prefix="arcus.edge-1")


def test_statsd_errors_name_the_line(tmp_path: Path) -> None:
    bad = VALID + "metrics:\n  statsd:\n    target: 127.0.0.1:8125\n    interval: 50ms\n    prefix: 'a..b'\n    max_packet: 70000\n    port: 1\n"
    assert issues(tmp_path, bad) == [
        "P:18: metrics: statsd: interval: must be between 0.1s and 3600s",
        'P:19: metrics: statsd: prefix: invalid prefix "a..b"; write letters, digits, "_" and "-" in words joined by dots, e.g. "arcus.edge1"',
        "P:20: metrics: statsd: max_packet: must be at most 65507 (the largest UDP datagram)",
        'P:21: metrics: statsd: unknown key "port"; known keys: target, interval, prefix, max_packet',
    ]
    assert issues(tmp_path, VALID + "metrics:\n  statsd:\n    interval: 1s\n") == ['P:17: metrics: statsd: missing key "target"']
