"""Value parsers: durations, sizes, listen addresses, CIDRs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arcus.config.values import (
    format_addr,
    format_duration,
    parse_cidr,
    parse_duration,
    parse_listen,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("500ms", 0.5), ("5m", 300.0), ("1h", 3600.0), ("10", 10.0), ("1.5", 1.5), ("2.5s", 2.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5x", "-1", "1w", "1m30s", "5 s", "1e3", "inf", "nan", "0x10"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "0s", "0.0ms"])
def test_zero_duration(text: str) -> None:
    with pytest.raises(ValueError, match=f'duration must be greater than 0, got "{text}"'):
        parse_duration(text)


@given(st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False))
def test_format_duration_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-12)


def test_format_duration_spelling() -> None:
    assert [format_duration(s) for s in (30.0, 0.5, 0.001, 1.5, 300.0)] == ["30s", "500ms", "1ms", "1.5s", "300s"]


@pytest.mark.parametrize(
    ("text", "size"), [("8192", 8192), ("64KiB", 65536), ("1MiB", 1 << 20), ("2GiB", 2 << 30), ("10B", 10)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["64KB", "1M", "1.5MiB", "-1", "", "KiB", "64 KiB"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        ("127.0.0.1:3128", ("127.0.0.1", 3128)),
        ("[::1]:3128", ("::1", 3128)),
        ("[0:0::1]:0", ("::1", 0)),
        ("localhost:80", ("localhost", 80)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
    ],
)
def test_listen(text: str, addr: tuple[str, int]) -> None:
    assert parse_listen(text) == addr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3128", 'invalid address "3128"'),
        (":3128", 'invalid address ":3128"'),
        ("127.0.0.1", 'invalid address "127.0.0.1"'),
        ("::1:3128", "write IPv6 addresses in brackets"),
        ("[::1]", 'invalid address "\\[::1\\]"'),
        ("[::1]3128", 'invalid address "\\[::1\\]3128"'),
        ("[127.0.0.1]:1", "in brackets is not an IPv6 address"),
        ("example.com:80", 'host "example.com" is not an IP address or localhost'),
        ("127.0.0.1:65536", "port 65536 out of range 0-65535"),
        ("127.0.0.1:-1", 'invalid port "-1"'),
        ("127.0.0.1:", 'invalid port ""'),
        ("127.0.0.1:٣", 'invalid port "٣"'),
    ],
)
def test_bad_listen(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_listen(text)


def test_format_addr_reads_back() -> None:
    for addr in (("127.0.0.1", 1), ("::1", 2), ("localhost", 3)):
        assert parse_listen(format_addr(*addr)) == addr


def test_cidr() -> None:
    assert parse_cidr("10.1.2.3/8") == "10.0.0.0/8"
    assert parse_cidr("fd00::1/8") == "fd00::/8"
    assert parse_cidr("192.0.2.1") == "192.0.2.1/32"
    with pytest.raises(ValueError, match='"10.0.0.0/33" is not a CIDR network'):
        parse_cidr("10.0.0.0/33")
