"""Reading the metrics history: charts' buckets, totals over a range, daily totals, events and CSV export.

:class:`MetricsQueries` is the read side of :class:`~farnode_desktop.core.metrics.store.MetricsStore`: plain SQL
over the store's tables (:data:`LEVELS`), through the store's ``_read`` (a per-thread read-only connection that
survives the file being replaced). Everything here reads; the store writes.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

from farnode_desktop.core import snapshots as c
from farnode_desktop.core.atomic import atomic_write_text
from farnode_desktop.core.errors import FarNodeError

RAW_KEEP_S = 48 * 3600
MINUTE_KEEP_S = 90 * 86400
#: (resolution in seconds, table, how long it is kept or None for good), finest first.
LEVELS: tuple[tuple[int, str, int | None], ...] = (
    (1, "raw", RAW_KEEP_S),
    (60, "roll_1m", MINUTE_KEEP_S),
    (3600, "roll_1h", None),
)

TOKEN_SERIES = ("tokens_inference_per_s", "tokens_forward_per_s", "tokens_backward_per_s")
#: Amount series are read up to this many seconds before now: the recorder spreads a node's counters over the
#: seconds since its previous stats (about one a second), so the newest seconds are still filling in.
AMOUNTS_SETTLE_S = 3
#: The series whose rows say "a node was running and the app recorded it": the recorder writes it with every
#: node's stats (about once a second while a server runs) and at every state change. Amount series read as 0
#: only near its rows; elsewhere (before the app existed, while it was closed or no node ran) there is no data.
NODE_COVERAGE = "node_state"
#: A row of the coverage series vouches for this many seconds after its bucket (stats come about once a second;
#: a node whose stats are older than this no longer counts, see the recorder's STALE_NODE_S).
COVERAGE_SLACK_S = 10


class MetricsStoreError(FarNodeError):
    title = "Metrics history problem"


class Bucket(NamedTuple):
    """One point of a chart: ``t`` is the bucket's start (epoch s); mean/min/max of the values in it."""

    t: float
    mean: float
    min: float
    max: float


class MetricsQueries:
    """The read side of the store: it needs ``_read(sql, params)`` and ``clock``."""

    clock: Callable[[], float]  # epoch seconds: decides which levels still hold data

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        raise NotImplementedError

    def _lookup(self, series: str) -> int | None:
        rows = self._read("SELECT id FROM series WHERE name = ?", (series,))
        return rows[0][0] if rows else None

    def series_names(self, prefix: str = "") -> list[str]:
        """Names of all series stored so far (committed), sorted, optionally only those with ``prefix``."""
        return sorted(n for (n,) in self._read("SELECT name FROM series") if n.startswith(prefix))

    def first_time(self, series: str) -> float | None:
        """Epoch seconds of the oldest stored value of ``series`` (at the finest resolution left)."""
        sid = self._lookup(series)
        if sid is None:
            return None
        first: float | None = None
        for res, table, _ in LEVELS:  # finest first: a coarser bucket's start is older than its first value
            rows = self._read(f"SELECT min(t) FROM {table} WHERE series_id = ?", (sid,))
            t = rows[0][0] if rows else None
            if t is not None and (first is None or t + res <= first):  # older than what finer tables hold
                first = float(t)
        return first

    def _level_for(self, start: float, want: float, span: float = 0.0, max_points: int = 0) -> tuple[int, str]:
        """The coarsest table that still holds data at ``start`` and either is at least as fine as a
        bucket of ``want`` seconds or still gives at least ``max_points / 2`` buckets over ``span``."""
        now = self.clock()
        available = [(r, table) for r, table, keep in LEVELS if keep is None or start >= now - keep]
        usable = [lvl for lvl in available if lvl[0] <= want or (max_points and span / lvl[0] >= max_points / 2)]
        return max(usable) if usable else min(available)

    def bucket_seconds(self, start: float, end: float, max_points: int = 1000) -> int:
        """The width of the buckets :meth:`query` returns for this window (two neighbours further apart
        than this have a gap between them)."""
        want = (end - start) / max(1, max_points)
        res, _table = self._level_for(start, want, end - start, max_points)
        return max(res, int(math.ceil(want / res)) * res)

    def query(self, series: str, start: float, end: float, max_points: int = 1000, *,
              amounts: bool = False, covered_by: str | None = None) -> list[Bucket]:
        """Between ``max_points / 2`` and ``max_points`` buckets (when the data allows) covering
        ``[start, end)`` (epoch s), oldest first.

        Reads the coarsest table (raw / 1-minute / 1-hour) that still holds data at ``start`` and either
        is as fine as a bucket or still gives at least half of ``max_points`` (so 30 days read 720 hour
        rows, not 43,200 minute rows); bucket widths are multiples of that table's resolution, aligned to
        the epoch, so mean/min/max are exact. Empty buckets are left out (gaps).

        ``amounts``: the series holds amounts per second (tokens served in that second; the recorder writes
        no row for a second without any), so a second without a row is 0: every bucket up to the present
        is returned, its mean the bucket's total over its seconds (a true average rate), its min 0 when
        any of its seconds had nothing. The last :data:`AMOUNTS_SETTLE_S` seconds, still being recorded,
        are left out. With ``covered_by`` (e.g. :data:`NODE_COVERAGE`), a bucket without an amount counts as 0
        only where that series has a row within :data:`COVERAGE_SLACK_S` before it: elsewhere nothing was
        recorded, and the bucket is left out (a gap, not a 0 that reads as downtime)."""
        if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
            raise MetricsStoreError(f"Invalid time range {start!r}..{end!r}: the end must be after the start.")
        if max_points < 1:
            raise MetricsStoreError("max_points must be at least 1.")
        sid = self._lookup(series)
        if sid is None:
            return []
        want = (end - start) / max_points
        res, table = self._level_for(start, want, end - start, max_points)
        bucket = max(res, int(math.ceil(want / res)) * res)
        lo = int(math.floor(start)) // res * res
        hi = int(math.ceil(end))
        if amounts:
            return self._query_amounts(sid, table, res, bucket, lo, min(hi, int(self.clock()) - AMOUNTS_SETTLE_S),
                                       covered_by)
        if bucket == res:  # one stored row per bucket: no grouping needed
            cols = "t, v, v, v" if table == "raw" else "t, sum / n, min, max"
            rows = self._read(f"SELECT {cols} FROM {table} WHERE series_id = ? AND t >= ? AND t < ? ORDER BY t",
                              (sid, lo, hi))
            return [Bucket(float(t), mean, mn, mx) for t, mean, mn, mx in rows]
        if table == "raw":
            sql = ("SELECT t / ? AS b, avg(v), min(v), max(v) FROM raw "
                   "WHERE series_id = ? AND t >= ? AND t < ? GROUP BY b ORDER BY b")
        else:
            sql = (f"SELECT t / ? AS b, sum(sum) / sum(n), min(min), max(max) FROM {table} "
                   "WHERE series_id = ? AND t >= ? AND t < ? GROUP BY b ORDER BY b")
        return [Bucket(float(b * bucket), mean, mn, mx) for b, mean, mn, mx in self._read(sql, (bucket, sid, lo, hi))]

    def _covered(self, series: str | None, table: str, res: int, lo: int, hi: int) -> list[tuple[int, int]] | None:
        """Time spans ``[a, b)`` in ``[lo, hi)`` vouched for by rows of ``series`` in ``table`` (a row at ``t``
        covers its ``res`` seconds and :data:`COVERAGE_SLACK_S` after), merged, in order; None: no series
        given (everything counts)."""
        if series is None:
            return None
        sid = self._lookup(series)
        if sid is None:
            return []
        spans: list[tuple[int, int]] = []
        for (t,) in self._read(f"SELECT t FROM {table} WHERE series_id = ? AND t >= ? AND t < ? ORDER BY t",
                               (sid, lo - res - COVERAGE_SLACK_S, hi)):
            a, b = int(t), int(t) + res + COVERAGE_SLACK_S
            if spans and a <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], b))
            else:
                spans.append((a, b))
        return spans

    def _query_amounts(self, sid: int, table: str, res: int, bucket: int, lo: int, hi: int,
                       covered_by: str | None = None) -> list[Bucket]:
        """Buckets of a per-second amount series over ``[lo, hi)``, missing seconds counted as 0 (only inside
        the spans ``covered_by`` vouches for, when given)."""
        if hi <= lo:
            return []
        spans = self._covered(covered_by, table, res, lo, hi)
        starts = [a for a, _ in spans or ()]

        def covered(a: int, b: int) -> bool:
            if spans is None:
                return True
            i = bisect.bisect_left(starts, b) - 1  # the last span starting before the bucket ends
            return i >= 0 and spans[i][1] > a

        raw = table == "raw"
        sql = (f"SELECT t / ? AS b, sum({'v' if raw else 'sum'}), sum({'1' if raw else 'n'}), "
               f"min({'v' if raw else 'min'}), max({'v' if raw else 'max'}) FROM {table} "
               "WHERE series_id = ? AND t >= ? AND t < ? GROUP BY b")
        found = {int(b): (total, n, mn, mx) for b, total, n, mn, mx in self._read(sql, (bucket, sid, lo, hi))}
        out = []
        for b in range(lo // bucket, (hi - 1) // bucket + 1):
            seconds = min(hi, (b + 1) * bucket) - max(lo, b * bucket)
            if b not in found and not covered(b * bucket, (b + 1) * bucket):
                continue
            total, n, mn, mx = found.get(b, (0.0, 0, 0.0, 0.0))
            out.append(Bucket(float(b * bucket), total / seconds, mn if n >= seconds else min(mn, 0.0),
                              max(mx, 0.0)))
        return out

    def _sum_between(self, sid: int, t0: int, t1: int) -> float:
        """Sum of the values of ``sid`` with ``t0 <= t < t1``: whole hours from roll_1h, whole minutes
        from roll_1m, seconds from raw; where a finer table no longer holds data, the coarser bucket that
        starts inside the range is used."""
        now = self.clock()
        total = 0.0

        def table_sum(table: str, a: int, b: int) -> float:
            col = "v" if table == "raw" else "sum"
            rows = self._read(f"SELECT sum({col}) FROM {table} WHERE series_id = ? AND t >= ? AND t < ?",
                              (sid, a, b))
            return float(rows[0][0] or 0.0) if rows else 0.0

        def part(a: int, b: int, level: int) -> float:
            if a >= b:
                return 0.0
            res, table, keep = LEVELS[level]
            if level == 0:
                if keep is not None and a < now - keep:
                    return 0.0  # the caller's coarser buckets already covered this
                return table_sum(table, a, b)
            a_al = -(-a // res) * res
            b_al = b // res * res
            if keep is not None and a < now - keep:
                return table_sum(table, a, b)  # finer data gone: buckets that start inside the range
            if a_al >= b_al:
                return part(a, b, level - 1)
            return part(a, a_al, level - 1) + table_sum(table, a_al, b_al) + part(b_al, b, level - 1)

        total += part(t0, t1, len(LEVELS) - 1)
        return total

    def sum_between(self, series: str, t0: float, t1: float) -> float:
        """Sum of the stored values of ``series`` over ``[t0, t1)`` (epoch s): exact to the second for the
        last 48 h, to the minute for 90 days, to the hour beyond."""
        sid = self._lookup(series)
        if sid is None or t1 <= t0:
            return 0.0
        return self._sum_between(sid, int(math.floor(t0)), int(math.ceil(t1)))

    def tokens_served_between(self, t0: float, t1: float) -> float:
        """Tokens served (inference + forward + backward) over ``[t0, t1)`` epoch seconds, all nodes."""
        return sum(self.sum_between(s, t0, t1) for s in TOKEN_SERIES)

    def daily_totals(self, series: str, days: int, *, how: str = "sum") -> list[tuple[float, float]]:
        """Per local calendar day for the last ``days`` days (today included), oldest first:
        ``(day start epoch s, value)``. ``how="sum"``: sum of the values (tokens served that day).
        ``how="increase"``: growth of a cumulative series (earnings): the day's highest value minus the
        previous highest value seen (its own lowest on the first day with data), never below 0 (a drop, e.g. a new wallet, counts as a reset)."""
        if days < 1:
            raise MetricsStoreError("days must be at least 1.")
        if how not in ("sum", "increase"):
            raise MetricsStoreError(f"Unknown daily total {how!r}.")
        today = datetime.fromtimestamp(self.clock()).replace(hour=0, minute=0, second=0, microsecond=0)
        starts = [(today - timedelta(days=d)).timestamp() for d in range(days - 1, -1, -1)]
        bounds = list(zip(starts, starts[1:] + [(today + timedelta(days=1)).timestamp()], strict=True))
        sid = self._lookup(series)
        if sid is None:
            return [(s, 0.0) for s, _ in bounds]
        if how == "sum":
            return [(a, self._sum_between(sid, int(a), int(b))) for a, b in bounds]
        prev = self._max_before(sid, bounds[0][0])
        out = []
        for a, b in bounds:
            peak = self._max_between(sid, a, b)
            if peak is None:
                out.append((a, 0.0))
                continue
            if prev is None:  # the first day with data: its own growth
                prev = self._min_between(sid, a, b)
            out.append((a, max(0.0, peak - prev)))
            prev = peak
        return out

    def _max_between(self, sid: int, a: float, b: float) -> float | None:
        best = None
        for _, table, _ in LEVELS:
            col = "v" if table == "raw" else "max"
            rows = self._read(f"SELECT max({col}) FROM {table} WHERE series_id = ? AND t >= ? AND t < ?",
                              (sid, int(a), int(b)))
            if rows and rows[0][0] is not None:
                best = rows[0][0] if best is None else max(best, rows[0][0])
        return best

    def _min_between(self, sid: int, a: float, b: float) -> float:
        found = []
        for _, table, _ in LEVELS:
            col = "v" if table == "raw" else "min"
            rows = self._read(f"SELECT min({col}) FROM {table} WHERE series_id = ? AND t >= ? AND t < ?",
                              (sid, int(a), int(b)))
            if rows and rows[0][0] is not None:
                found.append(rows[0][0])
        return min(found) if found else 0.0

    def _max_before(self, sid: int, a: float) -> float | None:
        """The value (highest in its hour) of the latest stored bucket before ``a``."""
        rows = self._read("SELECT max FROM roll_1h WHERE series_id = ? AND t < ? ORDER BY t DESC LIMIT 1",
                          (sid, int(a) // 3600 * 3600))
        prior = rows[0][0] if rows else None
        partial = self._max_between(sid, int(a) // 3600 * 3600, a)
        return partial if partial is not None else prior

    def events(self, start: float, end: float, *, node_id: str | None = None,
               kinds: Iterable[str] | None = None, limit: int = 1000) -> list[c.NodeEvent]:
        """Lifecycle events with ``start <= time < end``, oldest first."""
        sql = "SELECT t, node_id, kind, message, data FROM events WHERE t >= ? AND t < ?"
        params: list[Any] = [start, end]
        if node_id is not None:
            sql += " AND node_id = ?"
            params.append(node_id)
        kinds = list(kinds or ())
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            params += kinds
        sql += " ORDER BY t, id LIMIT ?"
        params.append(int(limit))
        out = []
        for t, nid, kind, message, data in self._read(sql, params):
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = {"raw": data}
            out.append(c.NodeEvent(time=t, node_id=nid, kind=kind, message=message, data=parsed))
        return out

    def export_csv(self, series: str, start: float, end: float, path: Path) -> int:
        """Write ``series`` over ``[start, end)`` to ``path`` as CSV (atomically) at the finest resolution
        still stored for ``start``: columns ``time_utc,epoch_s,resolution_s,count,mean,min,max,sum``.
        Returns the number of data rows."""
        if end <= start:
            raise MetricsStoreError("Invalid time range for the export: the end must be after the start.")
        sid = self._lookup(series)
        res, table = self._level_for(start, 0.0)
        rows: list[tuple] = []
        if sid is not None:
            if table == "raw":
                rows = self._read("SELECT t, 1, v, v, v, v FROM raw WHERE series_id = ? AND t >= ? AND t < ? "
                                  "ORDER BY t", (sid, int(math.floor(start)), int(math.ceil(end))))
            else:
                rows = self._read(f"SELECT t, n, sum / n, min, max, sum FROM {table} WHERE series_id = ? "
                                  "AND t >= ? AND t < ? ORDER BY t",
                                  (sid, int(math.floor(start)) // res * res, int(math.ceil(end))))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["time_utc", "epoch_s", "resolution_s", "count", "mean", "min", "max", "sum"])
        for t, n, mean, mn, mx, total in rows:
            stamp = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            w.writerow([stamp, t, res, n, repr(mean), repr(mn), repr(mx), repr(total)])
        atomic_write_text(Path(path), buf.getvalue(), mode=0o644)
        return len(rows)
