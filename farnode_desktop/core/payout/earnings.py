"""Earnings: reward-token payouts to the wallet read from the chain, kept exact across restarts and reorgs.

:class:`EarningsSync` reads the reward token's ERC-20 ``Transfer`` logs *from* the configured payout senders
*to* the wallet (a topics filter) and keeps them in its own SQLite file (``<data dir>/earnings.sqlite3``):

- **Resume**: each log chunk is stored in one transaction together with the new last synced block and its
  hash, so a crash or shutdown loses nothing and the next sync continues where this one stopped.
- **Confirmations**: only payouts with at least ``settings.chain.confirmations`` blocks mined on top of
  their block (block <= head - confirmations) are stored and counted as paid; newer ones are re-read at every sync and shown as *pending* (never stored, so never
  counted twice).
- **Reorganisations**: before syncing on, the stored hash of the last synced block is compared with the
  chain's. On a mismatch the fork point is found (binary search over stored block hashes: checkpoints and
  payout blocks), everything above it is deleted and synced again, so no payout is counted twice or kept
  after the chain dropped it.
- **Outages**: when the RPC is unreachable the last synced data is kept and the snapshot says it is stale
  (and since when).
- **Estimate**: ``estimated_unpaid`` = tokens served since the last payout (since ever, before the first)
  x ``settings.chain.reward_per_1k_tokens`` / 1000, only when the network publishes a rate (None otherwise).
  It is an ESTIMATE (the payout service decides what is paid) and must be labelled so wherever it is shown.
- **As money**: the token's symbol (ERC-20 ``symbol()``, read once per token and kept), the next payout
  expected from the intervals between past payouts, and what is missing before anything can be read (a
  wallet, the chain settings), so the faces show amounts with their unit and say why there is nothing yet.

Amounts are :class:`~decimal.Decimal` in whole tokens (the raw integer scaled by the token's decimals).
Every sync publishes an :class:`EarningsSnapshot` on the event bus topic ``earnings.update``.
"""

from __future__ import annotations

import csv
import decimal
import io
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path

from farnode_desktop.core import topics as T
from farnode_desktop.core.atomic import atomic_write_text
from farnode_desktop.core.errors import FarNodeError, user_facing_os_errors
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.payout.chain import (
    TRANSFER_TOPIC,
    ChainClient,
    ChainError,
    ChainUnavailableError,
    LogEntry,
    RpcError,
    address_from_topic,
    topic_for_address,
)
from farnode_desktop.core.payout.wallet import WalletError, parse_address
from farnode_desktop.core.settings import ChainSettings

log = logging.getLogger(__name__)

TOPIC = T.EARNINGS_UPDATE
CHECKPOINTS_KEPT = 256
_CTX = decimal.Context(prec=100)  # uint256 has 78 digits: never round

#: ``tokens_served_between(t0, t1)``: tokens the node served in [t0, t1) (epoch seconds); from the metrics store.
TokensServed = Callable[[float, float], int]
#: The next payout is expected from the intervals between the last this many payouts (their median).
PAYOUT_INTERVALS_KEPT = 6
#: What the faces call the amounts when the token has no readable symbol.
UNIT_FALLBACK = "reward tokens"
#: ``EarningsSnapshot.setup_missing``: what must be set up before any earnings can be read.
MISSING_WALLET, MISSING_CHAIN = "wallet", "chain"


@dataclass(frozen=True)
class EarningsSnapshot:
    """Payload of ``earnings.update``. Amounts in whole reward tokens; times in epoch seconds.

    ``balance``: the wallet's token balance at the last successful sync (None before the first one).
    ``paid_total``: confirmed payouts. ``pending_total``: payouts seen but not yet
    ``confirmations`` deep. ``estimated_unpaid``: an ESTIMATE of what the work since the last payout is
    worth (None without a served-tokens source or without a published rate). ``stale``: the shown data
    could not be refreshed (see ``error``), ``stale_since``: since when. ``error``: "" or the user-facing
    message of the last failure.

    For showing them as money: ``symbol`` (the token's ERC-20 symbol, "" until read or when it has none: use
    :attr:`unit`), ``rate_per_1k_tokens`` (the network's published rate; 0: none, so no estimate),
    ``next_payout_time`` (when the next payout is expected, from ``payout_interval_s``, the median interval
    between the last payouts; None before two payouts), ``setup_missing`` (:data:`MISSING_WALLET`,
    :data:`MISSING_CHAIN` or "": what must be set up before anything can be read).
    """

    time: float
    balance: Decimal | None
    paid_total: Decimal
    pending_total: Decimal
    estimated_unpaid: Decimal | None
    last_synced_block: int
    stale: bool
    stale_since: float | None
    error: str
    head_block: int = 0
    payout_count: int = 0
    pending_count: int = 0
    tokens_since_last_payout: int | None = None
    last_payout_time: float | None = None
    reorgs_undone: int = 0
    symbol: str = ""
    rate_per_1k_tokens: float = 0.0
    next_payout_time: float | None = None
    payout_interval_s: float | None = None
    setup_missing: str = ""

    @property
    def unit(self) -> str:
        """What the amounts are counted in: the token's symbol, else "reward tokens"."""
        return self.symbol or UNIT_FALLBACK


@dataclass(frozen=True)
class Payout:
    time: int  # block timestamp, epoch seconds
    block_number: int
    log_index: int
    tx_hash: str
    block_hash: str
    sender: str
    amount: Decimal  # whole tokens
    amount_raw: int  # smallest unit
    confirmed: bool


@dataclass(frozen=True)
class DailyTotal:
    day: date
    paid: Decimal  # confirmed payouts that day
    cumulative: Decimal  # confirmed payouts up to and including that day
    estimated: Decimal | None  # ESTIMATE of that day's work (served tokens x rate), None without a source


class EarningsConfigError(FarNodeError):
    title = "Earnings are not set up"


class EarningsSync:
    """Syncs payouts for one wallet and chain configuration; safe to call from a worker thread.

    ``chain``: the chain settings; ``wallet_address``: the payout address; ``db_path``: its SQLite file;
    ``client``: a :class:`ChainClient` (built from ``chain.rpc_url`` when omitted).
    """

    def __init__(self, chain: ChainSettings, wallet_address: str, db_path: Path, *,
                 bus: EventBus | None = None, tokens_served_between: TokensServed | None = None,
                 client: ChainClient | None = None, clock: Callable[[], float] = time.time):
        self.chain = chain
        self.wallet_address = wallet_address
        self.db_path = Path(db_path)
        self.bus = bus
        self.tokens_served_between = tokens_served_between
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[Payout] = []
        self._head = 0
        self._chain_checked = False
        self.reorgs_undone = 0
        self._init_db()

    # ------------------------------------------------------------------------------------------ storage
    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with user_facing_os_errors("opening the earnings database"):
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.db_path, timeout=30)
        except sqlite3.Error as exc:
            raise FarNodeError(f"The earnings database {self.db_path} cannot be opened ({exc}). Check the "
                               "disk and folder permissions.", title="Earnings database problem") from exc
        try:
            with conn:
                yield conn
        except sqlite3.DatabaseError as exc:
            raise FarNodeError(f"The earnings database {self.db_path.name} failed ({exc}). If it is damaged, "
                               "delete it: it is rebuilt from the chain at the next sync.",
                               title="Earnings database problem") from exc
        finally:
            conn.close()

    def _init_db(self) -> None:
        with self._db() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.executescript("""
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS payouts (
                    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, tx_hash TEXT NOT NULL,
                    block_hash TEXT NOT NULL, time INTEGER NOT NULL, sender TEXT NOT NULL,
                    amount_raw TEXT NOT NULL, PRIMARY KEY (block_number, log_index));
                CREATE TABLE IF NOT EXISTS checkpoints (block_number INTEGER PRIMARY KEY, block_hash TEXT NOT NULL);
            """)

    def _meta(self, c: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
        row = c.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    @staticmethod
    def _set_meta(c: sqlite3.Connection, **values: object) -> None:
        c.executemany("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                      [(k, json.dumps(v)) for k, v in values.items()])

    def _get(self, key: str, default: object = None) -> object:
        with self._db() as c:
            raw = self._meta(c, key)
        return default if raw is None else json.loads(raw)

    # ------------------------------------------------------------------------------------------- config
    def setup_missing(self) -> str:
        """What must be set up before anything can be read: a wallet first (nothing is paid without one),
        then the chain settings; "" when both are there."""
        ch = self.chain
        if not self.wallet_address:
            return MISSING_WALLET
        if not (ch.rpc_url and ch.chain_id and ch.token_address and ch.payout_senders):
            return MISSING_CHAIN
        return ""

    def _validated(self) -> tuple[str, str, list[str]]:
        ch = self.chain
        missing = [name for name, v in (("RPC URL", ch.rpc_url), ("chain id", ch.chain_id),
                                        ("reward token address", ch.token_address),
                                        ("payout sender address", ch.payout_senders),
                                        ("payout wallet", self.wallet_address)) if not v]
        if missing:
            raise EarningsConfigError("Earnings cannot be read yet: enter the " + ", ".join(missing) +
                                      " in the earnings settings" +
                                      (" and create or import a wallet" if not self.wallet_address else "") + ".")
        try:
            wallet = parse_address(self.wallet_address, what="payout wallet address")
            token = parse_address(ch.token_address, what="reward token address")
            senders = sorted({parse_address(s, what="payout sender address") for s in ch.payout_senders})
        except WalletError as exc:
            raise EarningsConfigError(exc.message) from None
        return wallet, token, senders

    def _scope(self, wallet: str, token: str, senders: list[str]) -> str:
        return json.dumps({"chain_id": self.chain.chain_id, "token": token, "wallet": wallet,
                           "senders": senders, "start_block": self.chain.start_block}, sort_keys=True)

    def _ensure_scope(self, scope: str) -> None:
        """Forget stored payouts when the wallet, token, senders, chain or start block changed."""
        with self._db() as c:
            if self._meta(c, "scope") != json.dumps(scope):
                c.execute("DELETE FROM payouts")
                c.execute("DELETE FROM checkpoints")
                c.execute("DELETE FROM meta")
                self._set_meta(c, scope=scope, synced_block=self.chain.start_block - 1)
                self._pending = []

    def client(self) -> ChainClient:
        if self._client is None:
            self._client = ChainClient(self.chain.rpc_url)
        return self._client

    def close(self) -> None:
        """Close its RPC connections (a later sync connects again)."""
        if self._client is not None:
            self._client.close()

    # --------------------------------------------------------------------------------------------- sync
    def sync_once(self) -> EarningsSnapshot:
        """Bring the payouts up to date, publish and return a snapshot. Never raises for chain or config
        problems: they are reported in the snapshot (``error``, ``stale``)."""
        with self._lock:
            error = ""
            ok = configured = False
            try:
                wallet, token, senders = self._validated()
                configured = True
                self._ensure_scope(self._scope(wallet, token, senders))
                self._sync(wallet, token, senders)
                ok = True
            except FarNodeError as exc:
                error = exc.message
                if configured:
                    log.warning("earnings sync failed: %s", exc.message)
            finally:
                self.close()  # the next sync is a minute away: no idle connection is kept until then
            now = self._clock()
            with self._db() as c:
                if ok:
                    self._set_meta(c, stale_since=None, last_error="", last_success=now)
                elif not configured:  # nothing to be stale about: say what is missing
                    self._set_meta(c, stale_since=None, last_error=error)
                else:
                    since = json.loads(self._meta(c, "stale_since", "null") or "null")
                    self._set_meta(c, stale_since=since if since is not None else now, last_error=error)
            snap = self.snapshot()
        if self.bus is not None:
            self.bus.publish(TOPIC, snap)
        return snap

    def _sync(self, wallet: str, token: str, senders: list[str]) -> None:
        client = self.client()
        if not self._chain_checked:
            client.check_chain_id(self.chain.chain_id)
            self._chain_checked = True
        decimals = self._get("decimals")
        if decimals is None:
            decimals = client.decimals(token)
            with self._db() as c:
                self._set_meta(c, decimals=decimals)
        if self._get("symbol") is None:  # once per token (a new scope forgets it)
            try:
                symbol = client.symbol(token)
            except RpcError:  # the contract has no symbol() (it reverted): amounts stay "reward tokens"
                symbol = ""
            with self._db() as c:
                self._set_meta(c, symbol=symbol)
        head = client.block_number()
        safe = head - max(0, self.chain.confirmations)
        synced = self._undo_reorg(client, int(self._get("synced_block")))  # type: ignore[arg-type]
        topics = [TRANSFER_TOPIC, [topic_for_address(s) for s in senders], topic_for_address(wallet)]
        timestamps: dict[int, int] = {}
        if safe > synced:
            for lo, hi, logs in client.iter_logs(token, topics, synced + 1, safe):
                rows = [self._row(client, entry, timestamps) for entry in logs if not entry.removed]
                top = client.get_block(hi)
                if top is None:
                    raise ChainError(f"The RPC lost block {hi} while syncing; it is retried at the next sync.")
                with self._db() as c:
                    c.executemany("INSERT OR REPLACE INTO payouts VALUES (?,?,?,?,?,?,?)", rows)
                    c.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?)", (hi, top.hash))
                    c.execute("DELETE FROM checkpoints WHERE block_number NOT IN (SELECT block_number FROM "
                              "checkpoints ORDER BY block_number DESC LIMIT ?)", (CHECKPOINTS_KEPT,))
                    self._set_meta(c, synced_block=hi)
                log.debug("earnings: blocks %d-%d: %d payouts", lo, hi, len(rows))
                synced = hi
        pending: list[Payout] = []
        if head > synced:
            for entry in client.get_logs(token, topics, synced + 1, head):
                if not entry.removed:
                    pending.append(self._payout(self._row(client, entry, timestamps), int(decimals), False))
        balance = client.balance_of(token, wallet)
        with self._db() as c:
            self._set_meta(c, balance_raw=str(balance), head_block=head)
        self._pending = pending
        self._head = head

    def _row(self, client: ChainClient, e: LogEntry, timestamps: dict[int, int]) -> tuple:
        ts = e.block_timestamp
        if ts is None:
            if e.block_number not in timestamps:
                blk = client.get_block(e.block_number)
                if blk is None:
                    raise ChainError(f"The RPC lost block {e.block_number} while syncing; it is retried at "
                                     "the next sync.")
                timestamps[e.block_number] = blk.timestamp
            ts = timestamps[e.block_number]
        amount = int(e.data, 16) if e.data not in ("", "0x") else 0
        return (e.block_number, e.log_index, e.tx_hash, e.block_hash, ts, address_from_topic(e.topics[1]),
                str(amount))

    def _undo_reorg(self, client: ChainClient, synced: int) -> int:
        """If the chain no longer has the last synced block, roll back to the fork point; return the new
        last synced block."""
        if synced < self.chain.start_block:
            return synced
        with self._db() as c:
            cands = {b: h for b, h in c.execute("SELECT block_number, block_hash FROM checkpoints")}
            for b, h in c.execute("SELECT DISTINCT block_number, block_hash FROM payouts"):
                if cands.get(b, h) != h:
                    cands[b] = ""  # conflicting hashes: that block cannot be a good fork point
                else:
                    cands[b] = h
        top = cands.get(synced)
        blk = client.get_block(synced)
        if top is not None and blk is not None and blk.hash == top:
            return synced
        # Blocks that still match form a prefix of the sorted candidates: binary search for its end.
        blocks = sorted(b for b in cands if b <= synced)
        lo, hi = 0, len(blocks)  # invariant: blocks[:lo] match (assumed), blocks[hi:] do not
        while lo < hi:
            mid = (lo + hi) // 2
            got = client.get_block(blocks[mid])
            if got is not None and cands[blocks[mid]] and got.hash == cands[blocks[mid]]:
                lo = mid + 1
            else:
                hi = mid
        fork = blocks[lo - 1] if lo > 0 else self.chain.start_block - 1
        with self._db() as c:
            removed = c.execute("DELETE FROM payouts WHERE block_number > ?", (fork,)).rowcount
            c.execute("DELETE FROM checkpoints WHERE block_number > ?", (fork,))
            if fork >= self.chain.start_block:
                c.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?)", (fork, cands[fork]))
            self._set_meta(c, synced_block=fork)
        self.reorgs_undone += 1
        log.warning("earnings: chain reorganisation below block %d: rolled back to block %d (%d payouts "
                    "removed, re-syncing)", synced, fork, removed)
        return fork

    # ------------------------------------------------------------------------------------------ reading
    def _decimals(self) -> int:
        return int(self._get("decimals", 18))  # type: ignore[arg-type]

    @staticmethod
    def _payout(row: tuple, decimals: int, confirmed: bool) -> Payout:
        block, index, tx, bhash, ts, sender, raw = row
        return Payout(time=int(ts), block_number=int(block), log_index=int(index), tx_hash=tx, block_hash=bhash,
                      sender=sender, amount=_CTX.scaleb(Decimal(int(raw)), -decimals), amount_raw=int(raw),
                      confirmed=confirmed)

    def payouts(self, *, include_pending: bool = True) -> list[Payout]:
        """Stored (confirmed) payouts, then the pending ones, in chain order."""
        decimals = self._decimals()
        with self._db() as c:
            rows = c.execute("SELECT block_number, log_index, tx_hash, block_hash, time, sender, amount_raw "
                             "FROM payouts ORDER BY block_number, log_index").fetchall()
        out = [self._payout(r, decimals, True) for r in rows]
        return out + (list(self._pending) if include_pending else [])

    def _estimate(self, since: float | None, now: float) -> tuple[int | None, Decimal | None]:
        if self.tokens_served_between is None:
            return None, None
        tokens = int(self.tokens_served_between(since or 0.0, now))
        if not self.chain.reward_per_1k_tokens > 0:  # no published rate: no estimate (not an estimate of 0)
            return tokens, None
        rate = Decimal(str(self.chain.reward_per_1k_tokens))
        return tokens, _CTX.divide(_CTX.multiply(Decimal(tokens), rate), Decimal(1000))

    @staticmethod
    def _next_payout(payouts: list[Payout]) -> tuple[float | None, float | None]:
        """(when the next payout is expected, the interval it is expected from): the last payout's time plus
        the median interval between the last :data:`PAYOUT_INTERVALS_KEPT` payouts (several transfers of one
        block count once), or, when the last two intervals agree (within 10 %), their mean: a network that
        changed how often it pays (the embedded default goes from every 3 minutes to hourly) is followed from
        its second payout on, while one late payout alone moves nothing. (None, None) before two payouts."""
        times = sorted({p.time for p in payouts})[-(PAYOUT_INTERVALS_KEPT + 1):]
        in_order = [b - a for a, b in zip(times, times[1:], strict=False)]
        if not in_order:
            return None, None
        if len(in_order) >= 2 and abs(in_order[-1] - in_order[-2]) <= 0.1 * max(in_order[-1], in_order[-2]):
            return float(times[-1]) + (in_order[-1] + in_order[-2]) / 2, float(in_order[-1] + in_order[-2]) / 2
        gaps = sorted(in_order)
        mid = len(gaps) // 2
        interval = float(gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2)
        return float(times[-1]) + interval, interval

    def snapshot(self) -> EarningsSnapshot:
        """The current state from the stored data (no RPC calls)."""
        payouts = self.payouts()
        confirmed = [p for p in payouts if p.confirmed]
        pending = [p for p in payouts if not p.confirmed]
        with self._db() as c:
            meta = {k: json.loads(v) for k, v in c.execute("SELECT key, value FROM meta")}
        decimals = int(meta.get("decimals", 18))
        bal = meta.get("balance_raw")
        now = self._clock()
        last_time = float(payouts[-1].time) if payouts else None
        tokens, estimate = self._estimate(last_time, now)
        next_time, interval = self._next_payout(payouts)
        stale_since = meta.get("stale_since")
        return EarningsSnapshot(
            time=now,
            balance=_CTX.scaleb(Decimal(int(bal)), -decimals) if bal is not None else None,
            paid_total=_sum(p.amount for p in confirmed),
            pending_total=_sum(p.amount for p in pending),
            estimated_unpaid=estimate,
            last_synced_block=int(meta.get("synced_block", self.chain.start_block - 1)),
            stale=stale_since is not None,
            stale_since=stale_since,
            error=meta.get("last_error", ""),
            head_block=int(meta.get("head_block", 0)),
            payout_count=len(confirmed),
            pending_count=len(pending),
            tokens_since_last_payout=tokens,
            last_payout_time=last_time,
            reorgs_undone=self.reorgs_undone,
            symbol=str(meta.get("symbol") or ""),
            rate_per_1k_tokens=float(self.chain.reward_per_1k_tokens),
            next_payout_time=next_time,
            payout_interval_s=interval,
            setup_missing=self.setup_missing(),
        )

    def daily_totals(self, tz: tzinfo = timezone.utc) -> list[DailyTotal]:
        """Per-day confirmed payouts, their running total, and the ESTIMATED value of each day's work (for
        reconciling paid vs estimated), from the first payout's day to today, in time zone ``tz``."""
        confirmed = [p for p in self.payouts(include_pending=False)]
        if not confirmed:
            return []
        per_day: dict[date, Decimal] = {}
        for p in confirmed:
            d = datetime.fromtimestamp(p.time, tz).date()
            per_day[d] = _CTX.add(per_day.get(d, Decimal(0)), p.amount)
        day, last = min(per_day), max(max(per_day), datetime.fromtimestamp(self._clock(), tz).date())
        out: list[DailyTotal] = []
        running = Decimal(0)
        while day <= last:
            paid = per_day.get(day, Decimal(0))
            running = _CTX.add(running, paid)
            t0 = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
            t1 = (datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(days=1)).timestamp()
            out.append(DailyTotal(day, paid, running, self._estimate(t0, t1)[1]))
            day += timedelta(days=1)
        return out

    def export_csv(self, path: Path) -> int:
        """Write every payout (confirmed and pending) to ``path`` as CSV, atomically; return the row count."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["time_utc", "block", "log_index", "tx_hash", "from", "amount", "status"])
        rows = self.payouts()
        for p in rows:
            w.writerow([datetime.fromtimestamp(p.time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        p.block_number, p.log_index, p.tx_hash, p.sender, format(p.amount, "f"),
                        "confirmed" if p.confirmed else "pending"])
        atomic_write_text(Path(path), buf.getvalue(), mode=0o644)
        return len(rows)


def _sum(values: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for v in values:
        total = _CTX.add(total, v)
    return total


__all__ = ["MISSING_CHAIN", "MISSING_WALLET", "TOPIC", "UNIT_FALLBACK", "ChainUnavailableError", "DailyTotal",
           "EarningsConfigError", "EarningsSnapshot", "EarningsSync", "Payout", "TokensServed"]
