"""The payout loop: one batch every ``batch_interval_s``, unfinished batches resolved first.

Each cycle, in this order (a cycle that cannot go on logs why and leaves the rest to the next one):
1. the chain: the node answers, is the configured chain and has the token;
2. history: the newest done batches still have their transfers on the chain; a chain restarted from an older
   state may have lost the newest ones, which are then reopened and paid again with the same signed
   transactions (their nonces are free again);
3. open batches: each payment is settled from the chain, never from memory: its transfer found in the receipt
   of one of its transactions; else, while the operator's nonce has not passed the transaction's, the same
   signed transaction is handed to the node again (the same hash: it can be mined once only); else its nonce
   was taken by another transaction, and, unless its transfer shows in the token's Transfer logs, it is signed
   again with a new nonce (written down before it is sent);
4. a new batch, only when no batch is open: the ledger's rows after the last batch, tokens summed per server,
   a decision per server (``decide``), amounts per wallet (``amounts``), the operator's funds checked, the
   transfers signed and the intent written (``progress``) before the first is sent.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from farnode_desktop.core.atomic import atomic_write_json
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.payout.served import KEEP_SETTLED_S, ServedLedger
from farnode_desktop.demo_operator.amounts import settle, units_per_token, whole_units
from farnode_desktop.demo_operator.chain import OperatorChain, OutOfFunds
from farnode_desktop.demo_operator.decide import decide
from farnode_desktop.demo_operator.progress import Batch, Payment, Progress, Share

log = logging.getLogger("farnode.demo_operator")

HISTORY_BATCHES = 100  # how far back a chain that lost its newest blocks is checked
POLL_S = 0.5
REHAND_S = 60.0  # a transaction not mined this long after it was handed to the node is handed to it again
TAKEN_GRACE_S = 10.0  # a nonce passed with no receipt or log of the payment this long: another transaction took it


@dataclass(frozen=True)
class Config:
    rpc_url: str
    chain_id: int
    token_address: str
    ledger_path: Path
    state_dir: Path
    rate_per_1k_tokens: float
    batch_interval_s: float = 180.0
    confirmations: int = 1
    #: After this many payments (transactions) the batches come every ``later_interval_s`` instead (None: never).
    #: A chain keeps every transaction for good: the embedded default's local chain would grow by ~4 kB for each.
    quick_payments: int = 0
    later_interval_s: float | None = None


class PayoutService:
    def __init__(self, config: Config, chain: OperatorChain, progress: Progress, stop: threading.Event) -> None:
        self.config = config
        self.chain = chain
        self.progress = progress
        self.stop = stop
        self._ledger: ServedLedger | None = None
        self._handed: dict[str, float] = {}  # transaction hash -> when this run last handed it to the node
        self._taken: dict[str, float] = {}  # transaction hash -> when its nonce was first seen passed without it
        self.next_batch_at = time.time()
        self._idle_at: int | None = None  # the ledger row the service last said it had nothing after

    # ------------------------------------------------------------------------------------------ the loop
    def run(self) -> None:
        """Pay every ``batch_interval_s`` until ``stop`` is set. The first cycle, at once, only resolves what a
        previous run left open."""
        log.info("demo payout service: operator %s, token %s on chain %s at %s, %s reward tokens per 1000 "
                 "tokens, a batch every %s s, %s confirmation(s)", self.chain.address, self.chain.token_address,
                 self.config.chain_id, self.config.rpc_url, self.config.rate_per_1k_tokens,
                 self.config.batch_interval_s, self.config.confirmations)
        if self.config.later_interval_s is not None:
            log.info("after %d payments, a batch every %s s", self.config.quick_payments,
                     self.config.later_interval_s)
        started = time.time()
        self.next_batch_at = started + self.interval()
        self.write_status()
        self.cycle(new_batch=False, started=started)
        while not self.stop.wait(max(0.0, self.next_batch_at - time.time())):
            started = time.time()
            self.next_batch_at = started + self.interval()
            self.cycle(started=started)
        log.info("stopped")

    def interval(self) -> float:
        """The time from one batch to the next: ``batch_interval_s`` until ``quick_payments`` payments were made,
        then ``later_interval_s`` (when set)."""
        c = self.config
        if c.later_interval_s is not None and self.progress.payment_count() >= c.quick_payments:
            return c.later_interval_s
        return c.batch_interval_s

    def cycle(self, new_batch: bool = True, started: float | None = None) -> None:
        """Resolve open batches, then (``new_batch``) pay what was served since. The next batch is planned from
        ``started`` with the interval that holds after this cycle's payments."""
        try:
            self.chain.check()
            self.check_history()
            if self.settle_open() and new_batch:
                if self.start_batch() is not None:
                    self.settle_open()
        except FarNodeError as e:
            said = e.message.rstrip()
            said += "" if said.endswith((".", "?", "!")) else "."
            log.warning("%s Retrying at the next batch (in %.0f s).", said, max(0.0, self.next_batch_at - time.time()))
        except Exception as e:  # a bug or a node answering nonsense: said, never swallowed, retried
            log.error("unexpected %s: %s; retrying at the next batch", type(e).__name__, e, exc_info=True)
        finally:
            if started is not None:
                self.next_batch_at = started + self.interval()
            try:
                self.write_status()
            except FarNodeError as e:
                log.error("cannot write %s: %s", self.config.state_dir / "operator.json", e.message)

    def write_status(self) -> None:
        atomic_write_json(self.config.state_dir / "operator.json", {
            "operator": self.chain.address, "rate_per_1k_tokens": self.config.rate_per_1k_tokens,
            "token_address": self.chain.token_address, "last_batch_at": self.progress.last_done_at(),
            "next_batch_at": self.next_batch_at, "paid_upto_id": self.progress.paid_upto_id(),
            "batches": self.progress.done_count()}, mode=0o644)

    def ledger(self) -> ServedLedger:
        if self._ledger is None:
            self._ledger = ServedLedger(self.config.ledger_path)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
        self.progress.close()

    # --------------------------------------------------------------------------------------- history
    def check_history(self) -> None:
        """Reopen the newest done batches whose transfers the chain no longer has."""
        for batch in self.progress.done_batches_newest_first(HISTORY_BATCHES):
            payments = self.progress.payments(batch.id)
            if not payments:
                continue
            lost = []
            for p in payments:
                r = self.chain.receipt(p.paid_hash) if p.paid_hash else None
                if r is None or not self.chain.pays(r, p.wallet, p.amount):
                    lost.append(p)
            if not lost:
                return
            for p in lost:
                log.warning("batch %d: the chain no longer has the payment of %s to %s (transaction %s): it "
                            "was restarted from an older state; paying it again", batch.id,
                            self._units(p.amount), p.wallet, p.paid_hash)
                self.progress.reopen(p.id)
                self._handed.pop(p.tx_hash, None)

    # --------------------------------------------------------------------------------------- settling
    def settle_open(self, wait_s: float | None = None) -> bool:
        """Resolve the open batches from the chain, waiting up to ``wait_s`` (default: the batch interval, at
        most 30 s) for their transactions to be mined and confirmed; True when none is left open."""
        wait = min(self.config.batch_interval_s, 30.0) if wait_s is None else wait_s
        deadline = time.monotonic() + wait
        while True:
            open_batches = self.progress.open_batches()
            for batch in open_batches:
                self._settle_batch(batch)
            if not self.progress.open_batches():
                return True
            if time.monotonic() >= deadline or self.stop.wait(POLL_S):
                left = [b.id for b in self.progress.open_batches()]
                log.info("batch %s not settled yet (waiting for the chain); resolved first at the next cycle",
                         ", ".join(map(str, left)))
                return False

    def _settle_batch(self, batch: Batch) -> None:
        head = None
        resign: list[Payment] = []
        for p in self.progress.payments(batch.id):
            if p.status == "signed":
                if self._settle_payment(batch, p):
                    resign.append(p)
                    continue
                p = self.progress.payment(p.id)
            if p.status == "paid":
                r = self.chain.receipt(p.paid_hash)
                if r is None or not self.chain.pays(r, p.wallet, p.amount):  # gone again (a reorg, a restart)
                    self.progress.reopen(p.id)
                    self._handed.pop(p.tx_hash, None)
                    continue
                head = self.chain.head() if head is None else head
                if head - p.block + 1 >= self.config.confirmations:
                    self.progress.mark_confirmed(p.id)
        if resign:  # after the others were handed to the node again, so that the new nonces follow theirs
            self._check_funds(sum(p.amount for p in resign))
            nonce = self.chain.nonce("pending")
            for i, p in enumerate(resign):
                self.progress.add_attempt(p.id, self.chain.sign_transfer(p.wallet, p.amount, nonce + i))
                self._hand(batch.id, p.id)
        payments = self.progress.payments(batch.id)
        if all(p.status == "confirmed" for p in payments):
            self.progress.finish(batch.id)
            total = sum(p.amount for p in payments)
            log.info("batch %d done: %s paid to %d wallet(s) for ledger rows %d-%d, %d confirmation(s)",
                     batch.id, self._units(total), len(payments), batch.after_id + 1, batch.upto_id,
                     self.config.confirmations)

    def _settle_payment(self, batch: Batch, p: Payment) -> bool:
        """Settle one payment from the chain; True when none of its transactions can be mined any more (it
        must be signed again)."""
        attempts = self.progress.attempts(p.id)
        failed = False
        for a in attempts:
            r = self.chain.receipt(a.tx_hash)
            if r is None:
                continue
            if self.chain.pays(r, p.wallet, p.amount):
                self.progress.mark_paid(p.id, r.tx_hash, r.block)
                log.info("batch %d: paid %s to %s in transaction %s (block %d)", batch.id,
                         self._units(p.amount), p.wallet, r.tx_hash, r.block)
                return False
            if a.tx_hash == p.tx_hash:
                failed = True
                log.warning("batch %d: transaction %s to pay %s to %s was mined without the transfer "
                            "(reverted); signing it again", batch.id, a.tx_hash, self._units(p.amount), p.wallet)
        if not failed:
            if self.chain.nonce("latest") <= p.nonce:
                if time.monotonic() - self._handed.get(p.tx_hash, -REHAND_S) >= REHAND_S:
                    outcome = self.chain.send(p.raw_tx)
                    self._handed[p.tx_hash] = time.monotonic()
                    if outcome != "nonce used":
                        if p.sent_at is None:
                            self.progress.mark_sent(p.id)
                        log.info("batch %d: transaction %s (nonce %d) paying %s to %s handed to the node again "
                                 "(%s)", batch.id, p.tx_hash, p.nonce, self._units(p.amount), p.wallet,
                                 "it had it already" if outcome == "known" else "it did not have it")
                return False
            else:
                found = self.chain.find_transfer(p.wallet, p.amount, batch.from_block,
                                                 self.progress.known_hashes())
                if found is not None:
                    self.progress.mark_paid(p.id, found[0], found[1])
                    log.info("batch %d: paid %s to %s found in transaction %s (block %d)", batch.id,
                             self._units(p.amount), p.wallet, found[0], found[1])
                    return False
                # The node may count a mined transaction in the nonce before its receipt and logs can be
                # read (seen with anvil under load: the payment was signed again and paid twice). Only what
                # stays so for TAKEN_GRACE_S is another transaction's.
                first = self._taken.setdefault(p.tx_hash, time.monotonic())
                if time.monotonic() - first < TAKEN_GRACE_S:
                    return False
                failed = True
                self._taken.pop(p.tx_hash, None)
                log.warning("batch %d: nonce %d of the transaction paying %s to %s was used by another "
                            "transaction; signing it again", batch.id, p.nonce, self._units(p.amount), p.wallet)
        return failed

    def _hand(self, batch_id: int, payment_id: int) -> None:
        p = self.progress.payment(payment_id)
        outcome = self.chain.send(p.raw_tx)
        self._handed[p.tx_hash] = time.monotonic()
        if outcome != "nonce used":
            self.progress.mark_sent(p.id)
        said = {"sent": "sent", "known": "sent (the node had it already)",
                "nonce used": "not sent: its nonce is used already, resolved from the chain"}[outcome]
        log.info("batch %d: transaction %s (nonce %d) paying %s to %s %s", batch_id, p.tx_hash, p.nonce,
                 self._units(p.amount), p.wallet, said)

    def _check_funds(self, needed: int) -> None:
        have = self.chain.token_balance()
        if have < needed:
            raise OutOfFunds(f"The operator {self.chain.address} holds {self._units(have)} reward tokens and "
                             f"needs {self._units(needed)}: fund it (mint to it or send it tokens); nothing is "
                             "lost, the servers are paid once it can")
        if self.chain.gas_balance() == 0:
            raise OutOfFunds(f"The operator {self.chain.address} has no ETH to pay gas: send it some; nothing is "
                             "lost, the servers are paid once it can")

    # --------------------------------------------------------------------------------------- new batch
    def start_batch(self) -> int | None:
        """Settle the ledger rows after the last batch; returns the new batch's id, None when nothing was
        served since."""
        ledger = self.ledger()
        after = self.progress.cursor()
        upto = ledger.last_id()
        if upto <= after:
            if self._idle_at != after:  # said once, not every cycle
                log.info("nothing served since ledger row %d: no batch until something is", after)
                self._idle_at = after
            return None
        self._idle_at = None
        totals = ledger.totals(after_id=after, upto_id=upto)
        self._decimals = self.chain.decimals()
        per_token = units_per_token(self.config.rate_per_1k_tokens, self._decimals)
        batch_id = self.progress.next_batch_id()
        shares: list[Share] = []
        carries: dict[str, Fraction] = {}
        per_wallet: dict[str, int] = defaultdict(int)
        for peer_id in sorted(totals):
            tokens = totals[peer_id]
            d = decide(peer_id, ledger.peer(peer_id), self.config.chain_id)
            if d.wallet is None:
                shares.append(Share(peer_id, tokens, None, 0, d.reason))
                log.info("batch %d: server %s: %d tokens, paid nothing: %s; these tokens are not carried over",
                         batch_id, peer_id, tokens, d.reason)
                continue
            units, carry = settle(tokens, self.progress.carry(peer_id), per_token)
            carries[peer_id] = carry
            per_wallet[d.wallet] += units
            shares.append(Share(peer_id, tokens, d.wallet, units, d.reason))
            log.info("batch %d: server %s: %d tokens, pays %s to %s (%s; below one unit carried: %s)", batch_id,
                     peer_id, tokens, self._units(units), d.wallet, d.reason, float(carry))
        amounts = [(w, a) for w, a in sorted(per_wallet.items()) if a > 0]
        signed = []
        from_block = self.chain.head()
        if amounts:
            self._check_funds(sum(a for _, a in amounts))
            nonce = self.chain.nonce("pending")
            for i, (wallet, amount) in enumerate(amounts):
                signed.append((wallet, amount, self.chain.sign_transfer(wallet, amount, nonce + i)))
        batch_id = self.progress.record_batch(after_id=after, upto_id=upto, chain_id=self.config.chain_id,
                                              token=self.chain.token_address, from_block=from_block,
                                              shares=shares, carries=carries, payments=signed)
        self._prune(upto)
        if not amounts:
            log.info("batch %d done: ledger rows %d-%d, nothing to pay", batch_id, after + 1, upto)
            return batch_id
        log.info("batch %d: ledger rows %d-%d, %s to %d wallet(s), nonces %d-%d, written down; sending",
                 batch_id, after + 1, upto, self._units(sum(a for _, a in amounts)), len(amounts),
                 signed[0][2].nonce, signed[-1][2].nonce)
        for p in self.progress.payments(batch_id):
            if self.stop.is_set():
                log.info("batch %d: stopping before every transfer was sent; the rest is sent at the next start",
                         batch_id)
                break
            self._hand(batch_id, p.id)
        return batch_id

    def _prune(self, settled_upto: int) -> None:
        """Delete the ledger rows this and earlier batches settled once they are old enough (the batches keep
        what each server was owed); a failure only leaves them for the next batch."""
        try:
            gone = self.ledger().prune(settled_upto, time.time() - KEEP_SETTLED_S)
        except sqlite3.Error as exc:
            log.warning("settled ledger rows could not be deleted (%s); tried again at the next batch", exc)
            return
        if gone:
            log.info("deleted %d settled ledger rows older than %.0f days", gone, KEEP_SETTLED_S / 86400)

    _decimals: int | None = None

    def _units(self, amount: int) -> str:
        if self._decimals is None:
            try:
                self._decimals = self.chain.decimals()
            except FarNodeError:
                return f"{amount} smallest units"
        return whole_units(amount, self._decimals)
