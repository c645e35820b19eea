"""Virtual clock and fixed local time zone (UTC+2, no DST) for the policy tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

TZ = timezone(timedelta(hours=2))
# Monday 2024-01-01 12:00 local time (UTC+2).
MONDAY_NOON = datetime(2024, 1, 1, 12, 0, tzinfo=TZ).timestamp()


def local_time(t: float) -> datetime:
    return datetime.fromtimestamp(t, TZ)


def at(weekday: int, hhmm: str) -> float:
    """Epoch seconds of ``weekday`` (0 = Monday) at ``hhmm`` local time in the test week."""
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime(2024, 1, 1 + weekday, h, m, tzinfo=TZ).timestamp()


class VirtualClock:
    """A clock that only moves when told to."""

    def __init__(self, t: float = MONDAY_NOON):
        self.t = float(t)

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> float:
        self.t += s
        return self.t

    def set(self, t: float) -> float:
        self.t = float(t)
        return self.t
