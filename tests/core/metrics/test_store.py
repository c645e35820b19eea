"""The metrics store: rollups, retention, queries, sums, events, bad input."""

from __future__ import annotations

import math
import random
import sqlite3
from collections import defaultdict

import pytest

from farnode_desktop.core.metrics.store import (
    MINUTE_KEEP_S,
    RAW_KEEP_S,
    MetricsStore,
    MetricsStoreError,
)
from farnode_desktop.core.snapshots import NodeEvent

from .conftest import NOW


def _rows(path, sql, params=()):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _random_samples(seed: int, start: int, seconds: int, gap_every: int = 97):
    rng = random.Random(seed)
    out = {}
    for t in range(start, start + seconds):
        if rng.randrange(gap_every) == 0:
            continue  # gaps: node stopped / app busy
        out[t] = round(rng.uniform(-5.0, 500.0), 3)
    return out


def test_rollups_equal_what_raw_says(store, app_paths):
    start = int(NOW) - 3 * 3600 - 17  # not aligned: partial first minute and hour
    data = _random_samples(1, start, 3 * 3600 + 17)
    # Out of order and in several calls, as a busy publisher would deliver them.
    items = list(data.items())
    random.Random(2).shuffle(items)
    for i in range(0, len(items), 700):
        store.record_many(("s", t, v) for t, v in items[i:i + 700])
    store.flush()

    for res, table in ((60, "roll_1m"), (3600, "roll_1h")):
        groups = defaultdict(list)
        for t, v in data.items():
            groups[t // res * res].append(v)
        got = {t: (n, s, lo, hi) for t, n, s, lo, hi in _rows(
            app_paths.metrics_db, f"SELECT t, n, sum, min, max FROM {table} ORDER BY t")}
        assert sorted(got) == sorted(groups)
        for t, vals in groups.items():
            n, s, lo, hi = got[t]
            assert n == len(vals)
            assert s == pytest.approx(math.fsum(vals), rel=1e-12)
            assert lo == min(vals) and hi == max(vals)

    # The query API agrees at every resolution it picks.
    for span, max_points in ((3600, 3600), (3600, 100), (3 * 3600, 30), (3 * 3600, 3)):
        q_start = NOW - span
        buckets = store.query("s", q_start, NOW, max_points)
        assert 0 < len(buckets) <= max_points + 1
        width = buckets[1].t - buckets[0].t if len(buckets) > 1 else span
        for b in buckets:
            vals = [v for t, v in data.items() if b.t <= t < b.t + width and t >= int(q_start) // 60 * 60]
            assert b.mean == pytest.approx(math.fsum(vals) / len(vals), rel=1e-9)
            assert (b.min, b.max) == (min(vals), max(vals))

    # Sums over unaligned ranges mix hours, minutes and seconds and are exact.
    for t0, t1 in ((start, NOW), (start + 61, NOW - 3599), (NOW - 7300.5, NOW - 10)):
        expected = math.fsum(v for t, v in data.items() if math.floor(t0) <= t < math.ceil(t1))
        assert store.sum_between("s", t0, t1) == pytest.approx(expected, rel=1e-9)


def test_same_second_add_and_replace(store):
    t = NOW - 100.8
    store.record("counter", t, 3, add=True)
    store.record("counter", t + 0.5, 4, add=True)  # same whole second: added
    store.record("gauge", t, 3)
    store.record("gauge", t + 0.5, 4)  # same whole second: last wins
    store.record("gauge", t, None)  # not available: skipped
    store.record("gauge", t, float("nan"))  # skipped and counted
    store.flush()
    assert store.query("counter", NOW - 200, NOW, 200) == [pytest.approx((NOW - 101, 7, 7, 7))]
    assert store.query("gauge", NOW - 200, NOW, 200) == [
        (NOW - 101, 4.0, 4.0, 4.0)]
    assert store.dropped_samples == 1


def test_amounts_are_read_as_average_rates_with_idle_seconds_as_zero(store, clock):
    """Tokens served per second: a request every 10 s serving 20 tokens in one second is 2 tok/s on
    average, not 20; a stretch with the node off reads 0, not a line drawn from before to after it."""
    t0 = int(NOW) - 3600
    served = {t0 + i: 20.0 for i in range(0, 600, 10)}  # 10 min of traffic, then 40 min off, then 10 min more
    served.update({t0 + 3000 + i: 20.0 for i in range(0, 600, 10)})
    store.record_many(("tokens", t, v) for t, v in served.items())
    store.flush()

    plain = store.query("tokens", t0, NOW, 360)  # 10 s buckets, empty ones left out
    assert {b.mean for b in plain} == {20.0} and len(plain) == 120
    rates = store.query("tokens", t0, NOW, 360, amounts=True)
    assert len(rates) == 360  # up to the present; the last bucket without the seconds still being recorded
    assert rates[-1].mean == pytest.approx(20.0 / 7)
    assert all(b.t == t0 + 10 * i for i, b in enumerate(rates))
    busy = [b for b in rates if b.t < t0 + 600 or t0 + 3000 <= b.t < t0 + 3600]
    idle = [b for b in rates if t0 + 600 <= b.t < t0 + 3000]
    assert all(b == (b.t, 2.0, 0.0, 20.0) for b in busy[:-1])
    assert all(b == (b.t, 0.0, 0.0, 0.0) for b in idle) and len(idle) == 240
    assert sum(b.mean * 10 for b in rates[:-1]) + rates[-1].mean * 7 == pytest.approx(sum(served.values()))

    # From the minute rollups (a 6-hour window): every minute's total over its 60 seconds.
    minutes = store.query("tokens", NOW - 6 * 3600, NOW, 360, amounts=True)
    by_t = {b.t: b for b in minutes}
    assert by_t[t0].mean == pytest.approx(120.0 / 60) and by_t[t0].min == 0.0 and by_t[t0].max == 20.0
    assert by_t[t0 + 1200] == (t0 + 1200, 0.0, 0.0, 0.0) and by_t[t0 - 7200].mean == 0.0
    # A second with an amount every second: its min is that amount, not 0.
    store.record_many(("steady", t, 5.0) for t in range(t0, t0 + 120))
    store.flush()
    steady = store.query("steady", t0, t0 + 120, 12, amounts=True)
    assert all(b == (b.t, 5.0, 5.0, 5.0) for b in steady) and len(steady) == 12
    assert store.query("never-written", t0, NOW, 10, amounts=True) == []


def test_retention_drops_exactly_what_it_should(store, clock, app_paths):
    # One value every 30 s over 49 hours, written while "now" moves along with them.
    t0 = int(NOW) - 49 * 3600
    for hour in range(49):
        clock.now = t0 + hour * 3600
        store.record_many(("s", t, 1.0) for t in range(clock.now, clock.now + 3600, 30))
        store.flush()
    clock.now = float(t0 + 49 * 3600)
    store.run_retention()

    raw_t = [t for (t,) in _rows(app_paths.metrics_db, "SELECT t FROM raw ORDER BY t")]
    cut = clock.now - RAW_KEEP_S
    expected = [t for t in range(t0, t0 + 49 * 3600, 30) if t >= cut]
    assert raw_t == expected
    # Minute and hour rollups of the dropped raw data stay.
    minutes = _rows(app_paths.metrics_db, "SELECT count(*), min(t), sum(n) FROM roll_1m")[0]
    assert minutes == (49 * 60, t0, 49 * 120)
    hours = _rows(app_paths.metrics_db, "SELECT count(*), sum(n) FROM roll_1h")[0]
    assert hours == (49, 49 * 120)
    # A sample that would land in a minute whose raw data is partly gone is refused.
    store.record("s", cut - 1, 99.0)
    store.flush()
    assert store.dropped_samples == 1
    assert _rows(app_paths.metrics_db, "SELECT count(*) FROM raw WHERE v = 99")[0][0] == 0

    # 90 days later, the minute rollups older than 90 days go, hours stay.
    clock.now = float(t0 + MINUTE_KEEP_S + 3600 + 90)
    store.run_retention()
    minute_t = [t for (t,) in _rows(app_paths.metrics_db, "SELECT t FROM roll_1m ORDER BY t")]
    assert minute_t and min(minute_t) >= clock.now - MINUTE_KEEP_S
    assert len(minute_t) == len([m for m in range(t0, t0 + 49 * 3600, 60) if m >= clock.now - MINUTE_KEEP_S])
    assert _rows(app_paths.metrics_db, "SELECT count(*) FROM raw")[0][0] == 0
    assert _rows(app_paths.metrics_db, "SELECT count(*), sum(n) FROM roll_1h")[0] == (49, 49 * 120)
    # The coarse data still answers queries and sums (to the hour).
    assert store.sum_between("s", t0, t0 + 49 * 3600) == 49 * 120
    assert len(store.query("s", t0, t0 + 49 * 3600, 1000)) == 49  # hours: the minutes at t0 are gone


def test_query_picks_the_table_that_fits(store, clock):
    for day in range(3, 0, -1):  # 3 days, one value a minute, written as time goes by
        clock.now = NOW - day * 86400
        store.record_many(("s", t, t % 7) for t in range(int(clock.now), int(clock.now) + 86400, 60))
        store.flush()
    clock.now = NOW
    # 1 h, 1000 points: raw seconds (60 buckets since there is one value a minute).
    assert len(store.query("s", NOW - 3600, NOW, 1000)) == 60
    # 3 days (beyond raw retention): minute rollups, buckets of 5 min for 1000 points.
    q = store.query("s", NOW - 3 * 86400, NOW, 1000)
    assert len(q) == 864 and q[1].t - q[0].t == 300
    # "All": hour rollups when the buckets are an hour or more.
    q = store.query("s", NOW - 3 * 86400, NOW, 72)
    assert len(q) == 72 and q[1].t - q[0].t == 3600
    assert all(b.min == 0 and b.max == 6 for b in q)
    # A range whose hours still give at least half the points asked for reads the hour table.
    q = store.query("s", NOW - 3 * 86400, NOW, 100)
    assert len(q) == 72 and q[1].t - q[0].t == 3600


def test_bad_queries_and_names_give_clear_errors(store):
    with pytest.raises(MetricsStoreError, match="end must be after"):
        store.query("s", NOW, NOW - 1)
    with pytest.raises(MetricsStoreError, match="max_points"):
        store.query("s", NOW - 10, NOW, 0)
    with pytest.raises(MetricsStoreError, match="not a valid metrics series"):
        store.record("bad name; drop table", NOW, 1)
    with pytest.raises(MetricsStoreError, match="days"):
        store.daily_totals("s", 0)
    assert store.query("never-written", NOW - 10, NOW) == []
    assert store.sum_between("never-written", NOW - 10, NOW) == 0


def test_events_table(store):
    store.record_event(NodeEvent(NOW - 5, "main", "start", "Starting", {"port": 31330}))
    store.record_event(NodeEvent(NOW - 4, "main", "crash", "exit code -9", {"obj": object()}))
    store.record_event(NodeEvent(NOW - 3, "gpu-1", "payout", "", {"amount": 1.5}))
    store.flush()
    evs = store.events(NOW - 10, NOW)
    assert [e.kind for e in evs] == ["start", "crash", "payout"]
    assert evs[0].data == {"port": 31330}
    assert "object" in evs[1].data["obj"]  # not JSON: kept as text, not lost
    assert [e.kind for e in store.events(NOW - 10, NOW, node_id="main", kinds=["crash"])] == ["crash"]


def test_tokens_served_and_daily_totals(store, clock):
    # 3 days of tokens at 10/s inference + 2/s forward, plus a cumulative earnings series.
    start = int(NOW) - 3 * 86400
    for day in range(3):
        clock.now = start + day * 86400
        span = range(int(clock.now), int(clock.now) + 86400, 10)
        store.record_many([(name, t, rate) for t in span
                           for name, rate in (("tokens_inference_per_s", 10.0), ("tokens_forward_per_s", 2.0))],
                          add=True)
        store.record_many(("earnings.total", t, (t - start) / 86400.0) for t in span)  # grows by 1 a day
        store.flush()
    clock.now = NOW
    assert store.tokens_served_between(NOW - 3600, NOW) == 360 * 12
    # Within 48 h: exact to the second.
    assert store.tokens_served_between(NOW - 30 * 3600 + 5, NOW - 7) == sum(
        12 for t in range(start, int(NOW) - 7, 10) if t >= NOW - 30 * 3600 + 5)
    # Older: exact to the minute (the minute that starts inside the range counts, the one before not).
    assert store.tokens_served_between(start + 5, NOW - 3600 + 5) == sum(
        12 for t in range(start, int(NOW) - 3600 + 5, 10) if t >= start + 60)
    days = store.daily_totals("tokens_inference_per_s", 5)
    assert len(days) == 5 and days[-1][0] <= NOW < days[-1][0] + 86400 + 3600
    assert math.fsum(v for _, v in days) == 3 * 8640 * 10
    inc = store.daily_totals("earnings.total", 5, how="increase")
    assert math.fsum(v for _, v in inc) == pytest.approx((NOW - 10 - start) / 86400.0, rel=1e-6)
    assert store.daily_totals("nothing", 2) == [(days[-2][0], 0.0), (days[-1][0], 0.0)]


def test_close_flushes_and_reopen_sees_everything(app_paths, clock):
    store = MetricsStore(app_paths.metrics_db, clock=clock, commit_interval_s=3600)
    store.record_many(("s", NOW - i, i) for i in range(1000))
    store.close()
    store.close()  # twice is fine
    with pytest.raises(MetricsStoreError, match="closed"):
        store.record("s", NOW, 1)
    again = MetricsStore(app_paths.metrics_db, clock=clock)
    try:
        assert again.sum_between("s", NOW - 2000, NOW + 1) == sum(range(1000))
        assert again.warnings == []
    finally:
        again.close()


def _open_handles(path) -> int:
    """How many of this process's file descriptors are the database file."""
    import os
    fd_dir = "/proc/self/fd"
    count = 0
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}") == str(path):
                count += 1
        except OSError:
            continue  # closed while listed
    return count


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_reads_from_threads_that_come_and_go_keep_few_files_open(store, app_paths):
    """The window reads from a thread pool that retires idle threads and starts new ones: each new thread must
    not leave a connection open behind it (it did: two files per thread, 45 a minute in the soak run)."""
    import threading

    store.record_many(("s", NOW - i, float(i)) for i in range(60))
    store.flush()
    before = _open_handles(app_paths.metrics_db)
    for _ in range(40):
        out: list = []
        t = threading.Thread(target=lambda out=out: out.append(store.query("s", NOW - 60, NOW)))
        t.start()
        t.join()
        assert out and out[0]
    after = _open_handles(app_paths.metrics_db)
    assert after - before <= 4, f"{after - before} more handles on the database after 40 short-lived readers"
    store.close()
    assert _open_handles(app_paths.metrics_db) == 0
