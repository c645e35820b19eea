"""Earnings sync against a real anvil node (and a real HTTP proxy acting like a hosted RPC provider)."""

from __future__ import annotations

import csv
import sqlite3
import time
from decimal import Decimal

import pytest

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.payout.chain import ChainClient
from farnode_desktop.core.payout.earnings import TOPIC, EarningsSnapshot, EarningsSync
from farnode_desktop.core.settings import ChainSettings
from tests.support.chain import DECIMALS, ServedTokens, deploy, start_anvil
from tests.support.ports import free_port

pytestmark = pytest.mark.chain


def make_sync(chain, wallet, tmp_path, *, url=None, confirmations=2, start=None, senders=None, client=None,
              **kw) -> EarningsSync:
    settings = ChainSettings(rpc_url=url or chain.url, chain_id=kw.pop("chain_id", 31337),
                             token_address=chain.token.address, payout_senders=senders or [chain.sender],
                             confirmations=confirmations, reward_per_1k_tokens=kw.pop("rate", 0.25),
                             start_block=chain.head() + 1 if start is None else start)
    if client is None:
        client = ChainClient(settings.rpc_url, backoff_s=0.01, backoff_max_s=0.05, max_attempts=3)
    return EarningsSync(settings, wallet, tmp_path / "earnings.sqlite3", client=client, **kw)


def test_payouts_from_senders_are_counted_and_others_are_not(chain, tmp_path):
    wallet = chain.new_wallet()
    bus = EventBus()
    seen: list[EarningsSnapshot] = []
    bus.subscribe(TOPIC, lambda _t, snap: seen.append(snap))
    served = ServedTokens()
    sync = make_sync(chain, wallet, tmp_path, bus=bus, tokens_served_between=served)
    tx1 = chain.pay(wallet, chain.units(10))
    chain.pay(wallet, chain.units(5), sender=chain.other)  # not a payout sender
    chain.pay(chain.new_wallet(), chain.units(7))  # a payout to someone else
    tx2 = chain.pay(wallet, chain.units(2.5))
    chain.token.functions.mint(wallet, chain.units(1)).transact({"from": chain.owner})  # a mint, from 0x0
    chain.mine(2)
    snap = sync.sync_once()
    assert seen == [snap]
    assert snap.error == "" and not snap.stale and snap.stale_since is None
    assert snap.paid_total == Decimal("12.5") and snap.pending_total == 0 and snap.payout_count == 2
    assert snap.balance == Decimal("18.5")  # the whole balance, whatever its source
    assert snap.last_synced_block == chain.head() - 2 and snap.head_block == chain.head()
    payouts = sync.payouts()
    assert [p.tx_hash.removeprefix("0x") for p in payouts] == [tx1.removeprefix("0x"), tx2.removeprefix("0x")]
    assert [p.amount for p in payouts] == [Decimal(10), Decimal("2.5")] and payouts[0].amount_raw == 10 * 10**DECIMALS
    blk = chain.w3.eth.get_block(payouts[0].block_number)
    assert payouts[0].time == blk.timestamp and payouts[0].block_hash.removeprefix("0x") == blk.hash.hex()
    assert all(p.sender == chain.sender and p.confirmed for p in payouts)
    # A second sync with nothing new changes nothing.
    again = sync.sync_once()
    assert again.paid_total == snap.paid_total and again.payout_count == 2
    # Add a second sender: the other account's transfer now counts (the history is re-read for the new scope).
    sync2 = make_sync(chain, wallet, tmp_path, senders=[chain.sender, chain.other.lower()],
                      start=sync.chain.start_block)
    assert sync2.sync_once().paid_total == Decimal("17.5")

    # CSV export (atomic) and per-day totals with the estimate.
    out = tmp_path / "export" / "payouts.csv"
    assert sync2.export_csv(out) == 3
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["amount"] for r in rows] == ["10.000000", "5.000000", "2.500000"]
    assert {r["status"] for r in rows} == {"confirmed"} and rows[1]["from"] == chain.other
    days = sync2.daily_totals()
    assert days[-1].cumulative == Decimal("17.5") and sum(d.paid for d in days) == Decimal("17.5")


def test_estimate_counts_only_work_since_the_last_payout(chain, tmp_path):
    wallet = chain.new_wallet()
    served = ServedTokens()
    now = [time.time()]
    sync = make_sync(chain, wallet, tmp_path, confirmations=0, tokens_served_between=served, rate=0.4,
                     clock=lambda: now[0])
    assert sync.sync_once().estimated_unpaid == 0
    chain.pay(wallet, chain.units(1))
    snap = sync.sync_once()
    paid_at = snap.last_payout_time
    now[0] = paid_at + 10
    served.add(paid_at - 100, 50_000)  # before the payout: already paid for
    served.add(paid_at + 1, 12_345)
    served.add(paid_at + 2, 655)
    snap = sync.snapshot()
    assert snap.tokens_since_last_payout == 13_000
    assert snap.estimated_unpaid == Decimal("13000") * Decimal("0.4") / 1000 == Decimal("5.2")
    day = sync.daily_totals()[-1]
    assert day.paid == 1 and day.estimated == Decimal("25.2")  # all of that day's work x rate


def test_payouts_below_the_confirmation_depth_are_pending(chain, tmp_path):
    wallet = chain.new_wallet()
    sync = make_sync(chain, wallet, tmp_path, confirmations=3)
    chain.pay(wallet, chain.units(4))
    chain.pay(wallet, chain.units(6), sender=chain.other)  # 1 block on top of the payout's
    # Confirmed once 3 blocks are on top of the payout's block.
    for expected_pending, expected_paid in ((4, 0), (4, 0), (0, 4), (0, 4)):
        snap = sync.sync_once()
        assert (snap.pending_total, snap.paid_total) == (expected_pending, expected_paid), snap
        chain.mine(1)
    assert [p.confirmed for p in sync.payouts()] == [True]
    chain.pay(wallet, chain.units(1))
    snap = sync.sync_once()
    assert (snap.pending_total, snap.paid_total, snap.pending_count) == (1, 4, 1)
    assert [p.confirmed for p in sync.payouts()] == [True, False]
    chain.mine(5)
    snap = sync.sync_once()
    assert (snap.pending_total, snap.paid_total, snap.payout_count) == (0, 5, 2)


def test_reorganisation_is_undone_without_double_counting(chain, tmp_path):
    wallet = chain.new_wallet()
    sync = make_sync(chain, wallet, tmp_path, confirmations=1)
    chain.pay(wallet, chain.units(1))
    chain.mine(3)
    assert sync.sync_once().paid_total == 1
    snap_id = chain.snapshot()
    chain.pay(wallet, chain.units(10))
    chain.mine(2)
    chain.pay(wallet, chain.units(20))
    chain.mine(4)
    before = sync.sync_once()
    assert before.paid_total == 31 and before.payout_count == 3
    chain.revert(snap_id)  # the chain forgets both payouts...
    chain.pay(wallet, chain.units(7))  # ...and takes another path, as long as before
    chain.mine(8)
    after = sync.sync_once()
    assert after.reorgs_undone == 1
    assert after.paid_total == 8 and after.payout_count == 2 and after.balance == 8
    assert [p.amount for p in sync.payouts()] == [1, 7]
    with sqlite3.connect(tmp_path / "earnings.sqlite3") as c:
        assert c.execute("SELECT COUNT(*) FROM payouts").fetchone()[0] == 2
    # And again: a stable chain is not rolled back a second time.
    assert sync.sync_once().reorgs_undone == 1


def test_reorg_of_pending_payouts_needs_no_rollback(chain, tmp_path):
    wallet = chain.new_wallet()
    sync = make_sync(chain, wallet, tmp_path, confirmations=5)
    snap_id = chain.snapshot()
    chain.pay(wallet, chain.units(3))
    assert sync.sync_once().pending_total == 3
    chain.revert(snap_id)
    chain.pay(wallet, chain.units(2))
    snap = sync.sync_once()
    assert (snap.pending_total, snap.paid_total) == (2, 0)
    chain.mine(6)
    assert sync.sync_once().paid_total == 2


def test_rpc_outage_keeps_last_data_marked_stale_and_loses_nothing(chain, tmp_path, proxy_factory):
    proxy = proxy_factory()
    wallet = chain.new_wallet()
    sync = make_sync(chain, wallet, tmp_path, url=proxy.url, confirmations=1)
    chain.pay(wallet, chain.units(2))
    chain.mine(2)
    assert sync.sync_once().paid_total == 2
    proxy.stop()  # the RPC goes away: its port is closed
    chain.pay(wallet, chain.units(3))
    chain.mine(2)
    down = sync.sync_once()
    assert down.stale and down.stale_since is not None and "did not answer" in down.error
    assert down.paid_total == 2 and down.balance == 2  # the last synced data is still shown
    time.sleep(0.01)
    down2 = sync.sync_once()
    assert down2.stale_since == down.stale_since  # since when, not since the last try
    proxy.start()  # back on the same port
    chain.pay(wallet, chain.units(4))
    chain.mine(2)
    up = sync.sync_once()
    assert not up.stale and up.stale_since is None and up.error == ""
    assert up.paid_total == 9 and up.payout_count == 3 and up.balance == 9


def test_node_restart_with_saved_state_loses_nothing(tmp_path):
    state = tmp_path / "anvil-state.json"
    port = free_port()
    node = start_anvil("--state", str(state), port=port)
    try:
        chain = deploy(node.url)
        wallet = chain.new_wallet()
        sync = make_sync(chain, wallet, tmp_path, confirmations=1, start=0)
        chain.pay(wallet, chain.units(5))
        chain.mine(2)
        assert sync.sync_once().paid_total == 5
        node.stop()  # the node goes away (and saves its chain)
        down = sync.sync_once()
        assert down.stale and down.paid_total == 5
        node = start_anvil("--state", str(state), port=port)
        chain.pay(wallet, chain.units(6))
        chain.mine(2)
        up = sync.sync_once()
        assert not up.stale and up.paid_total == 11 and up.payout_count == 2 and up.balance == 11
    finally:
        node.stop()


def test_resume_reads_only_new_blocks(chain, tmp_path, proxy_factory):
    proxy = proxy_factory()
    wallet = chain.new_wallet()
    start = chain.head() + 1
    chain.pay(wallet, chain.units(1))
    chain.mine(300)
    chain.pay(wallet, chain.units(2))
    chain.mine(1)
    first = make_sync(chain, wallet, tmp_path, url=proxy.url, confirmations=1, start=start)
    assert first.sync_once().paid_total == 3
    synced = first.snapshot().last_synced_block
    # A new process: same database, new client.
    proxy.methods.clear()
    chain.pay(wallet, chain.units(4))
    chain.mine(1)
    second = make_sync(chain, wallet, tmp_path, url=proxy.url, confirmations=1, start=start)
    snap = second.sync_once()
    assert snap.paid_total == 7 and snap.payout_count == 3
    assert proxy.methods["eth_getLogs"] == 2  # one chunk of new blocks, one for the pending tail
    assert snap.last_synced_block == synced + 2


@pytest.mark.parametrize("message", [
    "query exceeds max block range {limit}",  # geth/erigon style
    "eth_getLogs is limited to a {limit} range",  # QuickNode style
    "block range too large",  # no number: halve until it works
])
def test_chunks_adapt_to_a_block_range_limit(chain, tmp_path, proxy_factory, message):
    proxy = proxy_factory(max_range=50, range_message=message)
    wallet = chain.new_wallet()
    start = chain.head() + 1
    for i in range(4):
        chain.pay(wallet, chain.units(i + 1))
        chain.mine(70)
    client = ChainClient(proxy.url, log_chunk=400, max_log_chunk=100_000, backoff_s=0.01)
    sync = make_sync(chain, wallet, tmp_path, url=proxy.url, confirmations=0, start=start, client=client)
    snap = sync.sync_once()
    assert snap.paid_total == 10 and snap.payout_count == 4 and snap.error == ""
    # A limit the message states is used exactly; without one, it is found within 1/8 by bisection.
    assert proxy.refused >= 1 and (max(proxy.spans) == 50 if "{limit}" in message else max(proxy.spans) >= 44)
    span = chain.head() - start + 1  # ~280 blocks: at least 6 chunks of <= 50
    ok_calls = proxy.methods["eth_getLogs"] - proxy.refused
    assert span / 50 <= ok_calls <= span / 25 + 2, (ok_calls, proxy.refused)
    assert proxy.refused <= 8  # the limit is learnt, not hit at every chunk


def test_chunks_adapt_to_a_result_count_limit_and_grow_again(chain, tmp_path, proxy_factory):
    proxy = proxy_factory(max_results=3)
    wallet = chain.new_wallet()
    start = chain.head() + 1
    for _ in range(12):
        chain.pay(wallet, chain.units(1))  # 12 payouts in 12 consecutive blocks
    chain.mine(600)  # then a long empty stretch
    client = ChainClient(proxy.url, log_chunk=16, max_log_chunk=256, backoff_s=0.01)
    sync = make_sync(chain, wallet, tmp_path, url=proxy.url, confirmations=0, start=start, client=client)
    snap = sync.sync_once()
    assert snap.paid_total == 12 and snap.payout_count == 12
    assert proxy.refused >= 1 and min(proxy.spans) <= 3 and max(proxy.spans) >= 128  # shrank, then grew
    assert proxy.methods["eth_getLogs"] < 30, proxy.spans


def test_alchemy_style_suggested_range_is_used(chain, tmp_path, proxy_factory):
    proxy = proxy_factory(max_range=30, range_message=(
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit "
        "on the response size, or you can request any block range with a cap of 10K logs in the response. "
        "Based on your parameters, this block range should work: [0x10, 0x2d]"))
    wallet = chain.new_wallet()
    start = chain.head() + 1
    chain.pay(wallet, chain.units(1))
    chain.mine(100)
    client = ChainClient(proxy.url, log_chunk=500, backoff_s=0.01)
    sync = make_sync(chain, wallet, tmp_path, url=proxy.url, confirmations=0, start=start, client=client)
    assert sync.sync_once().paid_total == 1
    assert 1 <= proxy.refused <= 4 and max(proxy.spans) == 30  # the suggested span, at once


def test_http_429_is_retried_with_backoff(chain, tmp_path, proxy_factory):
    proxy = proxy_factory(throttle=3)
    slept: list[float] = []
    client = ChainClient(proxy.url, backoff_s=0.2, max_attempts=5, sleep=slept.append)
    assert client.block_number() == chain.head()
    assert client.retries == 3 and client.calls == 4 and slept == [0.0, 0.0, 0.0]  # Retry-After: 0 honoured
    proxy.throttle = 10
    with pytest.raises(Exception, match="did not answer eth_blockNumber after 5 attempts"):
        ChainClient(proxy.url, backoff_s=0.001, max_attempts=5).block_number()


def test_exponential_backoff_when_unreachable():
    slept: list[float] = []
    client = ChainClient(f"http://127.0.0.1:{free_port()}/v3/SECRETKEY", backoff_s=1, backoff_max_s=5,
                         max_attempts=5, sleep=slept.append)
    with pytest.raises(Exception) as e:
        client.block_number()
    assert "SECRETKEY" not in str(e.value) and "127.0.0.1" in str(e.value)
    assert len(slept) == 4 and 0.75 <= slept[0] <= 1.25 and 1.5 <= slept[1] <= 2.5 and slept[3] <= 5 * 1.25
    assert client.calls == 5 and client.retries == 4


def test_wrong_chain_id_and_missing_settings_are_explained(chain, tmp_path):
    wallet = chain.new_wallet()
    sync = make_sync(chain, wallet, tmp_path, chain_id=8453)
    chain.pay(wallet, chain.units(1))
    snap = sync.sync_once()
    assert "serves chain id 31337" in snap.error and "expect chain id 8453" in snap.error
    assert snap.paid_total == 0 and snap.stale
    empty = EarningsSync(ChainSettings(), "", tmp_path / "e2.sqlite3")
    snap = empty.sync_once()
    assert "RPC URL" in snap.error and "create or import a wallet" in snap.error and not snap.stale
    bad = EarningsSync(ChainSettings(rpc_url=chain.url, chain_id=31337, token_address="0x1234",
                                     payout_senders=[chain.sender]), wallet, tmp_path / "e3.sqlite3")
    assert "reward token address" in bad.sync_once().error
    with pytest.raises(Exception, match="not an http"):
        ChainClient("ftp://example.org")
