"""The app's long-lived SQLite connections keep a bounded page cache: SQLite's own memory, read from the real
library, stays flat while the databases grow (it grew with them, up to 2 MB a connection, before)."""

from __future__ import annotations

import ctypes
import time
import uuid

import pytest

from farnode_desktop.core import databases
from farnode_desktop.core.metrics.store import MetricsStore
from farnode_desktop.core.payout.served import ServedLedger


@pytest.fixture(scope="module")
def sqlite_heap():
    """SQLite's count of the bytes it has allocated (``sqlite3_memory_used``), in the library Python uses."""
    import _sqlite3

    for name in (_sqlite3.__file__, "libsqlite3.so.0", "sqlite3.dll", "libsqlite3.dylib"):
        try:
            fn = ctypes.CDLL(name).sqlite3_memory_used
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_int64
        return lambda: fn() / 1e6
    pytest.skip("the SQLite library Python uses does not export sqlite3_memory_used")


SERIES = ["tokens_inference_per_s", "tokens_forward_per_s", "reported_throughput", "earnings.total", "earnings.paid"]


def test_the_metrics_store_holds_no_more_sqlite_memory_as_its_history_grows(tmp_path, sqlite_heap):
    """Five series a second for six hours of its clock, read as a chart of the last hour reads them. Before the
    bound: +0.28 MB an hour (1.03 -> 2.16 MB from hour 2 to hour 6), flat only once the file stopped growing."""
    t0 = time.time() - 6 * 3600
    clock = [t0]
    store = MetricsStore(tmp_path / "metrics.sqlite3", clock=lambda: clock[0])
    readings = []
    try:
        for minute in range(6 * 60):
            base = t0 + minute * 60
            store.record_many([(s, base + sec, float(sec)) for sec in range(60) for s in SERIES])
            clock[0] = base + 60
            if minute % 5 == 0:
                for s in SERIES:
                    store.query(s, clock[0] - 3600, clock[0], 900, amounts=s.startswith("tokens"))
            if minute % 60 == 59:
                store.flush()
                readings.append(sqlite_heap())
    finally:
        store.close()
    print("SQLite's memory at each hour (MB):", readings)
    assert readings[-1] - readings[1] < 0.15, readings  # MB, hours 2 to 6 (the old cache: +1.1 MB)
    assert readings[-1] < 2 * databases.PAGE_CACHE_KIB / 1000 + 0.6, readings


def test_the_served_ledger_holds_no_more_sqlite_memory_as_it_grows(tmp_path, sqlite_heap):
    ledger = ServedLedger(tmp_path / "served.sqlite3")
    readings = []
    try:
        for batch in range(40):
            for _ in range(500):
                ledger.record(uuid.uuid4().hex, time.time(), {"peer-a": 12, "peer-b": 7})
            if batch % 10 == 9:
                readings.append(sqlite_heap())
        size = sum(p.stat().st_size for p in tmp_path.glob("served.sqlite3*"))
    finally:
        ledger.close()
    print("SQLite's memory every 5,000 requests (MB):", readings, "files:", size)
    assert size > 2e6
    assert readings[-1] - readings[0] < 0.15, readings


def test_a_connection_has_the_bounded_cache_and_the_arguments_it_was_given(tmp_path):
    conn = databases.connect(tmp_path / "x.sqlite3", timeout=5, isolation_level=None, check_same_thread=False)
    try:
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -databases.PAGE_CACHE_KIB
        assert conn.isolation_level is None and not conn.in_transaction
    finally:
        conn.close()
