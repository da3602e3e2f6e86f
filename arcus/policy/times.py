"""Time windows: "mon-fri 08:00-18:00", "sat,sun", "22:00-06:00", in a named time zone.

A window has days, hours, or both. Days are ``mon tue wed thu fri sat sun`` as single days,
ranges (``mon-fri``; ``fri-mon`` wraps over the weekend) or comma lists. Hours are
``HH:MM-HH:MM`` (comma lists allowed), start included, end excluded; ``24:00`` may end a range.
A range whose end is before its start crosses midnight and belongs to the day it starts on:
``fri 22:00-02:00`` is Friday 22:00 to Saturday 02:00.

Windows are read on the local wall clock of the rule's zone (``zoneinfo``), so "08:00" means
08:00 in Paris in winter and in summer alike. Each window compiles to intervals of minutes of
the week (Monday 00:00 = 0), merged and searched with ``bisect``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEK = 7 * 1440

_HOURS = re.compile(r"([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})\Z")
WINDOW_HINT = "write days and/or hours, e.g. 'mon-fri 08:00-18:00', 'sat,sun' or '22:00-06:00'"


class WindowError(ValueError):
    def __init__(self, message: str, hint: str = WINDOW_HINT) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True, slots=True)
class TimeWindow:
    text: str
    starts: tuple[int, ...]  # merged, sorted intervals of minutes of the week
    ends: tuple[int, ...]

    def __contains__(self, minute_of_week: int) -> bool:
        i = bisect.bisect_right(self.starts, minute_of_week) - 1
        return i >= 0 and minute_of_week < self.ends[i]


def _days(text: str, window: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        first, dash, last = part.partition("-")
        try:
            a = DAYS.index(first.strip().lower())
            b = DAYS.index(last.strip().lower()) if dash else a
        except ValueError:
            raise WindowError(f"bad days {text!r} in window {window!r}",
                              "days are mon tue wed thu fri sat sun, as 'mon-fri' or 'sat,sun'") from None
        out.append(a)
        while a != b:
            a = (a + 1) % 7
            out.append(a)
    return out


def _minute(hours: str, minutes: str, window: str, *, end: bool) -> int:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and (m or not end)):
        raise WindowError(f"bad time {hours}:{minutes} in window {window!r}",
                          "hours are 00:00 to 23:59; 24:00 may end a range")
    return h * 60 + m


def _hours(text: str, window: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        match = _HOURS.match(part.strip())
        if match is None:
            raise WindowError(f"bad hours {part.strip()!r} in window {window!r}",
                              "write hours as HH:MM-HH:MM, e.g. 08:00-18:00 or 22:00-06:00")
        start = _minute(match[1], match[2], window, end=False)
        stop = _minute(match[3], match[4], window, end=True)
        if start == stop % 1440:
            raise WindowError(f"empty hours {part.strip()!r} in window {window!r}",
                              "for the whole day leave the hours out, e.g. 'sat,sun'")
        out.append((start, stop))
    return out


def parse_window(text: str) -> TimeWindow:
    if not isinstance(text, str):
        raise WindowError(f"expected text, got {type(text).__name__}")
    words = text.split()
    if not words:
        raise WindowError("empty window")
    if len(words) > 2:
        raise WindowError(f"bad window {text!r}: at most days then hours")
    days: list[int] | None = None
    hours: list[tuple[int, int]] | None = None
    for word in words:
        if ":" in word or any(c.isdigit() for c in word):
            if hours is not None:
                raise WindowError(f"bad window {text!r}: hours given twice")
            hours = _hours(word, text)
        else:
            if days is not None or hours is not None:
                raise WindowError(f"bad window {text!r}: days come first, once")
            days = _days(word, text)
    day_list = days if days is not None else list(range(7))
    spans = hours if hours is not None else [(0, 1440)]
    intervals: list[tuple[int, int]] = []
    for day in day_list:
        base = day * 1440
        for start, stop in spans:
            if start < stop:
                intervals.append((base + start, base + stop))
            else:  # crosses midnight: the rest of this day, then the next morning
                intervals.append((base + start, base + 1440))
                nxt = ((day + 1) % 7) * 1440
                intervals.append((nxt, nxt + stop))
    starts, ends = _merge(intervals)
    return TimeWindow(text.strip(), starts, ends)


def _merge(intervals: Iterable[tuple[int, int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    starts: list[int] = []
    ends: list[int] = []
    for start, stop in sorted(intervals):
        if stop <= start:
            continue
        if ends and start <= ends[-1]:
            ends[-1] = max(ends[-1], stop)
        else:
            starts.append(start)
            ends.append(stop)
    return tuple(starts), tuple(ends)


def minute_of_week(local: datetime) -> int:
    return local.weekday() * 1440 + local.hour * 60 + local.minute


def describe_local(local: datetime) -> str:
    return f"{DAY_NAMES[local.weekday()]} {local.hour:02d}:{local.minute:02d}"
