"""Today's totals, as the dashboard shows them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from farnode_desktop.core.metrics.store import MetricsStore


@dataclass(frozen=True)
class TodaySummary:
    """Totals since local midnight (tokens and requests served; earnings in reward tokens, or None)."""

    tokens: float
    requests: float
    earnings: float | None


def local_midnight(now: float) -> float:
    """Epoch seconds of the last local midnight before ``now``."""
    d = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return d.timestamp()


def today(store: MetricsStore, now: float) -> TodaySummary:
    """Tokens, requests and earnings since local midnight (SQLite reads, milliseconds)."""
    t0 = local_midnight(now)
    tokens = store.tokens_served_between(t0, now + 1)
    requests = store.sum_between("requests", t0, now + 1)
    earnings = None
    if store.series_names("earnings.total"):
        day = store.daily_totals("earnings.total", 1, how="increase")
        earnings = day[-1][1] if day else 0.0
    return TodaySummary(tokens, requests, earnings)
