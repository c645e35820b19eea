"""The embedded default's payouts (core/localchain/payouts.py) with the real anvil and the real demo payout
service: installed and started on demand, paying what the served ledger holds to a validly bound wallet at the
published rate, a dead service started again, both stopped with nothing left, the chain's state kept."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psutil
import pytest

from farnode_desktop.core.localchain.node import CHAIN_ID, LocalChain
from farnode_desktop.core.localchain.payouts import LocalPayouts
from farnode_desktop.core.payout.served import ServedLedger
from tests.demo_operator.helpers import Server, serve
from tests.support.chain import token_balance
from tests.support.processes import pid_gone
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[3]
TARBALL = REPO / "tools/foundry-rs-anvil-linux-amd64-1.7.1.tgz"


@pytest.fixture
def payouts(tmp_path, monkeypatch, app_paths):
    src = os.environ.get("FARNODE_ANVIL_SOURCE") or str(TARBALL)
    if not Path(src).is_file():
        pytest.skip(f"the anvil tarball {src} is missing: run scripts/system-deps.sh")
    monkeypatch.setenv("FARNODE_ANVIL_SOURCE", src)
    lp = LocalPayouts(app_paths, rate_per_1k_tokens=0.5, batch_interval_s=1.0, tools_root=tmp_path / "tools")
    lp.state_save_s = 0.5
    yield lp
    lp.stop()


def _rpc(url: str, method: str, params: list | None = None):
    from farnode_desktop.core.payout.chain import ChainClient

    client = ChainClient(url, timeout_s=10, max_attempts=1)
    try:
        return client.call(method, params or [])
    finally:
        client.close()


def _best_block(state: Path) -> int:
    import json

    try:
        value = json.loads(state.read_text()).get("best_block_number", 0)
    except (OSError, ValueError):
        return -1
    return int(value, 16) if isinstance(value, str) else int(value)


def _gone(pids: list[int]) -> bool:
    return all(pid_gone(p) for p in pids)


def test_the_local_chain_pays_what_was_served_and_stops_clean(payouts):
    info = payouts.ensure()
    assert info.chain_id == CHAIN_ID and info.rpc_url.startswith("http://127.0.0.1:")
    pids = payouts.pids()
    assert len(pids) == 2
    st = payouts.status()
    assert st["running"] and st["payout_service"] == "running" and st["problem"] is None
    assert payouts.ensure() == info and payouts.pids() == pids  # all running: nothing started again

    server, unbound = Server.new(), Server.new()
    ledger = ServedLedger(payouts.paths.served_ledger)
    try:
        server.announce(ledger, CHAIN_ID)
        serve(ledger, {server.peer_id: 3000, unbound.peer_id: 500})
        serve(ledger, {server.peer_id: 1000})
    finally:
        ledger.close()
    want = 4000 * 5 * 10**17 // 1000  # 4,000 tokens at 0.5 per 1,000, 18 decimals
    assert wait_until(lambda: token_balance(info.rpc_url, info.token_address, server.address) == want, 60), \
        payouts.service_log.read_text()[-3000:]
    assert token_balance(info.rpc_url, info.token_address, unbound.address) == 0
    assert "create a wallet to be paid" in payouts.service_log.read_text()

    psutil.Process(pids[0]).kill()  # the payout service dies
    assert wait_until(lambda: payouts.status()["payout_service"].startswith("exited"), 10)
    again = payouts.ensure()
    assert again == info and payouts.pids()[0] != pids[0]

    pids = payouts.pids()
    payouts.stop()
    assert _gone(pids) and payouts.info is None and not payouts.status()["running"]

    restarted = payouts.ensure()  # the chain's state survived: same token, the payment still there
    assert restarted.token_address == info.token_address and not restarted.state_lost
    assert token_balance(restarted.rpc_url, restarted.token_address, server.address) == want

    # Paid, then the chain is killed (anvil writes nothing at SIGKILL): the state written since has the payment.
    ledger = ServedLedger(payouts.paths.served_ledger)
    try:
        serve(ledger, {server.peer_id: 2000})
    finally:
        ledger.close()
    want += 2000 * 5 * 10**17 // 1000
    assert wait_until(lambda: token_balance(info.rpc_url, info.token_address, server.address) == want, 60)
    head = int(_rpc(restarted.rpc_url, "eth_blockNumber"), 16)
    state = payouts.paths.chain_dir / "state.json"
    assert wait_until(lambda: _best_block(state) >= head, 10), "the keeper did not write the state"
    payouts._chain.tree.kill()  # (the test reaches into the part it checks)
    payouts.stop()
    restarted = payouts.ensure()
    assert restarted.token_address == info.token_address and not restarted.state_lost
    assert token_balance(restarted.rpc_url, restarted.token_address, server.address) == want


def test_an_anvil_that_cannot_be_installed_is_one_clear_problem(tmp_path, monkeypatch, app_paths):
    bad = tmp_path / "anvil.tgz"
    bad.write_bytes(b"not a tarball")
    monkeypatch.setenv("FARNODE_ANVIL_SOURCE", str(bad))
    lp = LocalPayouts(app_paths, tools_root=tmp_path / "tools")
    from farnode_desktop.core.errors import FarNodeError

    with pytest.raises(FarNodeError) as err:
        lp.ensure()
    assert lp.problem == err.value.message and lp.status()["problem"] == lp.problem
    assert lp.info is None and lp.pids() == []


def test_a_chain_started_again_while_the_old_keeper_is_still_busy_gets_its_own_keeper(payouts, monkeypatch):
    """A stop, then a start, while the first chain's state keeper is still in a write (a slow anvil; on a loaded
    machine, or waiting for the lock the stop held): the new chain's state is still written as blocks are mined,
    and the old keeper ends by itself."""
    entered, gate = threading.Event(), threading.Event()
    real_save = LocalChain.save_state

    def save_state(chain):
        if threading.current_thread().name == "farnode-chain-state" and not gate.is_set():
            entered.set()
            gate.wait(60)  # the first keeper, in the middle of a write
        return real_save(chain)

    monkeypatch.setattr(LocalChain, "save_state", save_state)
    payouts.ensure()
    first = payouts._keeper
    assert entered.wait(30), "the keeper never wrote"
    payouts.stop()
    info = payouts.ensure()
    gate.set()
    assert wait_until(lambda: not first.is_alive(), 10)
    _rpc(info.rpc_url, "evm_mine")
    head = int(_rpc(info.rpc_url, "eth_blockNumber"), 16)
    state = payouts.paths.chain_dir / "state.json"
    assert wait_until(lambda: _best_block(state) >= head, 10), "no keeper writes the new chain's state"
