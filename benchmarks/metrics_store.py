"""Benchmark of the metrics store: 30 days of 1 Hz samples for 12 series.

The last 48 h (what raw retention keeps: 2.07 M rows) go through the real API (``record_many`` + the writer
thread, rollups computed as it runs), which gives the ingest rate. The 28 days before are written straight
into the minute/hour rollup tables with exactly the rows the store leaves behind after retention (n, sum,
min, max of synthetic 1 Hz data), since replaying 29 M more rows through the API would only re-measure the
same ingest rate.

Prints ingest rate, database size, query time per range and a chart update time, each with the ratio
against a naive baseline measured in the same run: a store without rollups (30 days of raw rows for one
series, grouped at query time) and a chart fed unaggregated raw points.

Run: PYTHONPATH=. python benchmarks/metrics_store.py [--hours-via-api 48]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from farnode_desktop.core.metrics.store import MetricsStore  # noqa: E402

SERIES = ["tokens_inference_per_s", "tokens_forward_per_s", "tokens_backward_per_s", "requests",
          "inference_sessions", "reported_throughput", "node_state", "gpu0.util", "gpu0.mem_used", "gpu0.temp",
          "gpu0.power", "earnings.estimated"]
NOW = 1_772_452_800  # hour-aligned
DAYS = 30
RANGES = {"1 h": 3600, "24 h": 86400, "7 d": 7 * 86400, "30 d": 30 * 86400, "all": None}


def synth(k: int, t: np.ndarray) -> np.ndarray:
    return (100 + 10 * k) * (1 + np.sin(t / (3000 + 500 * k))) + (t % (7 + k))


def median_ms(fn, repeat: int = 15) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def fill_old_rollups(db: Path, start: int, end: int) -> None:
    """Minute and hour rollups of 1 Hz data over [start, end), as the store keeps them after retention."""
    conn = sqlite3.connect(db)
    ids = dict(conn.execute("SELECT name, id FROM series"))
    with conn:
        for k, name in enumerate(SERIES):
            sid = ids[name]
            t = np.arange(start, end, dtype=np.int64)
            v = synth(k, t.astype(float)).reshape(-1, 60)
            m_t = t[::60]
            conn.executemany("INSERT OR REPLACE INTO roll_1m VALUES (?, ?, 60, ?, ?, ?)",
                             zip([sid] * len(m_t), m_t.tolist(), v.sum(1).tolist(), v.min(1).tolist(),
                                 v.max(1).tolist(), strict=True))
            h = v.reshape(-1, 60 * 60)
            h_t = t[::3600]
            conn.executemany("INSERT OR REPLACE INTO roll_1h VALUES (?, ?, 3600, ?, ?, ?)",
                             zip([sid] * len(h_t), h_t.tolist(), h.sum(1).tolist(), h.min(1).tolist(),
                                 h.max(1).tolist(), strict=True))
    conn.close()


def naive_db(db: Path, start: int, end: int) -> sqlite3.Connection:
    """The baseline: no rollups, 1 Hz raw rows of one series for the whole range."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE raw (series_id INTEGER, t INTEGER, v REAL, PRIMARY KEY (series_id, t)) WITHOUT ROWID")
    with conn:
        for a in range(start, end, 86400):
            t = np.arange(a, min(end, a + 86400), dtype=np.int64)
            conn.executemany("INSERT INTO raw VALUES (1, ?, ?)",
                             zip(t.tolist(), synth(0, t.astype(float)).tolist(), strict=True))
    return conn


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours-via-api", type=int, default=48, help="hours of 1 Hz data ingested through the API")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="farnode-bench-") as tmp:
        db = Path(tmp) / "metrics.sqlite3"
        clock_now = [float(NOW - DAYS * 86400)]
        store = MetricsStore(db, clock=lambda: clock_now[0])
        api_start = NOW - args.hours_via_api * 3600
        # Register the series (and their ids) through the API, then the old part as rollups.
        store.record_many((name, NOW - DAYS * 86400, 0.0) for name in SERIES)
        store.flush()
        t0 = time.perf_counter()
        fill_old_rollups(db, NOW - DAYS * 86400, api_start)
        print(f"old rollups ({(api_start - NOW + DAYS * 86400) / 86400:.0f} days) written directly in "
              f"{time.perf_counter() - t0:.1f} s")

        rows = 0
        t0 = time.perf_counter()
        for hour_start in range(api_start, NOW, 3600):
            clock_now[0] = float(hour_start + 3600)
            t = np.arange(hour_start, hour_start + 3600, dtype=np.int64)
            tl = t.tolist()
            for k, name in enumerate(SERIES):
                vals = synth(k, t.astype(float)).tolist()
                store.record_many(zip([name] * len(tl), tl, vals, strict=True))
                rows += len(tl)
            store.flush()
        ingest_s = time.perf_counter() - t0
        store.run_retention()
        print(f"ingest through the API: {rows:,} rows in {ingest_s:.1f} s = {rows / ingest_s:,.0f} rows/s "
              f"(= {rows / ingest_s / len(SERIES):,.0f}x real time for {len(SERIES)} series at 1 Hz)")
        store.close()

        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = {tb: conn.execute(f"SELECT count(*) FROM {tb}").fetchone()[0] for tb in ("raw", "roll_1m", "roll_1h")}
        conn.close()
        size_mb = sum(p.stat().st_size for p in Path(tmp).glob("metrics.sqlite3*")) / 1e6
        print(f"database: {size_mb:.1f} MB for {DAYS} days x {len(SERIES)} series (target < 100 MB); rows {counts}")

        t0 = time.perf_counter()
        store = MetricsStore(db, clock=lambda: float(NOW))
        print(f"open with integrity quick_check: {(time.perf_counter() - t0) * 1000:.0f} ms")

        naive = naive_db(Path(tmp) / "naive.sqlite3", NOW - DAYS * 86400, NOW)
        print(f"{'range':>6} {'store ms':>9} {'points':>7} {'naive raw ms':>13} {'naive/store':>12} "
              f"{'as rates ms':>12}")
        results = {}
        for label, span in RANGES.items():
            start = float(NOW - (span or DAYS * 86400))
            store_ms = median_ms(lambda s=start: store.query("tokens_inference_per_s", s, NOW, 1000))
            pts = store.query("tokens_inference_per_s", start, NOW, 1000)
            results[label] = pts
            bucket = max(1, int((NOW - start) / 1000))
            naive_ms = median_ms(lambda s=start, b=bucket: naive.execute(
                "SELECT t / ? AS b, avg(v), min(v), max(v) FROM raw WHERE series_id = 1 AND t >= ? AND t < ? "
                "GROUP BY b ORDER BY b", (b, int(s), NOW)).fetchall(), repeat=5)
            # what the throughput chart asks: average rates, idle seconds as 0 (every bucket returned)
            rates_ms = median_ms(lambda s=start: store.query("tokens_inference_per_s", s, NOW, 1000, amounts=True))
            print(f"{label:>6} {store_ms:>9.2f} {len(pts):>7} {naive_ms:>13.1f} {naive_ms / store_ms:>11.1f}x "
                  f"{rates_ms:>12.2f}")

        import pyqtgraph as pg
        from PySide6.QtWidgets import QApplication

        from farnode_desktop.gui.bridge import TaskRunner
        from farnode_desktop.gui.charts import ThroughputChart

        app = QApplication.instance() or QApplication(sys.argv[:1])
        runner = TaskRunner()
        chart = ThroughputChart(store, live=False, clock=lambda: float(NOW), runner=runner)
        chart.resize(1000, 400)
        chart._lines = chart.lines()
        result = chart._query(chart._lines, 1000, 30 * 86400)  # what the worker thread hands over
        n_points = len(result["tokens_inference_per_s"][0])
        chart.show()
        app.processEvents()
        update_ms = median_ms(lambda: chart.set_result(result), repeat=30)
        paint_ms = median_ms(lambda: (chart.set_result(result), chart.plot_widget.grab()), repeat=10)
        arr = np.asarray(naive.execute("SELECT t, v FROM raw WHERE series_id = 1 ORDER BY t").fetchall(), dtype=float)
        plain = pg.PlotWidget()
        plain.resize(1000, 400)
        curve = plain.plot()
        plain.show()
        app.processEvents()
        naive_set_ms = median_ms(lambda: curve.setData(arr[:, 0], arr[:, 1]), repeat=3)
        naive_paint_ms = median_ms(lambda: (curve.setData(arr[:, 0], arr[:, 1]), plain.grab()), repeat=3)
        print(f"chart update, 30 d (setData of 3 series x {n_points} buckets + min/max bands): {update_ms:.2f} ms "
              f"(target < 5 ms); with a repaint: {paint_ms:.1f} ms")
        print(f"naive chart (one series, {len(arr):,} raw points, 30 d): setData {naive_set_ms:.1f} ms "
              f"({naive_set_ms / update_ms:.1f}x), with a repaint {naive_paint_ms:.0f} ms "
              f"({naive_paint_ms / paint_ms:.1f}x)")
        sys.stdout.flush()
        for w in (chart, plain):
            w.close()
            w.deleteLater()
        app.processEvents()
        runner.wait()
        runner.close()
        naive.close()
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
