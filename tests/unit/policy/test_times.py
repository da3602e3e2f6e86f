"""Time windows: days, hours, crossing midnight, wrapping weeks, and the wall clock of a zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from arcus.policy.times import WindowError, describe_local, minute_of_week, parse_window

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


def at(window: str, when: datetime) -> bool:
    return minute_of_week(when) in parse_window(window)


def day(weekday: int, hour: int, minute: int = 0) -> datetime:
    """A time in the week of Monday 2024-05-06."""
    return datetime(2024, 5, 6, hour, minute, tzinfo=UTC) + timedelta(days=weekday)


def test_office_hours() -> None:
    w = "mon-fri 08:00-18:00"
    assert at(w, day(0, 8, 0))
    assert at(w, day(4, 17, 59))
    assert not at(w, day(4, 18, 0))  # end excluded
    assert not at(w, day(0, 7, 59))
    assert not at(w, day(5, 12, 0))


def test_days_only_and_lists() -> None:
    assert at("sat,sun", day(5, 0, 0)) and at("sat,sun", day(6, 23, 59))
    assert not at("sat,sun", day(0, 0, 0))
    assert at("MON,wed-thu", day(2, 3)) and not at("mon,wed-thu", day(1, 3))
    assert at("fri-mon", day(6, 12)) and at("fri-mon", day(0, 12)) and not at("fri-mon", day(1, 12))


def test_crossing_midnight_every_day() -> None:
    w = "22:00-06:00"
    assert at(w, day(2, 22, 0)) and at(w, day(2, 23, 59)) and at(w, day(3, 0, 0)) and at(w, day(3, 5, 59))
    assert not at(w, day(3, 6, 0)) and not at(w, day(3, 21, 59)) and not at(w, day(3, 12, 0))
    assert at(w, day(0, 1, 0))  # Monday morning comes from Sunday night


def test_crossing_midnight_belongs_to_the_start_day() -> None:
    w = "fri 22:00-02:00"
    assert at(w, day(4, 23, 0))
    assert at(w, day(5, 1, 59))  # Saturday morning
    assert not at(w, day(5, 2, 0))
    assert not at(w, day(4, 1, 0))  # Friday morning belongs to Thursday night
    assert not at(w, day(5, 23, 0))
    assert at("sun 22:00-02:00", day(0, 1, 0))  # wraps into next Monday


def test_several_hour_ranges_and_24() -> None:
    w = "mon 08:00-12:00,13:00-24:00"
    assert at(w, day(0, 11, 59)) and not at(w, day(0, 12, 30)) and at(w, day(0, 23, 59))
    assert not at(w, day(1, 0, 0))
    assert at("7:30-9:00", day(3, 7, 30))


def test_dst_wall_clock_in_paris() -> None:
    w = "mon-fri 08:00-18:00"
    winter = datetime(2024, 1, 15, 6, 30, tzinfo=UTC)  # Monday 07:30 CET: before opening
    summer = datetime(2024, 7, 15, 6, 30, tzinfo=UTC)  # Monday 08:30 CEST: open
    assert not at(w, winter.astimezone(PARIS))
    assert at(w, summer.astimezone(PARIS))
    # Spring forward (Sunday 2024-03-31 02:00 -> 03:00): 01:15 UTC is 03:15 local.
    assert at("sun 03:00-04:00", datetime(2024, 3, 31, 1, 15, tzinfo=UTC).astimezone(PARIS))
    assert not at("sun 03:00-04:00", datetime(2024, 3, 31, 0, 59, tzinfo=UTC).astimezone(PARIS))
    # Fall back (Sunday 2024-10-27 03:00 -> 02:00): 02:30 local happens twice, both inside.
    first = datetime(2024, 10, 27, 0, 30, tzinfo=UTC).astimezone(PARIS)
    second = datetime(2024, 10, 27, 1, 30, tzinfo=UTC).astimezone(PARIS)
    assert describe_local(first) == describe_local(second) == "Sun 02:30"
    assert at("sun 02:00-03:00", first) and at("sun 02:00-03:00", second)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty window"),
        ("mon-fry", "bad days 'mon-fry' in window 'mon-fry'"),
        ("monday", "bad days 'monday' in window 'monday'"),
        ("mon,,fri", "bad days 'mon,,fri' in window 'mon,,fri'"),
        ("mon-fri 8-18", "bad hours '8-18' in window 'mon-fri 8-18'"),
        ("25:00-26:00", "bad time 25:00 in window '25:00-26:00'"),
        ("08:60-09:00", "bad time 08:60 in window '08:60-09:00'"),
        ("24:00-06:00", "bad time 24:00 in window '24:00-06:00'"),
        ("08:00-08:00", "empty hours '08:00-08:00' in window '08:00-08:00'"),
        ("00:00-24:00", "empty hours '00:00-24:00' in window '00:00-24:00'"),
        ("08:00-18:00 mon-fri", "bad window '08:00-18:00 mon-fri': days come first, once"),
        ("mon 08:00-09:00 tue", "bad window 'mon 08:00-09:00 tue': at most days then hours"),
    ],
)
def test_bad_windows(text: str, message: str) -> None:
    with pytest.raises(WindowError) as info:
        parse_window(text)
    assert str(info.value) == message
    assert info.value.hint
