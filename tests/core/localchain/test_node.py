"""The local chain with the real anvil: start, deploy, restart with state kept, state lost, port in use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from farnode_desktop.core.localchain.install import install_anvil
from farnode_desktop.core.localchain.node import OPERATOR, LocalChain
from tests.support.chain import token_balance
from tests.support.processes import pid_gone
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[3]
ARTIFACT = REPO / "resources/contracts/RewardToken.json"
TARBALL = REPO / "tools/foundry-rs-anvil-linux-amd64-1.7.1.tgz"


@pytest.fixture(scope="module")
def anvil_bin(tmp_path_factory):
    import os
    src = os.environ.get("FARNODE_ANVIL_SOURCE") or str(TARBALL)
    if not Path(src).is_file():
        pytest.skip(f"the anvil tarball {src} is missing: run scripts/system-deps.sh")
    return install_anvil(tmp_path_factory.mktemp("anvil"), source=src).path


def test_restart_keeps_token_and_balance_and_lost_state_is_reported(tmp_path, anvil_bin):
    chain = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)
    first = chain.start()
    try:
        assert not first.state_lost and first.operator == OPERATOR
        assert token_balance(first.rpc_url, first.token_address, OPERATOR) == 10**30
        pid = chain.proc.pid
    finally:
        chain.stop()
    assert pid_gone(pid)
    again = chain.start()
    try:
        assert again.token_address == first.token_address and not again.state_lost
        assert again.rpc_url == first.rpc_url  # the remembered port
        assert token_balance(again.rpc_url, again.token_address, OPERATOR) == 10**30
    finally:
        chain.stop()
    (tmp_path / "chain" / "state.json").unlink()
    lost = chain.start()
    try:
        assert lost.state_lost and lost.token_address
    finally:
        chain.stop()


def test_remembered_port_in_use_takes_another(tmp_path, anvil_bin):
    chain = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)
    first = chain.start()
    chain.stop()
    port = int(first.rpc_url.rsplit(":", 1)[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        second = chain.start()
        try:
            assert second.rpc_url != first.rpc_url and second.token_address == first.token_address
        finally:
            chain.stop()


def test_operator_address_is_its_keys():
    from eth_account import Account

    from farnode_desktop.core.localchain.node import OPERATOR_KEY
    assert Account.from_key(OPERATOR_KEY).address == OPERATOR


@pytest.mark.parametrize("step", [0, 30])
def test_an_anvil_left_by_a_killed_app_is_ended_at_the_next_start(tmp_path, anvil_bin, clock_step, step):
    """The app killed (SIGKILL, taskkill /f) leaves its anvil running: nothing tells it. The next start ends
    that very process (its state saved), takes its port back and keeps the token, also when the wall clock
    stepped in between (``step`` s: psutil's create_time moved with it); a process that only reuses the
    remembered pid is left alone."""
    import json
    import subprocess
    import sys

    import psutil

    first = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)
    info = first.start()
    orphan = first.proc.pid  # the app "dies" here: no stop
    clock_step(step)
    second = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)
    try:
        again = second.start()
        assert pid_gone(orphan)
        first.proc.wait(5)  # (this test is its parent: reap it)
        assert again.rpc_url == info.rpc_url and again.token_address == info.token_address
        assert not again.state_lost
    finally:
        second.stop()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        meta = json.loads((tmp_path / "chain" / "chain.json").read_text())
        meta.update(pid=other.pid, started=psutil.Process(other.pid).create_time())
        (tmp_path / "chain" / "chain.json").write_text(json.dumps(meta))
        third = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)
        third.start()
        third.stop()
        assert other.poll() is None  # not an anvil of this folder: untouched
    finally:
        other.kill()
        other.wait()


def test_the_state_file_is_written_when_a_block_was_mined_and_only_then(tmp_path, anvil_bin):
    """anvil's own --state-interval rewrote the whole state (every block ever mined) every 5 s: the app writes
    it when something was mined, and a killed anvil keeps what was written (the token, then a payment)."""
    import time

    from farnode_desktop.core.localchain.node import DEPLOYER
    from farnode_desktop.core.payout.chain import ChainClient

    chain = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)
    info = chain.start()
    state = tmp_path / "chain" / "state.json"
    try:
        assert state.is_file()  # the token's deployment, written at start
        written = state.stat().st_mtime_ns
        time.sleep(6)  # longer than the old interval
        assert not chain.save_state()  # nothing mined since
        assert state.stat().st_mtime_ns == written
        client = ChainClient(info.rpc_url, timeout_s=10, max_attempts=1)
        try:
            client.call("eth_sendTransaction", [{"from": DEPLOYER, "to": OPERATOR, "value": hex(12345)}])
            before = int(client.call("eth_getBalance", [OPERATOR, "latest"]), 16)
        finally:
            client.close()
        assert chain.save_state()
        assert state.stat().st_mtime_ns != written
        chain.tree.kill()  # SIGKILL: anvil writes nothing itself
        chain.proc.wait(5)
    finally:
        chain.stop()
    again = chain.start()
    try:
        assert not again.state_lost and again.token_address == info.token_address
        client = ChainClient(again.rpc_url, timeout_s=10, max_attempts=1)
        try:
            assert int(client.call("eth_getBalance", [OPERATOR, "latest"]), 16) == before
        finally:
            client.close()
    finally:
        chain.stop()


def test_a_state_read_before_a_stop_is_not_written_over_the_one_anvil_writes(tmp_path, anvil_bin, monkeypatch):
    """The app's periodic writing runs on its own thread: a state read from anvil, then a payment, then the
    stop (which writes the state, payment included) must not end with the older state written last. (anvil's
    own writing at its exit, which this used to rely on, left the payment out in 2 of 6 such stops.)"""
    from farnode_desktop.core.localchain import node
    from farnode_desktop.core.localchain.node import DEPLOYER
    from farnode_desktop.core.payout.chain import ChainClient

    chain = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)
    info = chain.start()
    client = ChainClient(info.rpc_url, timeout_s=10, max_attempts=1)
    real_call = ChainClient.call

    interleaved = []

    def mined(tx_hash):
        """As the payout service does, a payment counts once its receipt is there (anvil answers
        eth_sendTransaction with the hash; under load the block can come a moment later)."""
        assert wait_until(lambda: real_call(client, "eth_getTransactionReceipt", [tx_hash]) is not None, 10)

    def call(self, method, params=()):
        out = real_call(self, method, params)
        if method == "anvil_dumpState" and not interleaved:  # between the reading and the writing: a payment,
            interleaved.append(method)  # then the stop (on another thread in the app)
            mined(client.call("eth_sendTransaction", [{"from": DEPLOYER, "to": OPERATOR, "value": hex(777)}]))
            chain.stop()
        return out

    try:
        start_balance = int(client.call("eth_getBalance", [OPERATOR, "latest"]), 16)
        mined(client.call("eth_sendTransaction", [{"from": DEPLOYER, "to": OPERATOR, "value": hex(12345)}]))
        monkeypatch.setattr(node.ChainClient, "call", call)
        assert not chain.save_state()
        monkeypatch.undo()
    finally:
        client.close()
        chain.stop()
    again = chain.start()
    try:
        client = ChainClient(again.rpc_url, timeout_s=10, max_attempts=1)
        try:
            assert int(client.call("eth_getBalance", [OPERATOR, "latest"]), 16) == start_balance + 12345 + 777
        finally:
            client.close()
        assert not chain.save_state()  # nothing mined since the start's own writing
    finally:
        chain.stop()


def test_an_anvil_left_running_by_a_killed_app_gives_its_state_to_the_next_start(tmp_path, anvil_bin):
    """The app was SIGKILLed after a payment it had not written yet: the next start reads the state from the
    anvil left running (the payment with it), then ends that anvil and starts its own on that state."""
    from farnode_desktop.core.localchain.node import DEPLOYER
    from farnode_desktop.core.payout.chain import ChainClient

    first = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)
    info = first.start()
    left = first.proc.pid
    try:
        client = ChainClient(info.rpc_url, timeout_s=10, max_attempts=1)
        try:
            before = int(client.call("eth_getBalance", [OPERATOR, "latest"]), 16)
            client.call("eth_sendTransaction", [{"from": DEPLOYER, "to": OPERATOR, "value": hex(4242)}])
        finally:
            client.close()
        second = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)  # the next app, the first one gone
        again = second.start()
        try:
            assert pid_gone(left)
            assert again.token_address == info.token_address and not again.state_lost
            client = ChainClient(again.rpc_url, timeout_s=10, max_attempts=1)
            try:
                assert int(client.call("eth_getBalance", [OPERATOR, "latest"]), 16) == before + 4242
            finally:
                client.close()
        finally:
            second.stop()
    finally:
        first.tree.kill()
        first.proc.wait(5)
