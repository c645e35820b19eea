"""Earnings as money, against a real anvil chain with the RewardToken ("FMR", 6 decimals): the token's symbol
read once and kept, no estimate without a published rate, the estimate before the first payout said to be
"so far", the next payout expected from the intervals between payouts, and what is missing before anything
can be read."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from farnode_desktop.core.payout.chain import ChainClient, decode_symbol
from farnode_desktop.core.payout.earnings import MISSING_CHAIN, MISSING_WALLET, UNIT_FALLBACK, EarningsSync
from farnode_desktop.core.settings import ChainSettings
from tests.support.chain import ServedTokens, rpc

from .test_earnings import make_sync

pytestmark = pytest.mark.chain


def test_the_tokens_symbol_is_read_once_and_kept(chain, tmp_path, proxy_factory):
    proxy = proxy_factory()
    wallet = chain.new_wallet()
    sync = make_sync(chain, wallet, tmp_path, url=proxy.url, confirmations=0)
    assert sync.snapshot().symbol == "" and sync.snapshot().unit == UNIT_FALLBACK  # not read yet
    chain.pay(wallet, chain.units(2))
    snap = sync.sync_once()
    assert snap.error == "" and snap.symbol == "FMR" and snap.unit == "FMR"
    calls = proxy.methods["eth_call"]  # decimals, symbol, balanceOf
    assert calls == 3
    again = sync.sync_once()
    assert again.symbol == "FMR" and proxy.methods["eth_call"] == calls + 1  # balanceOf only
    # Kept in its database: a new reader (the app restarted) knows it without asking the chain.
    fresh = make_sync(chain, wallet, tmp_path, url=proxy.url, confirmations=0, start=sync.chain.start_block)
    assert fresh.snapshot().symbol == "FMR"


def test_no_published_rate_means_no_estimate_and_before_a_payout_it_is_so_far(chain, tmp_path):
    wallet = chain.new_wallet()
    served = ServedTokens()
    served.add(time.time() - 100, 4000)
    none = make_sync(chain, wallet, tmp_path / "a", confirmations=0, tokens_served_between=served, rate=0.0)
    snap = none.sync_once()
    assert snap.rate_per_1k_tokens == 0 and snap.estimated_unpaid is None  # not an "estimate" of 0
    assert snap.tokens_since_last_payout == 4000
    rated = make_sync(chain, wallet, tmp_path / "b", confirmations=0, tokens_served_between=served, rate=0.25)
    snap = rated.sync_once()
    assert snap.last_payout_time is None  # never paid: the estimate is of the work so far
    assert snap.estimated_unpaid == Decimal("1") and snap.rate_per_1k_tokens == 0.25


def test_the_next_payout_is_expected_from_the_intervals_between_payouts(chain, tmp_path):
    wallet = chain.new_wallet()
    sync = make_sync(chain, wallet, tmp_path, confirmations=0)
    chain.pay(wallet, chain.units(1))
    assert sync.sync_once().next_payout_time is None  # one payout says nothing about how often they come
    for gap in (600, 660, 540):
        rpc(chain.url, "evm_increaseTime", [gap])
        chain.pay(wallet, chain.units(1))
    snap = sync.sync_once()
    times = sorted({p.time for p in sync.payouts()})
    assert len(times) == 4 and snap.payout_count == 4
    assert snap.payout_interval_s == pytest.approx(600, abs=2)  # the median of ~600, ~660, ~540
    assert snap.next_payout_time == pytest.approx(times[-1] + snap.payout_interval_s)

    # The network now pays hourly: one long gap is one late payout (the median holds); two agreeing ones are
    # the new cadence, followed at once rather than after most of the kept intervals.
    rpc(chain.url, "evm_increaseTime", [3600])
    chain.pay(wallet, chain.units(1))
    assert sync.sync_once().payout_interval_s == pytest.approx(630, abs=2)  # the median of 600, 660, 540, 3600
    rpc(chain.url, "evm_increaseTime", [3580])
    chain.pay(wallet, chain.units(1))
    snap = sync.sync_once()
    assert snap.payout_interval_s == pytest.approx(3590, abs=3)
    assert snap.next_payout_time == pytest.approx(max(p.time for p in sync.payouts()) + snap.payout_interval_s)


def test_what_is_missing_before_anything_can_be_read(tmp_path):
    db = tmp_path / "earnings.sqlite3"
    no_wallet = EarningsSync(ChainSettings(rpc_url="http://127.0.0.1:9", chain_id=1), "", db)
    assert no_wallet.snapshot().setup_missing == MISSING_WALLET
    no_chain = EarningsSync(ChainSettings(), "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", db)
    assert no_chain.snapshot().setup_missing == MISSING_CHAIN
    assert no_chain.sync_once().setup_missing == MISSING_CHAIN


@pytest.mark.parametrize(("answer", "symbol"), [
    ("0x" + (32).to_bytes(32, "big").hex() + (3).to_bytes(32, "big").hex() + b"FMR".ljust(32, b"\0").hex(), "FMR"),
    ("0x" + b"MKR".ljust(32, b"\0").hex(), "MKR"),  # an old token's bytes32
    ("0x", ""), ("0x1234", ""), (None, ""), ("0xzz", ""),
    ("0x" + (32).to_bytes(32, "big").hex() + (99).to_bytes(32, "big").hex(), ""),  # a length past the end
    ("0x" + (32).to_bytes(32, "big").hex() + (2).to_bytes(32, "big").hex() + b"\n\t".ljust(32, b"\0").hex(), ""),
])
def test_decode_symbol(answer, symbol):
    assert decode_symbol(answer) == symbol


def test_symbol_of_a_contract_without_one_is_empty_not_an_outage(chain):
    client = ChainClient(chain.url)
    try:
        assert client.symbol(chain.token.address) == "FMR"
        assert client.symbol(chain.sender) == ""  # an account, no code: eth_call answers 0x
    finally:
        client.close()
