"""The payout service's own progress: ``state_dir/payouts.sqlite3``.

What makes a payment happen once, whatever restarts:
1. a batch's intent is written in one transaction before anything is sent: the batch (id, the ledger rows it
   settles, ``after_id < id <= upto_id``), each server's share and the reason for it, each wallet's amount with
   its signed transaction (nonce, hash, raw bytes), and the servers' new carries (see ``amounts``);
2. the node's acceptance of each transaction (``sent_at``);
3. each payment found on the chain (``paid``: the transaction hash and block of its Transfer), then
   ``confirmed`` after the configured confirmations; the batch is ``done`` when every payment is.
A batch is never abandoned: a payment whose transaction can no longer be mined is signed again (a new attempt,
also written before it is sent) until it is paid. The next batch starts only when no batch is open.

A file SQLite cannot read is left where it is and reported: starting afresh would pay the ledger again.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from farnode_desktop.core import databases
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.demo_operator.amounts import from_text, to_text

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    after_id INTEGER NOT NULL,
    upto_id INTEGER NOT NULL,
    chain_id INTEGER NOT NULL,
    token TEXT NOT NULL,
    from_block INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'done')),
    done_at REAL);
CREATE TABLE IF NOT EXISTS shares (
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    peer_id TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    wallet TEXT,
    units TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (batch_id, peer_id));
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY,
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    wallet TEXT NOT NULL,
    amount TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    raw_tx TEXT NOT NULL,
    sent_at REAL,
    status TEXT NOT NULL CHECK (status IN ('signed', 'paid', 'confirmed')),
    paid_hash TEXT,
    block INTEGER,
    UNIQUE (batch_id, wallet));
CREATE TABLE IF NOT EXISTS attempts (
    tx_hash TEXT PRIMARY KEY,
    payment_id INTEGER NOT NULL REFERENCES payments(id),
    nonce INTEGER NOT NULL,
    raw_tx TEXT NOT NULL,
    signed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS carries (
    peer_id TEXT PRIMARY KEY,
    carry TEXT NOT NULL);
"""


class ProgressError(FarNodeError):
    title = "Payout progress problem"


@dataclass(frozen=True)
class Signed:
    nonce: int
    tx_hash: str
    raw_tx: str


@dataclass(frozen=True)
class Share:
    peer_id: str
    tokens: int
    wallet: str | None
    units: int
    reason: str


@dataclass(frozen=True)
class Payment:
    id: int
    batch_id: int
    wallet: str
    amount: int
    nonce: int
    tx_hash: str
    raw_tx: str
    sent_at: float | None
    status: str
    paid_hash: str | None
    block: int | None


@dataclass(frozen=True)
class Batch:
    id: int
    created_at: float
    after_id: int
    upto_id: int
    chain_id: int
    token: str
    from_block: int
    status: str
    done_at: float | None


_PAYMENT_COLS = "id, batch_id, wallet, amount, nonce, tx_hash, raw_tx, sent_at, status, paid_hash, block"
_BATCH_COLS = "id, created_at, after_id, upto_id, chain_id, token, from_block, status, done_at"


def _payment(row: tuple) -> Payment:
    values = list(row)
    values[3] = int(values[3])
    return Payment(*values)


class Progress:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = databases.connect(self.path, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ProgressError(f"{self.path} was written by a newer FarNode Desktop (schema {version}); "
                                    "update the app to go on paying.")
            with self._db:
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise ProgressError(f"The payout progress file {self.path} cannot be read ({e}). It was left as it "
                                "is and nothing is paid until it can be: starting a new one would pay the whole "
                                "served ledger again. Move it away only if that is what you want.") from e

    def close(self) -> None:
        self._db.close()

    # -- reading
    def cursor(self) -> int:
        """The last ledger row that a batch (open or done) settles."""
        return int(self._db.execute("SELECT COALESCE(MAX(upto_id), 0) FROM batches").fetchone()[0])

    def paid_upto_id(self) -> int:
        """The last ledger row up to which every batch is done."""
        row = self._db.execute("SELECT MIN(after_id) FROM batches WHERE status = 'open'").fetchone()
        return int(row[0]) if row[0] is not None else self.cursor()

    def next_batch_id(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM batches").fetchone()[0])

    def payment_count(self) -> int:
        """Payments (one transaction each) ever made or in flight."""
        return int(self._db.execute("SELECT COUNT(*) FROM payments").fetchone()[0])

    def done_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM batches WHERE status = 'done'").fetchone()[0])

    def last_done_at(self) -> float | None:
        return self._db.execute("SELECT MAX(done_at) FROM batches WHERE status = 'done'").fetchone()[0]

    def batch(self, batch_id: int) -> Batch:
        return Batch(*self._db.execute(f"SELECT {_BATCH_COLS} FROM batches WHERE id = ?", (batch_id,)).fetchone())

    def open_batches(self) -> list[Batch]:
        rows = self._db.execute(f"SELECT {_BATCH_COLS} FROM batches WHERE status = 'open' ORDER BY id")
        return [Batch(*r) for r in rows.fetchall()]

    def done_batches_newest_first(self, limit: int) -> list[Batch]:
        rows = self._db.execute(f"SELECT {_BATCH_COLS} FROM batches WHERE status = 'done' ORDER BY id DESC "
                                "LIMIT ?", (limit,))
        return [Batch(*r) for r in rows.fetchall()]

    def payments(self, batch_id: int) -> list[Payment]:
        rows = self._db.execute(f"SELECT {_PAYMENT_COLS} FROM payments WHERE batch_id = ? ORDER BY nonce, id",
                                (batch_id,))
        return [_payment(r) for r in rows.fetchall()]

    def payment(self, payment_id: int) -> Payment:
        return _payment(self._db.execute(f"SELECT {_PAYMENT_COLS} FROM payments WHERE id = ?",
                                         (payment_id,)).fetchone())

    def attempts(self, payment_id: int) -> list[Signed]:
        """Every transaction signed for a payment, newest first."""
        rows = self._db.execute("SELECT nonce, tx_hash, raw_tx FROM attempts WHERE payment_id = ? "
                                "ORDER BY signed_at DESC, nonce DESC", (payment_id,))
        return [Signed(*r) for r in rows.fetchall()]

    def known_hashes(self) -> set[str]:
        """Every transaction this service signed or found as a payment."""
        hashes = {r[0] for r in self._db.execute("SELECT tx_hash FROM attempts")}
        hashes |= {r[0] for r in self._db.execute("SELECT paid_hash FROM payments WHERE paid_hash IS NOT NULL")}
        return hashes

    def carry(self, peer_id: str) -> Fraction:
        row = self._db.execute("SELECT carry FROM carries WHERE peer_id = ?", (peer_id,)).fetchone()
        return from_text(row[0]) if row else Fraction(0)

    def shares(self, batch_id: int) -> list[Share]:
        rows = self._db.execute("SELECT peer_id, tokens, wallet, units, reason FROM shares WHERE batch_id = ? "
                                "ORDER BY peer_id", (batch_id,))
        return [Share(p, t, w, int(u), r) for p, t, w, u, r in rows.fetchall()]

    # -- writing
    def record_batch(self, *, after_id: int, upto_id: int, chain_id: int, token: str, from_block: int,
                     shares: list[Share], carries: dict[str, Fraction],
                     payments: list[tuple[str, int, Signed]]) -> int:
        """The batch's intent, in one transaction, before anything is sent; returns its id."""
        now = time.time()
        with self._db:
            if self._db.execute("SELECT 1 FROM batches WHERE status = 'open'").fetchone():
                raise ProgressError("A new batch was started while another is still open (a bug).")
            if after_id != self.cursor():
                raise ProgressError(f"A batch after ledger row {after_id} does not follow the last one "
                                    f"({self.cursor()}) (a bug).")
            cur = self._db.execute(
                "INSERT INTO batches (created_at, after_id, upto_id, chain_id, token, from_block, status, done_at) "
                "VALUES (?,?,?,?,?,?,?,?)", (now, after_id, upto_id, chain_id, token, from_block,
                                             "open" if payments else "done", None if payments else now))
            batch_id = int(cur.lastrowid)
            self._db.executemany("INSERT INTO shares (batch_id, peer_id, tokens, wallet, units, reason) "
                                 "VALUES (?,?,?,?,?,?)",
                                 [(batch_id, s.peer_id, s.tokens, s.wallet, str(s.units), s.reason) for s in shares])
            for wallet, amount, signed in payments:
                cur = self._db.execute(
                    "INSERT INTO payments (batch_id, wallet, amount, nonce, tx_hash, raw_tx, status) "
                    "VALUES (?,?,?,?,?,?,'signed')", (batch_id, wallet, str(amount), signed.nonce, signed.tx_hash,
                                                      signed.raw_tx))
                self._db.execute("INSERT INTO attempts (tx_hash, payment_id, nonce, raw_tx, signed_at) "
                                 "VALUES (?,?,?,?,?)", (signed.tx_hash, cur.lastrowid, signed.nonce, signed.raw_tx,
                                                        now))
            self._db.executemany("INSERT INTO carries (peer_id, carry) VALUES (?,?) ON CONFLICT(peer_id) "
                                 "DO UPDATE SET carry = excluded.carry",
                                 [(peer, to_text(c)) for peer, c in carries.items()])
        return batch_id

    def add_attempt(self, payment_id: int, signed: Signed) -> None:
        """A new transaction for a payment whose earlier ones can no longer be mined (before it is sent)."""
        with self._db:
            self._db.execute("INSERT INTO attempts (tx_hash, payment_id, nonce, raw_tx, signed_at) "
                             "VALUES (?,?,?,?,?)", (signed.tx_hash, payment_id, signed.nonce, signed.raw_tx,
                                                    time.time()))
            self._db.execute("UPDATE payments SET nonce = ?, tx_hash = ?, raw_tx = ?, sent_at = NULL, "
                             "status = 'signed', paid_hash = NULL, block = NULL WHERE id = ?",
                             (signed.nonce, signed.tx_hash, signed.raw_tx, payment_id))

    def mark_sent(self, payment_id: int) -> None:
        with self._db:
            self._db.execute("UPDATE payments SET sent_at = ? WHERE id = ?", (time.time(), payment_id))

    def mark_paid(self, payment_id: int, tx_hash: str, block: int) -> None:
        with self._db:
            self._db.execute("UPDATE payments SET status = 'paid', paid_hash = ?, block = ? WHERE id = ?",
                             (tx_hash, block, payment_id))

    def mark_confirmed(self, payment_id: int) -> None:
        with self._db:
            self._db.execute("UPDATE payments SET status = 'confirmed' WHERE id = ?", (payment_id,))

    def reopen(self, payment_id: int) -> None:
        """The chain lost this payment (it restarted from an older state): pay it again."""
        with self._db:
            batch_id = self._db.execute("SELECT batch_id FROM payments WHERE id = ?", (payment_id,)).fetchone()[0]
            self._db.execute("UPDATE payments SET status = 'signed', paid_hash = NULL, block = NULL, "
                             "sent_at = NULL WHERE id = ?", (payment_id,))
            self._db.execute("UPDATE batches SET status = 'open', done_at = NULL WHERE id = ?", (batch_id,))

    def finish(self, batch_id: int) -> None:
        with self._db:
            self._db.execute("UPDATE batches SET status = 'done', done_at = ? WHERE id = ?", (time.time(), batch_id))
