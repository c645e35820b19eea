"""Crash safety, corrupt files, schema migration and CSV export of the metrics store."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from farnode_desktop.core.metrics.store import SCHEMA_VERSION, MetricsStore, MetricsStoreWarning
from farnode_desktop.core.snapshots import NodeEvent
from tests.support import REPO

from .conftest import NOW

WRITER = textwrap.dedent("""
    import sys, time
    from farnode_desktop.core.metrics.store import MetricsStore
    base = float(sys.argv[2])
    store = MetricsStore(sys.argv[1], clock=lambda: base, commit_interval_s=0.2)
    i = 0
    while True:
        store.record("s", base + i, float(i))
        if i == 100:
            store.flush()
            print("flushed", i, flush=True)
        elif i % 10 == 0:
            print("wrote", i, flush=True)
        i += 1
        time.sleep(0.005)
""")


def test_sigkill_mid_write_loses_nothing_committed(tmp_path):
    db = tmp_path / "metrics.sqlite3"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(NOW)], stdout=subprocess.PIPE,
                            text=True, env=env)
    flushed = None
    last_written = 0
    written_at: dict[int, float] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "writer died early"
            word, n = line.split()
            if word == "flushed":
                flushed = int(n)
            else:
                last_written = int(n)
                written_at[last_written] = time.monotonic()
            if flushed is not None and last_written >= 400:
                break
        kill_time = time.monotonic()
        proc.send_signal(signal.SIGKILL)  # mid-write: no close(), no flush
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    assert flushed == 100

    store = MetricsStore(db, clock=lambda: NOW)
    try:
        assert store.warnings == []  # a clean file, not treated as corrupt
        got = [b.mean for b in store.query("s", NOW, NOW + 10_000, 10_000)]
    finally:
        store.close()
    # Everything flushed is there, and what is there is a gap-free prefix of what was written.
    assert got[: flushed + 1] == [float(i) for i in range(flushed + 1)]
    assert got == [float(i) for i in range(len(got))]
    # At most about a second (commit interval 0.2 s + slack) was lost.
    recent = [n for n, at in written_at.items() if kill_time - at > 1.5]
    assert len(got) - 1 >= max(recent)


def _assert_reset_with_warning(store, db, original: bytes):
    assert len(store.warnings) == 1
    w = store.warnings[0]
    assert isinstance(w, MetricsStoreWarning)
    assert "new one was started" in w.message and "kept as" in w.message
    kept = [p for p in db.parent.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1 and kept[0].read_bytes() == original
    assert str(kept[0]) in w.message
    return kept[0]


def test_garbage_file_is_kept_aside_and_reported(tmp_path):
    db = tmp_path / "metrics.sqlite3"
    garbage = b"this is not a database at all\n" * 200
    db.write_bytes(garbage)
    (tmp_path / "metrics.sqlite3-wal").write_bytes(b"wal bytes")
    seen = []
    store = MetricsStore(db, clock=lambda: NOW, on_warning=seen.append)
    try:
        kept = _assert_reset_with_warning(store, db, garbage)
        assert seen == store.warnings
        assert kept.with_name(kept.name + "-wal").read_bytes() == b"wal bytes"
        store.record("s", NOW - 1, 5.0)  # and the fresh database works
        store.flush()
        assert store.query("s", NOW - 10, NOW) == [(NOW - 1, 5.0, 5.0, 5.0)]
    finally:
        store.close()


def test_damaged_pages_are_detected_kept_aside_and_reported(tmp_path):
    db = tmp_path / "metrics.sqlite3"
    store = MetricsStore(db, clock=lambda: NOW)
    store.record_many(("s", NOW - i, i) for i in range(20_000))
    store.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 10 * page
    for off in range(3 * page, 6 * page):  # scribble over b-tree pages, keep the header valid
        data[off] = 0x5A
    db.write_bytes(bytes(data))

    store = MetricsStore(db, clock=lambda: NOW)
    try:
        _assert_reset_with_warning(store, db, bytes(data))
        assert store.query("s", NOW - 100, NOW) == []
    finally:
        store.close()


def test_newer_schema_is_kept_aside_not_destroyed(tmp_path):
    db = tmp_path / "metrics.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    original = db.read_bytes()
    store = MetricsStore(db, clock=lambda: NOW)
    try:
        assert "newer FarNode Desktop" in store.warnings[0].message
        kept = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
        assert kept and kept[0].read_bytes() == original
    finally:
        store.close()


V1_SCHEMA = """
CREATE TABLE samples (series TEXT NOT NULL, t INTEGER NOT NULL, v REAL NOT NULL, PRIMARY KEY (series, t));
CREATE TABLE rollup_1m (series TEXT NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL, mean REAL NOT NULL,
                        lo REAL NOT NULL, hi REAL NOT NULL, PRIMARY KEY (series, t));
CREATE TABLE rollup_1h (series TEXT NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL, mean REAL NOT NULL,
                        lo REAL NOT NULL, hi REAL NOT NULL, PRIMARY KEY (series, t));
PRAGMA user_version = 1;
"""


def test_migration_from_v1(tmp_path):
    db = tmp_path / "metrics.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(V1_SCHEMA)
    t0 = int(NOW) - 7200
    raw = [(name, t0 + i, float(i % 13) * k) for name, k in (("a", 1), ("gpu0.temp", 2)) for i in range(7200)]
    conn.executemany("INSERT INTO samples VALUES (?, ?, ?)", raw)
    for table, res in (("rollup_1m", 60), ("rollup_1h", 3600)):
        conn.execute(f"INSERT INTO {table} SELECT series, t / {res} * {res}, count(*), avg(v), min(v), max(v) "
                     "FROM samples GROUP BY series, t / {res}".replace("{res}", str(res)))
    # An old hour whose minutes and seconds were already dropped by v1's retention.
    conn.execute("INSERT INTO rollup_1h VALUES ('a', ?, 3600, 2.5, 0, 9)", (t0 - 86400 * 200,))
    conn.commit()
    conn.close()

    store = MetricsStore(db, clock=lambda: NOW)
    try:
        assert store.warnings == []
        assert store.series_names() == ["a", "gpu0.temp"]
        for name, k in (("a", 1), ("gpu0.temp", 2)):
            expected = sum(float(i % 13) * k for i in range(7200))
            assert store.sum_between(name, t0, NOW) == pytest.approx(expected)
            hourly = store.query(name, t0, NOW, 2)  # from the migrated hour rollups
            assert [(b.min, b.max) for b in hourly] == [(0.0, 12.0 * k)] * 2
        assert store.sum_between("a", t0 - 86400 * 200, t0 - 86400 * 199) == pytest.approx(2.5 * 3600)
        # The new events table works, and the old tables are gone.
        store.record_event(NodeEvent(NOW, "main", "start"))
        store.record("a", NOW - 1, 100.0)
        store.flush()
        assert [e.kind for e in store.events(NOW - 1, NOW + 1)] == ["start"]
    finally:
        store.close()
    conn = sqlite3.connect(db)
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    assert tables == {"series", "raw", "roll_1m", "roll_1h", "events"}


def test_csv_export(store, clock, tmp_path):
    for i in range(120):
        store.record("tokens_inference_per_s", NOW - 120 + i, float(i))
    store.flush()
    out = tmp_path / "export" / "tokens.csv"
    n = store.export_csv("tokens_inference_per_s", NOW - 60, NOW, out)
    assert n == 60
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 60
    assert rows[0]["epoch_s"] == str(int(NOW) - 60) and float(rows[0]["mean"]) == 60.0
    assert rows[0]["time_utc"].endswith("Z") and rows[0]["resolution_s"] == "1"
    # Older than 48 h: minute rows with counts and sums.
    clock.advance(3 * 86400)
    n = store.export_csv("tokens_inference_per_s", NOW - 120, NOW, out)
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert n == 2 and [r["resolution_s"] for r in rows] == ["60", "60"]
    assert [float(r["sum"]) for r in rows] == [sum(range(60)), sum(range(60, 120))]
    assert [int(r["count"]) for r in rows] == [60, 60]
    # An unknown series gives a header-only file; no temp files are left behind.
    assert store.export_csv("nope", NOW - 10, NOW, out) == 0
    assert out.read_text().startswith("time_utc,") and len(out.read_text().splitlines()) == 1
    assert [p.name for p in out.parent.iterdir()] == ["tokens.csv"]
