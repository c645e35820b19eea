"""The demo payout service as a real process on a real anvil chain: who is paid, how much, and that nothing is
paid twice or lost when the service, or the chain, is stopped at the worst moment."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from fractions import Fraction
from math import floor
from pathlib import Path

import pytest
from eth_account import Account

from tests.demo_operator.helpers import HoldingProxy, Server, new_operator, paid_to, serve, transfers_from
from tests.support import REPO
from tests.support.chain import DECIMALS, deploy, start_anvil
from tests.support.wait import scaled, wait_until

pytestmark = pytest.mark.chain


def owed(tokens: int, rate: float, decimals: int = DECIMALS) -> int:
    """The rounding rule of demo_operator/amounts.py: total tokens x rate, rounded down to a smallest unit."""
    return floor(tokens * Fraction(str(rate)) * 10**decimals / 1000)


def test_two_servers_with_valid_bindings_are_each_paid_their_own_share(harness, chain):
    harness.rate = 0.0333  # 33.3 smallest units per token: every batch rounds, the carry keeps the total exact
    op = new_operator(chain, 10**15)
    a, b, walletless = Server.new(), Server.new(), Server.new()
    a.announce(harness.ledger, harness.chain_id)
    b.announce(harness.ledger, harness.chain_id)
    harness.ledger.note_peer(walletless.peer_id, "", "", "", time.time())
    for _ in range(5):
        serve(harness.ledger, {a.peer_id: 101, b.peer_id: 37, walletless.peer_id: 50})
    svc = harness.start(op)
    status = svc.wait_batches(1)
    assert status["paid_upto_id"] == harness.ledger.last_id() == 15
    assert paid_to(chain, op.address) == {a.address: owed(505, 0.0333), b.address: owed(185, 0.0333)}
    log = svc.log()
    assert f"server {walletless.peer_id}: 250 tokens, paid nothing: no binding" in log
    assert "create a wallet to be paid" in log and "not carried over" in log

    # more traffic, in odd amounts; the walletless server now has a wallet: paid for what it serves from now
    walletless.announce(harness.ledger, harness.chain_id)
    for n in (1, 2, 3, 7, 11):
        serve(harness.ledger, {a.peer_id: n, b.peer_id: n * 13, walletless.peer_id: 40})
    status = svc.wait_batches(2)
    paid = paid_to(chain, op.address)
    assert paid == {a.address: owed(505 + 24, 0.0333), b.address: owed(185 + 24 * 13, 0.0333),
                    walletless.address: owed(200, 0.0333)}
    for server, tokens in ((a, 529), (b, 497)):  # within 2% of tokens x rate (exact but for the last unit)
        assert abs(paid[server.address] - tokens * 0.0333 * 10**DECIMALS / 1000) <= 0.02 * paid[server.address]
    assert status["operator"] == op.address and status["token_address"] == chain.token.address
    assert status["rate_per_1k_tokens"] == 0.0333 and status["paid_upto_id"] == harness.ledger.last_id()
    assert status["last_batch_at"] <= time.time() < status["next_batch_at"] + 1
    assert len(transfers_from(chain, op.address)) == 5  # one transfer per wallet and batch, none twice

    # the key is nowhere but in the process's memory
    key_hex = op.key[2:].lower()
    for part in ("cmdline", "environ"):
        assert key_hex not in Path(f"/proc/{svc.proc.pid}/{part}").read_bytes().decode(errors="replace").lower()
    assert svc.stop() == 0
    for f in harness.state_dir.iterdir():
        assert key_hex not in f.read_bytes().hex() and key_hex not in f.read_bytes().decode(errors="replace").lower()
    assert key_hex not in svc.log().lower()


def test_forged_or_foreign_bindings_are_paid_nothing_and_said_why(harness, chain):
    op = new_operator(chain, 10**15)
    honest, forged_name, other_peer, bad_sig, changed = (Server.new() for _ in range(5))
    attacker = Account.create().address
    honest.announce(harness.ledger, harness.chain_id)
    # a public name showing the attacker's address, over a binding the server's own wallet signed
    forged_name.announce(harness.ledger, harness.chain_id, public_name=f"fast node {attacker}")
    # a valid binding, but of another server's peer id (copied from its announcement)
    statement, signature = honest.binding(harness.chain_id)
    harness.ledger.note_peer(other_peer.peer_id, honest.address, statement, signature, time.time())
    # a statement naming its wallet, signed by another key
    bad_sig.announce(harness.ledger, harness.chain_id, signer_key=Server.new().key)
    # the wallet changed after announcing: the public name still shows the old one, the binding the new one
    new_wallet = Server.new()
    changed.announce(harness.ledger, harness.chain_id, public_name=changed.address,
                     address=new_wallet.address, signer_key=new_wallet.key)
    everyone = (honest, forged_name, other_peer, bad_sig, changed)
    serve(harness.ledger, {s.peer_id: 1000 for s in everyone})
    svc = harness.start(op)
    svc.wait_batches(1)
    assert paid_to(chain, op.address) == {honest.address: owed(1000, harness.rate)}
    log = svc.log()

    def line(server):
        return next(li for li in log.splitlines() if f"server {server.peer_id}:" in li)

    assert "pays 0.05 to " + honest.address in line(honest)
    assert "paid nothing: address mismatch" in line(forged_name) and attacker in line(forged_name)
    assert "paid nothing: peer id mismatch" in line(other_peer)
    assert "paid nothing: invalid signature" in line(bad_sig)
    assert "paid nothing: address mismatch" in line(changed) and new_wallet.address in line(changed)
    assert all("not carried over" in line(s) for s in everyone[1:])
    # not carried over: the next batch pays only what is served from now on, though the first batch paid
    # them nothing
    for s in everyone[1:]:
        s.announce(harness.ledger, harness.chain_id)
    serve(harness.ledger, {s.peer_id: 20 for s in everyone})
    svc.wait_batches(2)
    assert paid_to(chain, op.address) == {honest.address: owed(1020, harness.rate),
                                          **{s.address: owed(20, harness.rate) for s in everyone[1:]}}
    assert svc.stop() == 0


@pytest.mark.parametrize("hold", ["after", "before", "taken"])
def test_killed_between_sending_and_recording_pays_once_and_loses_nothing(harness, chain, hold):
    """SIGKILL while the first transfer of a batch is on its way: "after": the node has it (mined) but the
    service never heard back; "before": the node never got it; "taken": never got it, and before the restart
    another transaction of the operator's account took its nonce. Restarted, the service resolves the batch
    from the chain: every wallet paid exactly once."""
    op = new_operator(chain, 10**15)
    a, b = Server.new(), Server.new()
    for s in (a, b):
        s.announce(harness.ledger, harness.chain_id)
    serve(harness.ledger, {a.peer_id: 3000, b.peer_id: 1234})
    proxy = HoldingProxy(chain.url, hold="before" if hold == "taken" else hold)
    try:
        svc = harness.start(op, proxy.url)
        assert proxy.held.wait(60), svc.log()
        svc.proc.send_signal(signal.SIGKILL)
        svc.proc.wait(10)
        nonce_after_kill = chain.w3.eth.get_transaction_count(op.address)
        assert nonce_after_kill == (1 if hold == "after" else 0)
        with sqlite3.connect(harness.state_dir / "payouts.sqlite3") as db:  # the intent was written, not the send
            rows = db.execute("SELECT nonce, sent_at, status FROM payments ORDER BY nonce").fetchall()
        db.close()
        assert rows == [(0, None, "signed"), (1, None, "signed")]
        proxy.release.set()
    finally:
        proxy.close()
    first, tokens = min((a.address, 3000), (b.address, 1234))  # the batch pays the wallets in their order
    assert paid_to(chain, op.address) == ({first: owed(tokens, harness.rate)} if hold == "after" else {})

    if hold == "taken":  # the operator's account used elsewhere meanwhile: nonce 0 goes to an ETH transfer
        signed = Account.sign_transaction({"to": chain.other, "value": 1, "gas": 21000, "gasPrice": 10**10,
                                           "nonce": 0, "chainId": harness.chain_id}, op.key)
        chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_raw_transaction(signed.raw_transaction))
    serve(harness.ledger, {a.peer_id: 10})  # a row after the killed batch: paid in a batch of its own
    again = harness.start(op)
    status = again.wait_batches(2)
    assert status["paid_upto_id"] == harness.ledger.last_id()
    sent = transfers_from(chain, op.address)
    assert sorted((to, value) for to, value, _ in sent) == sorted([
        (a.address, owed(3000, harness.rate)), (b.address, owed(1234, harness.rate)),
        (a.address, owed(10, harness.rate))])
    assert sum(v for _, v, _ in sent) == owed(3010, harness.rate) + owed(1234, harness.rate)
    assert "batch 1 done" in again.log() and "batch 2 done" in again.log()
    if hold == "taken":
        assert "nonce 0 of the transaction paying" in again.log() and "signing it again" in again.log()
    assert again.stop() == 0


def test_anvil_restarted_from_its_state_file_loses_no_payment_and_pays_none_twice(harness, tmp_path):
    """The chain stopped while the service runs (the service says so and retries), killed before it saved
    the newest payments (the chain forgets them: they are paid again, once), and restarted cleanly."""
    state = tmp_path / "anvil-state.json"
    node = start_anvil("--state", str(state))
    port = node.port
    try:
        chain = deploy(node.url)
        harness.chain = chain
        op = new_operator(chain, 10**15)
        node.stop()  # SIGTERM: anvil saves its state (token, funds)
        node = start_anvil("--state", str(state), port=port)
        a, b = Server.new(), Server.new()
        for s in (a, b):
            s.announce(harness.ledger, harness.chain_id)
        serve(harness.ledger, {a.peer_id: 500, b.peer_id: 700})
        svc = harness.start(op)
        svc.wait_batches(1)
        assert paid_to(chain, op.address) == {a.address: owed(500, harness.rate), b.address: owed(700, harness.rate)}

        node.proc.kill()  # SIGKILL: batch 1's transfers were never saved
        node.proc.wait()
        node.proc.stderr.close()
        svc.wait_log("Cannot reach the chain at", timeout=30)
        node = start_anvil("--state", str(state), port=port)
        assert paid_to(chain, op.address) == {}  # the chain forgot them
        svc.wait_log("the chain no longer has the payment", timeout=30, count=2)
        wait_until(lambda: len(transfers_from(chain, op.address)) == 2, 30)
        serve(harness.ledger, {a.peer_id: 100})
        svc.wait_batches(2)
        node.stop()  # a clean stop: saved; the service retries until it is back
        svc.wait_log("Cannot reach the chain at", timeout=30, count=2)
        node = start_anvil("--state", str(state), port=port)
        serve(harness.ledger, {b.peer_id: 100})
        svc.wait_batches(3)
        assert svc.stop() == 0
        assert paid_to(chain, op.address) == {a.address: owed(600, harness.rate), b.address: owed(800, harness.rate)}
        assert len(transfers_from(chain, op.address)) == 4
    finally:
        node.stop()


def test_an_operator_out_of_funds_says_so_and_pays_once_funded(harness, chain):
    op = new_operator(chain, 0)
    a = Server.new()
    a.announce(harness.ledger, harness.chain_id)
    serve(harness.ledger, {a.peer_id: 2000})
    svc = harness.start(op)
    svc.wait_log("holds 0 reward tokens and needs 0.1: fund it", count=2)
    assert svc.status()["batches"] == 0 and svc.status()["paid_upto_id"] == 0
    chain.w3.eth.wait_for_transaction_receipt(
        chain.token.functions.mint(op.address, 10**9).transact({"from": chain.owner}))
    svc.wait_batches(1)
    assert paid_to(chain, op.address) == {a.address: owed(2000, harness.rate)}
    assert svc.stop() == 0


@pytest.mark.parametrize("how", ["stdin", "SIGTERM", "SIGINT"])
def test_it_stops_within_seconds(harness, chain, how):
    harness.interval = 180.0
    svc = harness.start(new_operator(chain, 0))
    svc.wait_log("demo payout service: operator")
    assert svc.status()["next_batch_at"] > time.time() + 100
    t0 = time.monotonic()
    if how == "stdin":
        svc.close_stdin()
    else:
        svc.proc.send_signal(getattr(signal, how))
    assert svc.proc.wait(scaled(10)) == 0
    assert time.monotonic() - t0 < scaled(5)  # seconds on an idle machine, more under load
    assert "stopping" in svc.log() and svc.log().rstrip().endswith("stopped")
    svc.close_stdin()


@pytest.mark.parametrize("stdin_text, says", [
    ("not json\n0x" + "11" * 32 + "\n", "must be the config as one JSON object"),
    ('{"rpc_url": "http://127.0.0.1:1"}\n', "chain_id is missing"),
    (None, "second line of stdin must be the operator's private key"),
    (None, "not a valid private key"),
])
def test_a_config_or_key_it_cannot_use_is_refused_plainly(harness, chain, stdin_text, says):
    if stdin_text is None:
        key = "" if "second line" in says else "0x1234"
        stdin_text = json.dumps(harness.config()) + "\n" + key + "\n"
    svc = harness.start(None, stdin_text=stdin_text)
    svc.close_stdin()
    assert svc.proc.wait(30) == 2
    assert says in svc.log()
    assert "Traceback" not in svc.log()
    assert not (harness.state_dir / "payouts.sqlite3").exists()


def test_the_windows_process_never_imports_web3():
    """Only the payout service's own process loads web3: the app's faces and core do not."""
    code = ("import sys, farnode_desktop.app.cli, farnode_desktop.app.headless, farnode_desktop.gui.main_window, "
            "farnode_desktop.core.app_core; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('web3', 'farnode_desktop') and (m == 'web3' or 'demo_operator' in m)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_batch_is_done_only_after_its_confirmations(harness, chain):
    harness.confirmations = 3
    op = new_operator(chain, 10**15)
    a = Server.new()
    a.announce(harness.ledger, harness.chain_id)
    serve(harness.ledger, {a.peer_id: 400})
    svc = harness.start(op)
    svc.wait_log(f"batch 1: paid 0.02 to {a.address}")
    time.sleep(2.5)  # two more cycles: mined (1 confirmation), not yet 3
    assert svc.status()["batches"] == 0 and svc.status()["paid_upto_id"] == 0
    chain.mine(2)
    status = svc.wait_batches(1)
    assert status["paid_upto_id"] == 1 and "3 confirmation(s)" in svc.log()
    assert paid_to(chain, op.address) == {a.address: owed(400, harness.rate)}
    assert svc.stop() == 0


def test_settled_rows_are_deleted_once_old_and_paid_for_first(harness, chain):
    """The ledger does not grow for as long as the app runs: rows a batch settled go once they are two days
    old, once a batch has settled them (the batch keeps what each server is owed); newer rows stay."""
    from farnode_desktop.core.payout.served import KEEP_SETTLED_S

    op = new_operator(chain, 10**15)
    a = Server.new()
    a.announce(harness.ledger, harness.chain_id)
    old = time.time() - KEEP_SETTLED_S - 3600
    for i in range(4):
        harness.ledger.record(f"old-{i}", old + i, {a.peer_id: 100})
    serve(harness.ledger, {a.peer_id: 50})
    svc = harness.start(op)
    status = svc.wait_batches(1)
    assert status["paid_upto_id"] == harness.ledger.last_id() == 5
    assert paid_to(chain, op.address) == {a.address: owed(450, harness.rate)}
    assert [r.id for r in harness.ledger.rows_after(0)] == [5]  # the old rows went once settled
    assert "deleted 4 settled ledger rows" in svc.log()
    serve(harness.ledger, {a.peer_id: 10})
    status = svc.wait_batches(2)
    assert paid_to(chain, op.address) == {a.address: owed(460, harness.rate)}
    assert status["paid_upto_id"] == 6
    assert svc.stop() == 0


def test_after_its_quick_payments_it_pays_at_the_later_interval(harness, chain):
    """A chain keeps every transaction: the embedded default pays every 3 minutes for its first payments (a new
    user sees the flow at once), then hourly. Here: quick every second for 2 payments, then every 40 s."""
    op = new_operator(chain, 10**15)
    a = Server.new()
    a.announce(harness.ledger, harness.chain_id)
    serve(harness.ledger, {a.peer_id: 100})
    svc = harness.start(op, quick_payments=2, later_interval_s=40)
    first = svc.wait_batches(1)
    serve(harness.ledger, {a.peer_id: 100})
    second = svc.wait_batches(2)
    assert second["last_batch_at"] - first["last_batch_at"] <= scaled(5)  # a batch a second: the quick ones
    assert 30 <= second["next_batch_at"] - second["last_batch_at"] <= 41  # two payments made: the next in 40 s
    serve(harness.ledger, {a.peer_id: 100})
    time.sleep(3)
    status = svc.status()
    assert status["batches"] == 2 and len(transfers_from(chain, op.address)) == 2
    assert "after 2 payments, a batch every 40" in svc.log()
    assert svc.stop() == 0


def test_a_later_interval_that_is_not_positive_is_refused(harness, chain):
    svc = harness.start(None, stdin_text=json.dumps(harness.config(later_interval_s=0)) + "\n0x" + "11" * 32 + "\n")
    svc.close_stdin()
    assert svc.proc.wait(30) == 2
    assert "later_interval_s must be more than 0 (or null)" in svc.log()
