"""Durable history of throughput, GPU telemetry, earnings and lifecycle events (SQLite, WAL mode).

This is the only module that talks to SQLite for metrics.

Data model (schema version :data:`SCHEMA_VERSION`, kept in ``PRAGMA user_version``):

- ``series(id, name)``: one row per series name (``tokens_inference_per_s``, ``gpu0.temp`` ...).
- ``raw(series_id, t, v)``: one value per series per whole epoch second ``t``; kept :data:`RAW_KEEP_S`
  (48 h).
- ``roll_1m`` / ``roll_1h`` ``(series_id, t, n, sum, min, max)``: rollups keyed by the bucket's start
  (epoch seconds, a multiple of 60 / 3600). They hold the count, sum, min and max of the raw values in the
  bucket, so means (``sum / n``) and sums over any whole buckets are exact. 1-minute rollups are kept
  :data:`MINUTE_KEEP_S` (90 days), 1-hour rollups for good.
- ``events(id, t, node_id, kind, message, data)``: lifecycle events (start, stop, crash, pause, resume,
  payout ...), ``data`` is JSON text; kept for good.

Writes go through a queue to one background writer thread, which commits every
:data:`COMMIT_INTERVAL_S` seconds or every ``batch_rows`` rows, whichever comes first. Rollups of the
minutes and hours touched by a batch are recomputed from the finer table in the same transaction, so raw
data and rollups never disagree, even after a crash. With WAL and ``synchronous=NORMAL`` a committed
batch survives the app being killed; a crash loses at most the last commit interval (about a second).

A database that SQLite reports as corrupt ("file is not a database", "malformed") is moved aside with
:func:`~farnode_desktop.core.atomic.quarantine` (its ``-wal`` and ``-shm`` files too), a
:class:`MetricsStoreWarning` is added to :attr:`MetricsStore.warnings`, and a fresh database is started.

Values stored per series (units):

- ``tokens_inference_per_s``, ``tokens_forward_per_s``, ``tokens_backward_per_s``: tokens served in that
  second (= tokens/s); summing them over a range gives the tokens served in it.
- ``requests``, ``inference_sessions``: requests / inference sessions started in that second.
- ``reported_throughput``: tokens/s the node(s) announce to the swarm (sum over nodes).
- ``node_state``: the most advanced state of any node, as each state's ``StateInfo.code`` (0 = stopped).
- ``gpu{i}.util`` (%), ``gpu{i}.mem_used`` (MiB), ``gpu{i}.temp`` (deg C), ``gpu{i}.power`` (W).
- ``earnings.paid``, ``earnings.estimated``, ``earnings.total``: cumulative paid, estimated unpaid and
  their sum, in tokens of the payout currency.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from farnode_desktop.core import databases
from farnode_desktop.core import snapshots as c
from farnode_desktop.core.atomic import quarantine
from farnode_desktop.core.errors import FarNodeError, user_facing_os_errors
from farnode_desktop.core.metrics.queries import (  # noqa: F401 - Bucket and the levels are the store's API too
    AMOUNTS_SETTLE_S,
    LEVELS,
    MINUTE_KEEP_S,
    RAW_KEEP_S,
    TOKEN_SERIES,
    Bucket,
    MetricsQueries,
    MetricsStoreError,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
COMMIT_INTERVAL_S = 1.0
RETENTION_INTERVAL_S = 60.0
_SERIES_NAME = re.compile(r"^[A-Za-z0-9_.:@\-]{1,120}$")
_IDLE_READERS = 4  # reader connections kept open between reads (the GUI reads from a small thread pool)

_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS raw (
    series_id INTEGER NOT NULL, t INTEGER NOT NULL, v REAL NOT NULL,
    PRIMARY KEY (series_id, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roll_1m (
    series_id INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,
    sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    PRIMARY KEY (series_id, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roll_1h (
    series_id INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,
    sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    PRIMARY KEY (series_id, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, node_id TEXT NOT NULL, kind TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '', data TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS events_t ON events (t);
"""


class MetricsStoreWarning(FarNodeError):
    title = "Metrics history was reset"


def _is_corrupt(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    )


def _connect(path: Path) -> sqlite3.Connection:
    conn = databases.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


# --------------------------------------------------------------------------------------------------
# Schema and migrations


def _create_v2(conn: sqlite3.Connection) -> None:
    """Create the v2 tables inside the caller's transaction (``executescript`` would commit it)."""
    for statement in _SCHEMA_V2.split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_v1_to_v2(conn: sqlite3.Connection) -> None:
    """v1 (first release) keyed everything by the series name and stored rollups as means::

        samples(series TEXT, t INTEGER, v REAL, PRIMARY KEY (series, t))
        rollup_1m / rollup_1h(series TEXT, t INTEGER, n INTEGER, mean REAL, lo REAL, hi REAL,
                              PRIMARY KEY (series, t))

    and had no events table. v2 numbers the series, stores rollup sums (``sum = mean * n``) so sums are
    exact, and adds ``events``.
    """
    _create_v2(conn)
    conn.execute(
        "INSERT OR IGNORE INTO series(name) SELECT DISTINCT series FROM samples "
        "UNION SELECT DISTINCT series FROM rollup_1m UNION SELECT DISTINCT series FROM rollup_1h"
    )
    conn.execute(
        "INSERT OR REPLACE INTO raw(series_id, t, v) SELECT s.id, x.t, x.v FROM samples x "
        "JOIN series s ON s.name = x.series"
    )
    for old, new in (("rollup_1m", "roll_1m"), ("rollup_1h", "roll_1h")):
        conn.execute(
            f"INSERT OR REPLACE INTO {new}(series_id, t, n, sum, min, max) "
            f"SELECT s.id, x.t, x.n, x.mean * x.n, x.lo, x.hi FROM {old} x JOIN series s ON s.name = x.series"
        )
    conn.execute("DROP TABLE samples")
    conn.execute("DROP TABLE rollup_1m")
    conn.execute("DROP TABLE rollup_1h")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_v1_to_v2}


def _check_not_newer(conn: sqlite3.Connection) -> int:
    """The schema version of the file; refuse one written by a newer app."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise MetricsStoreError(
            f"The metrics history was written by a newer FarNode Desktop (schema {version}, this version "
            f"understands {SCHEMA_VERSION}). It was kept aside and a new history started; update the app "
            "to see the old one.",
            detail=f"user_version={version}",
        )
    return version


def _prepare_schema(conn: sqlite3.Connection) -> None:
    """Create or migrate the schema to :data:`SCHEMA_VERSION`, each step in its own transaction."""
    version = _check_not_newer(conn)
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        if tables:
            raise sqlite3.DatabaseError("malformed: tables present but no schema version")
        conn.execute("BEGIN IMMEDIATE")
        _create_v2(conn)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
        return
    while version < SCHEMA_VERSION:
        step = MIGRATIONS[version]
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(conn)
            conn.execute(f"PRAGMA user_version={version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("metrics database migrated from schema %d to %d", version, version + 1)
        version += 1


# --------------------------------------------------------------------------------------------------
# The store


class MetricsStore(MetricsQueries):
    """Time series and events in one SQLite file; thread-safe; writes are batched on a writer thread.

    ``clock`` (epoch seconds) decides what retention removes and is injectable for tests. Times passed to
    :meth:`record` are sample times (epoch seconds) and are floored to whole seconds.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        batch_rows: int = 5000,
        commit_interval_s: float = COMMIT_INTERVAL_S,
        check_integrity: bool = True,
        on_warning: Callable[[FarNodeError], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.batch_rows = batch_rows
        self.commit_interval_s = commit_interval_s
        self.warnings: list[FarNodeError] = []
        self._on_warning = on_warning
        self._check_integrity = check_integrity
        self._queue: queue.Queue[tuple] = queue.Queue()
        self._generation = 0  # bumped whenever the file is replaced; readers reopen
        # Reader connections are lent to whichever thread reads and given back, at most _IDLE_READERS kept
        # open: per-thread connections leaked a file pair for every thread a pool started and retired.
        self._idle_readers: list[tuple[int, sqlite3.Connection]] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer_error: BaseException | None = None
        self.dropped_samples = 0  # stale (older than raw retention) or not finite
        with user_facing_os_errors("opening the metrics history"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._open_or_reset()
        self._series_ids: dict[str, int] = dict(
            (name, sid) for sid, name in self._conn.execute("SELECT id, name FROM series")
        )
        self._next_retention = 0.0
        self._thread = threading.Thread(target=self._run_writer, name="farnode-metrics-writer", daemon=True)
        self._thread.start()

    # ---- opening, corruption ---------------------------------------------------------------------

    def _open_or_reset(self) -> sqlite3.Connection:
        try:
            return self._open()
        except MetricsStoreError as exc:
            self._set_aside(exc)
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc):
                raise MetricsStoreError(
                    f"The metrics history at {self.path} could not be opened ({exc}). Check that the "
                    "folder is writable and the disk is not full.", detail=repr(exc)) from exc
            self._set_aside(exc)
        return self._open()

    def _open(self) -> sqlite3.Connection:
        # Check the header before SQLite touches the file: it would tidy up (delete) a -wal next to a file
        # that is not a database, and that -wal must be kept aside with it.
        try:
            with open(self.path, "rb") as f:
                header = f.read(16)
        except FileNotFoundError:
            header = b""
        if header and header != b"SQLite format 3\x00":
            raise sqlite3.DatabaseError("file is not a database")
        conn = _connect(self.path)
        try:
            _check_not_newer(conn)  # before anything changes the file
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("metrics database is in %s mode, not WAL", mode)
            conn.execute("PRAGMA synchronous=NORMAL")
            if self._check_integrity:
                result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
                if result != "ok":
                    raise sqlite3.DatabaseError(f"database disk image is malformed: {result}")
            _prepare_schema(conn)
            return conn
        except BaseException:
            conn.close()
            raise

    def _set_aside(self, exc: BaseException) -> None:
        """Move the damaged file (and its -wal/-shm) aside and report where it went."""
        kept = None
        with user_facing_os_errors("keeping a damaged metrics history aside"):
            if self.path.exists():
                kept = quarantine(self.path)
                for suffix in ("-wal", "-shm"):
                    side = self.path.with_name(self.path.name + suffix)
                    if side.exists():
                        side.replace(kept.with_name(kept.name + suffix))
        self._generation += 1
        if isinstance(exc, FarNodeError):
            warning = MetricsStoreWarning(exc.message, detail=exc.detail)
        else:
            where = f" The damaged file was kept as {kept}." if kept else ""
            warning = MetricsStoreWarning(
                f"The throughput and earnings history could not be read (the database is damaged) and a new "
                f"one was started.{where} Nothing else is affected; you may delete the old file.",
                detail=repr(exc),
            )
        log.warning("%s (%s)", warning.message, warning.detail)
        self.warnings.append(warning)
        if self._on_warning is not None:
            try:
                self._on_warning(warning)
            except Exception:
                log.exception("metrics warning callback failed")

    # ---- writing (any thread) --------------------------------------------------------------------

    def record(self, series: str, t: float, value: float | None, *, add: bool = False) -> None:
        """Queue one sample. ``add=True`` adds to a value already stored for that second (counters);
        otherwise the last value of the second wins (gauges). ``None`` and non-finite values are skipped."""
        self.record_many(((series, t, value),), add=add)

    def record_many(self, samples: Iterable[tuple[str, float, float | None]], *, add: bool = False) -> None:
        """Queue many ``(series, t, value)`` samples at once (see :meth:`record`)."""
        rows = []
        for series, t, value in samples:
            if value is None:
                continue
            self._check_series(series)
            v = float(value)
            tt = float(t)
            if not (math.isfinite(v) and math.isfinite(tt)):
                self.dropped_samples += 1
                continue
            rows.append((series, int(math.floor(tt)), v))
        if rows:
            self._put(("samples", rows, add))

    def record_event(self, event: c.NodeEvent) -> None:
        """Queue a lifecycle event (stored with its data as JSON)."""
        try:
            data = json.dumps(dict(event.data or {}), default=str, sort_keys=True)
        except (TypeError, ValueError) as exc:
            data = json.dumps({"unserializable": repr(exc)})
        self._put(("event", (float(event.time), str(event.node_id), str(event.kind), str(event.message), data)))

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything queued so far is committed."""
        self._call_writer("flush", timeout)

    def run_retention(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then drop what is past retention (the writer also does this every
        minute)."""
        self._call_writer("retention", timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Commit everything queued and close the database. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        done = threading.Event()
        self._queue.put(("close", done))
        self._thread.join(timeout)
        with self._readers_lock:
            idle, self._idle_readers = self._idle_readers, []
        for _, conn in idle:
            with contextlib.suppress(Exception):
                conn.close()
        if self._thread.is_alive():
            raise MetricsStoreError("The metrics history did not finish saving in time.")

    def __enter__(self) -> MetricsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_series(self, series: str) -> None:
        if not isinstance(series, str) or not _SERIES_NAME.match(series):
            raise MetricsStoreError(
                f"{series!r} is not a valid metrics series name (letters, digits and _ . : @ -, at most "
                "120 characters).")

    def _put(self, item: tuple) -> None:
        if self._closed:
            raise MetricsStoreError("The metrics history is closed; nothing more can be recorded.")
        self._queue.put(item)

    def _call_writer(self, what: str, timeout: float) -> None:
        if self._closed:
            return
        done = threading.Event()
        self._put((what, done))
        if not done.wait(timeout):
            raise MetricsStoreError(
                f"The metrics history did not answer within {timeout:.0f} s.",
                detail=repr(self._writer_error))

    # ---- the writer thread -----------------------------------------------------------------------

    def _run_writer(self) -> None:
        samples: list[tuple[list, bool]] = []
        events: list[tuple] = []
        pending = 0
        deadline = None
        waiters: list[threading.Event] = []
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = ("tick",)
            kind = item[0]
            if kind == "samples":
                samples.append((item[1], item[2]))
                pending += len(item[1])
            elif kind == "event":
                events.append(item[1])
                pending += 1
            if pending and deadline is None:
                deadline = time.monotonic() + self.commit_interval_s
            force = kind in ("flush", "retention", "close")
            if force or pending >= self.batch_rows or (deadline is not None and time.monotonic() >= deadline):
                if self._commit(samples, events, force_retention=(kind == "retention")):
                    samples, events, pending, deadline = [], [], 0, None
                else:
                    deadline = time.monotonic() + self.commit_interval_s  # retry later
            if force:
                waiters.append(item[1])
                for w in waiters:
                    w.set()
                waiters.clear()
            if kind == "close":
                with contextlib.suppress(Exception):
                    self._conn.execute("PRAGMA optimize")
                    self._conn.close()
                return

    def _commit(self, samples: list[tuple[list, bool]], events: list[tuple], *, force_retention: bool) -> bool:
        """Write one batch in one transaction. True when done (or dropped for good), False to retry."""
        for attempt in (1, 2):
            try:
                self._write_batch(samples, events, force_retention)
                self._writer_error = None
                return True
            except sqlite3.DatabaseError as exc:
                with contextlib.suppress(Exception):
                    self._conn.execute("ROLLBACK")
                self._writer_error = exc
                if _is_corrupt(exc) and attempt == 1:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                    try:
                        self._set_aside(exc)
                        self._conn = self._open()
                    except Exception as exc2:  # could not even start a new file: keep the batch, retry
                        log.error("metrics database could not be replaced: %r", exc2)
                        return False
                    self._series_ids = {}
                    continue
                log.error("metrics batch could not be written (%r); will retry", exc)
                if sum(len(s) for s, _ in samples) > 2_000_000:
                    log.error("metrics backlog too large; dropping it")
                    return True
                return False
            except Exception as exc:  # a bug: never let the writer thread die
                self._writer_error = exc
                log.exception("metrics writer failed")
                with contextlib.suppress(Exception):
                    self._conn.execute("ROLLBACK")
                return True
        return False

    def _series_id(self, name: str) -> int:
        sid = self._series_ids.get(name)
        if sid is None:
            self._conn.execute("INSERT OR IGNORE INTO series(name) VALUES (?)", (name,))
            sid = self._conn.execute("SELECT id FROM series WHERE name=?", (name,)).fetchone()[0]
            self._series_ids[name] = sid
        return sid

    def _write_batch(self, samples: list[tuple[list, bool]], events: list[tuple], force_retention: bool) -> None:
        conn = self._conn
        now = self.clock()
        # A minute whose raw data retention has begun to drop cannot be recomputed exactly: refuse
        # samples that would land in it.
        oldest_ok = (int(now) - RAW_KEEP_S) // 60 * 60 + 60
        conn.execute("BEGIN IMMEDIATE")
        dirty_minutes: set[tuple[int, int]] = set()
        for rows, add in samples:
            params = []
            for name, t, v in rows:
                if t < oldest_ok:
                    self.dropped_samples += 1
                    continue
                sid = self._series_id(name)
                params.append((sid, t, v))
                dirty_minutes.add((sid, t // 60 * 60))
            conflict = "v = v + excluded.v" if add else "v = excluded.v"
            conn.executemany(
                f"INSERT INTO raw(series_id, t, v) VALUES (?, ?, ?) ON CONFLICT(series_id, t) DO UPDATE SET {conflict}",
                params,
            )
        if events:
            conn.executemany("INSERT INTO events(t, node_id, kind, message, data) VALUES (?, ?, ?, ?, ?)", events)
        dirty_hours: set[tuple[int, int]] = set()
        for sid, m in sorted(dirty_minutes):
            conn.execute(
                "INSERT OR REPLACE INTO roll_1m(series_id, t, n, sum, min, max) "
                "SELECT ?, ?, count(*), sum(v), min(v), max(v) FROM raw "
                "WHERE series_id = ? AND t >= ? AND t < ? HAVING count(*) > 0",
                (sid, m, sid, m, m + 60),
            )
            dirty_hours.add((sid, m // 3600 * 3600))
        for sid, h in sorted(dirty_hours):
            conn.execute(
                "INSERT OR REPLACE INTO roll_1h(series_id, t, n, sum, min, max) "
                "SELECT ?, ?, sum(n), sum(sum), min(min), max(max) FROM roll_1m "
                "WHERE series_id = ? AND t >= ? AND t < ? HAVING count(*) > 0",
                (sid, h, sid, h, h + 3600),
            )
        if force_retention or now >= self._next_retention:
            self._apply_retention(now)
            self._next_retention = now + RETENTION_INTERVAL_S
        conn.execute("COMMIT")

    def _apply_retention(self, now: float) -> None:
        raw_cut = int(math.ceil(now - RAW_KEEP_S))
        minute_cut = int(math.ceil(now - MINUTE_KEEP_S))
        for (sid,) in self._conn.execute("SELECT id FROM series").fetchall():
            self._conn.execute("DELETE FROM raw WHERE series_id = ? AND t < ?", (sid, raw_cut))
            self._conn.execute("DELETE FROM roll_1m WHERE series_id = ? AND t < ?", (sid, minute_cut))

    # ---- reading (any thread) --------------------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """Lend a read-only connection to the file of the current generation; it goes back to the idle set
        (or is closed, past the set's size, after the file was replaced or the store closed)."""
        if self._closed:
            raise MetricsStoreError("The metrics history is closed.")
        conn, generation = None, self._generation
        stale: list[sqlite3.Connection] = []
        with self._readers_lock:
            while self._idle_readers and conn is None:
                gen, candidate = self._idle_readers.pop()
                if gen == generation:
                    conn = candidate
                else:
                    stale.append(candidate)
        for old in stale:
            with contextlib.suppress(Exception):
                old.close()
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only=1")
        try:
            yield conn
        finally:
            with self._readers_lock:
                keep = not self._closed and generation == self._generation and \
                    len(self._idle_readers) < _IDLE_READERS
                if keep:
                    self._idle_readers.append((generation, conn))
            if not keep:
                with contextlib.suppress(Exception):
                    conn.close()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            with self._reader() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                # The writer notices on its next commit and starts a new file; show nothing meanwhile.
                log.warning("metrics database read failed: %r", exc)
                return []
            raise MetricsStoreError(f"The metrics history could not be read ({exc}).", detail=repr(exc)) from exc
