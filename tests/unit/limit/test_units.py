"""Parsing operator values: exact results and exact error messages."""

from __future__ import annotations

import pytest

from arcus.errors import OperatorError
from arcus.limit import format_bandwidth, parse_bandwidth, parse_count, parse_rate
from arcus.units import BANDWIDTH_HINT


@pytest.mark.parametrize(
    ("text", "value"),
    [("200", 200.0), ("12.5", 12.5), (" 200/s ", 200.0), ("5rps", 5.0), (".5", 0.5),
     ("unlimited", None), ("None", None), ("off", None)],
)
def test_parse_rate(text: str, value: float | None) -> None:
    assert parse_rate(text) == value


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("fast", "invalid request rate 'fast'", "give requests per second as a number, e.g. 200 or 12.5, or 'unlimited'"),
        ("-5", "invalid request rate '-5'", "give requests per second as a number, e.g. 200 or 12.5, or 'unlimited'"),
        ("1e3", "invalid request rate '1e3'", "give requests per second as a number, e.g. 200 or 12.5, or 'unlimited'"),
        ("0", "invalid request rate '0': it must be more than 0",
         "use 'unlimited' to remove the limit, or suspend the tenant to stop its traffic"),
    ],
)
def test_parse_rate_errors(text: str, message: str, hint: str) -> None:
    with pytest.raises(OperatorError) as info:
        parse_rate(text)
    assert (info.value.code, info.value.message, info.value.hint) == ("invalid", message, hint)


def test_parse_count() -> None:
    assert parse_count("500") == 500
    assert parse_count("unlimited") is None
    for bad, message in [("5.5", "invalid connection limit '5.5'"), ("0", "invalid connection limit '0': it must be more than 0"),
                         ("\u0665", "invalid connection limit '\u0665'")]:
        with pytest.raises(OperatorError) as info:
            parse_count(bad)
        assert info.value.message == message


@pytest.mark.parametrize(
    ("text", "bytes_per_s"),
    [
        ("50M", 6_250_000.0),  # bare suffix: megabits
        ("50Mbit", 6_250_000.0),
        ("50mbit", 6_250_000.0),
        ("50 Mbps", 6_250_000.0),
        ("50Mbit/s", 6_250_000.0),
        ("50MB", 50_000_000.0),
        ("50MB/s", 50_000_000.0),
        ("50MiB", 50 * 2**20),
        ("8Mi", 2**20),
        ("1G", 125_000_000.0),
        ("100k", 12_500.0),
        ("100K", 12_500.0),
        ("8000", 1000.0),  # no unit at all: bits per second
        ("1000bytes/s", 1000.0),
        ("1.5kB", 1500.0),
        ("unlimited", None),
    ],
)
def test_parse_bandwidth(text: str, bytes_per_s: float | None) -> None:
    assert parse_bandwidth(text) == bytes_per_s


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("50Mb", "ambiguous bandwidth '50Mb': lowercase 'b' may mean bits or bytes"),
        ("50mb", "ambiguous bandwidth '50mb': lowercase 'b' may mean bits or bytes"),
        ("50X", "invalid bandwidth '50X': unknown unit 'X'"),
        ("50Mbytez", "invalid bandwidth '50Mbytez': unknown unit 'bytez'"),
        ("fast", "invalid bandwidth 'fast'"),
        ("-50M", "invalid bandwidth '-50M'"),
        ("0M", "invalid bandwidth '0M': it must be more than 0"),
    ],
)
def test_parse_bandwidth_errors_show_both_forms(text: str, message: str) -> None:
    with pytest.raises(OperatorError) as info:
        parse_bandwidth(text)
    assert info.value.message == message
    if not message.endswith("more than 0"):
        assert info.value.hint == BANDWIDTH_HINT
        assert "50Mbit" in BANDWIDTH_HINT and "50MB" in BANDWIDTH_HINT


@pytest.mark.parametrize(
    ("bytes_per_s", "text"),
    [(6_250_000.0, "50Mbit/s"), (125_000_000.0, "1Gbit/s"), (12_500.0, "100kbit/s"), (10.0, "80bit/s"), (None, "unlimited")],
)
def test_format_bandwidth_round_trips(bytes_per_s: float | None, text: str) -> None:
    assert format_bandwidth(bytes_per_s) == text
    assert parse_bandwidth(text) == bytes_per_s
