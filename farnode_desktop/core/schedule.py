"""Weekly schedule windows (``"mon-fri 22:00-07:00"``): parsed into minute-of-week intervals.

Standard library only: the settings check a window when they are loaded, the policies test the clock
against the windows on every tick.
"""

from __future__ import annotations

import re
from datetime import datetime

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_ALIASES = {d: i for i, d in enumerate(_DAYS)} | {
    full: i for i, full in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
}
_WINDOW_RE = re.compile(r"^\s*(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")
WEEK_MIN = 7 * 1440


class ScheduleError(ValueError):
    """A schedule window string that cannot be read (the message says how to write it)."""


def _parse_day(token: str, text: str) -> int:
    day = _DAY_ALIASES.get(token.strip().lower())
    if day is None:
        raise ScheduleError(f"schedule window {text!r}: {token!r} is not a day (use mon, tue, ... sun)")
    return day


def _parse_days(spec: str, text: str) -> list[int]:
    spec = spec.strip().lower()
    if spec in ("daily", "*", "all", "every"):
        return list(range(7))
    if spec in ("weekdays",):
        return list(range(5))
    if spec in ("weekends", "weekend"):
        return [5, 6]
    days: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            first, last = _parse_day(a, text), _parse_day(b, text)
            d = first
            while True:  # a range may wrap over the week's end: "fri-mon"
                days.append(d)
                if d == last:
                    break
                d = (d + 1) % 7
        else:
            days.append(_parse_day(part, text))
    return sorted(set(days))


def _parse_hhmm(s: str, text: str) -> int:
    h, m = (int(x) for x in s.split(":"))
    if m > 59 or h > 24 or (h == 24 and m != 0):
        raise ScheduleError(f"schedule window {text!r}: {s!r} is not a time of day (00:00 to 24:00)")
    return h * 60 + m


def parse_window(text: str) -> list[tuple[int, int]]:
    """Parse ``"<days> HH:MM-HH:MM"`` into minute-of-week intervals ``[start, end)``.

    Days: ``mon``, ``mon-fri``, ``sat,sun``, ``fri-mon`` (wraps), ``daily``, ``weekdays``, ``weekends``.
    An end before the start crosses midnight: ``"fri 22:00-02:00"`` is Friday 22:00 to Saturday 02:00,
    and ``"sun 23:00-01:00"`` ends on Monday 01:00 (the week wraps). ``00:00-24:00`` is the whole day.
    Minute 0 is Monday 00:00; an interval may end after :data:`WEEK_MIN` (it wraps to the week's start).
    """
    if not isinstance(text, str):
        raise ScheduleError(f"schedule window {text!r} is not text")
    m = _WINDOW_RE.match(text)
    if not m:
        raise ScheduleError(
            f"schedule window {text!r} is not of the form '<days> HH:MM-HH:MM', e.g. 'mon-fri 22:00-07:00'")
    days = _parse_days(m["days"], text)
    start, end = _parse_hhmm(m["start"], text), _parse_hhmm(m["end"], text)
    if start == end:
        raise ScheduleError(
            f"schedule window {text!r} starts and ends at the same time; use 00:00-24:00 for a whole day")
    if start == 1440:
        raise ScheduleError(f"schedule window {text!r} starts at 24:00; start at 00:00 of the next day")
    length = end - start if end > start else end + 1440 - start
    return [(d * 1440 + start, d * 1440 + start + length) for d in days]


def minute_of_week(dt: datetime) -> float:
    """Minutes since Monday 00:00 of ``dt``'s week (local wall clock)."""
    return dt.weekday() * 1440 + dt.hour * 60 + dt.minute + dt.second / 60 + dt.microsecond / 6e7


def in_windows(windows: list[tuple[int, int]], mow: float) -> bool:
    return any(a <= mow < b or a <= mow + WEEK_MIN < b for a, b in windows)
