"""The local chain with the real anvil: start, deploy, restart with state kept, state lost, port in use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from farnode_desktop.core.localchain.install import install_anvil
from farnode_desktop.core.localchain.node import OPERATOR, LocalChain
from tests.support.chain import token_balance
from tests.support.processes import pid_gone

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


def test_an_anvil_left_by_a_killed_app_is_ended_at_the_next_start(tmp_path, anvil_bin):
    """The app killed (SIGKILL, taskkill /f) leaves its anvil running: nothing tells it. The next start ends
    that very process (its state saved), takes its port back and keeps the token; a process that only reuses
    the remembered pid is left alone."""
    import json
    import subprocess
    import sys

    import psutil

    first = LocalChain(tmp_path / "chain", anvil_bin, ARTIFACT)
    info = first.start()
    orphan = first.proc.pid  # the app "dies" here: no stop
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
