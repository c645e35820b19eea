"""The served ledger: what the demo traffic got from each server, for the demo payout service.

On the local demo swarm the app's own client knows which server ran which blocks of every inference step. For
each request it finishes, the app records here the tokens each server processed for it (one row per request and
server), and what each server announced about itself (its public name and its signed wallet binding). The demo
payout service, a separate process standing in for a network's operator, pays from these rows: it remembers the
last row it paid for, so a row is paid once, however often either side restarts.

One SQLite file (WAL mode, so the app writes while the payout service reads), schema version in
``PRAGMA user_version``. Writing the same (request, server) twice keeps the first row: a replayed event is not
counted twice. A file SQLite cannot read is left where it is and reported (:class:`LedgerError`); nothing starts
a fresh ledger in its place.

Rows a payout batch has settled (the batch keeps each server's total) are deleted by the payout service once they
are :data:`KEEP_SETTLED_S` old: the demo traffic adds about 16,000 rows a day, which would otherwise grow the file
by some 80 MB a month. Row ids are never reused (AUTOINCREMENT), so a service's "last row paid" stays right.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from farnode_desktop.core import databases
from farnode_desktop.core.errors import FarNodeError

SCHEMA_VERSION = 1
KEEP_SETTLED_S = 2 * 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    request_id TEXT NOT NULL,
    peer_id TEXT NOT NULL,
    tokens INTEGER NOT NULL CHECK (tokens >= 0),
    UNIQUE (request_id, peer_id));
CREATE TABLE IF NOT EXISTS peers (
    peer_id TEXT PRIMARY KEY,
    public_name TEXT NOT NULL DEFAULT '',
    statement TEXT NOT NULL DEFAULT '',
    signature TEXT NOT NULL DEFAULT '',
    seen_at REAL NOT NULL);
"""


class LedgerError(FarNodeError):
    pass


@dataclass(frozen=True)
class ServedRow:
    id: int
    at: float
    request_id: str
    peer_id: str
    tokens: int


@dataclass(frozen=True)
class AnnouncedPeer:
    """What a server announced about itself when it was last seen: its public name and its wallet binding
    (the statement and signature of ``core.payout.wallet.sign_node_binding``; empty when it announced none)."""

    peer_id: str
    public_name: str
    statement: str
    signature: str
    seen_at: float


class ServedLedger:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = databases.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(f"The served ledger {self.path} was written by a newer FarNode Desktop "
                                  f"(schema {version}); update the app to read it.")
            with self._db:
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"The served ledger {self.path} cannot be read ({e}). It was left as it is: move "
                              "it away to start a new one (payouts already made stay on the chain).") from e

    def record(self, request_id: str, at: float, served: Mapping[str, int]) -> int:
        """Record the tokens each server (peer id -> tokens) processed for one request; returns the rows added
        (0 when the request was already recorded)."""
        rows = [(at, request_id, peer, int(tokens)) for peer, tokens in served.items() if tokens > 0]
        with self._lock, self._db:
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO served (at, request_id, peer_id, tokens) VALUES (?,?,?,?)",
                                 rows)
            return self._db.total_changes - before

    def note_peer(self, peer_id: str, public_name: str, statement: str, signature: str, at: float) -> None:
        """Remember what a server announces now (the latest announcement replaces an older one)."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO peers (peer_id, public_name, statement, signature, seen_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(peer_id) DO UPDATE SET public_name=excluded.public_name, "
                "statement=excluded.statement, signature=excluded.signature, seen_at=excluded.seen_at",
                (peer_id, public_name or "", statement or "", signature or "", at))

    def rows_after(self, last_id: int, limit: int = 10_000) -> list[ServedRow]:
        with self._lock:
            cur = self._db.execute("SELECT id, at, request_id, peer_id, tokens FROM served WHERE id > ? "
                                   "ORDER BY id LIMIT ?", (last_id, limit))
            return [ServedRow(*r) for r in cur.fetchall()]

    def totals(self, after_id: int = 0, upto_id: int | None = None) -> dict[str, int]:
        """Tokens per server over the rows ``after_id < id <= upto_id``."""
        upto = upto_id if upto_id is not None else 2**62
        with self._lock:
            cur = self._db.execute("SELECT peer_id, SUM(tokens) FROM served WHERE id > ? AND id <= ? "
                                   "GROUP BY peer_id", (after_id, upto))
            return {peer: int(total) for peer, total in cur.fetchall()}

    def last_id(self) -> int:
        """The id of the last row ever recorded (also when settled rows were deleted since)."""
        with self._lock:
            return int(self._db.execute(
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM served), 0), "
                "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'served'), 0))").fetchone()[0])

    def prune(self, settled_upto_id: int, before: float) -> int:
        """Delete the rows up to ``settled_upto_id`` (settled by a payout batch) recorded before ``before``
        (epoch seconds); the number deleted. Freed pages are reused: the file stops growing."""
        with self._lock, self._db:
            return self._db.execute("DELETE FROM served WHERE id <= ? AND at < ?",
                                    (settled_upto_id, before)).rowcount

    def peer(self, peer_id: str) -> AnnouncedPeer | None:
        with self._lock:
            row = self._db.execute("SELECT peer_id, public_name, statement, signature, seen_at FROM peers "
                                   "WHERE peer_id = ?", (peer_id,)).fetchone()
        return AnnouncedPeer(*row) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
