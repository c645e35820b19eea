"""Issue 19: two app nodes in one local network, each paid for its own share. Node A runs the embedded default
(its swarm serving blocks 0-1, its demo traffic, its local chain and payout service); node B, another data
folder, joins it from a network file written from A's (peers, DHT prefix, model, payouts) and serves blocks
2-3, so every request runs through both. Each announces its own wallet; the payout service pays each wallet
what A's client counted for that server, within 2%."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.node.demo_swarm import DEMO_DHT_PREFIX, demo_model_path
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.payout.served import ServedLedger
from farnode_desktop.core.policies.runner import PolicyInputs
from tests.support.chain import token_balance
from tests.support.ports import free_port
from tests.support.secret_service import private_keystore
from tests.support.wait import wait_until

pytestmark = [pytest.mark.engine, pytest.mark.keyring, pytest.mark.serial]

KEY_A = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KEY_B = "0x" + "8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f"
RATE = Decimal("0.5")
REPO = Path(__file__).resolve().parents[3]
TARBALL = REPO / "tools/foundry-rs-anvil-linux-amd64-1.7.1.tgz"


def _paid(url: str, token: str, who: str) -> Decimal:
    return Decimal(token_balance(url, token, who)).scaleb(-18)


def test_two_nodes_each_paid_for_their_own_share(tmp_path, engine_root, secret_service, monkeypatch):
    src = os.environ.get("FARNODE_ANVIL_SOURCE") or str(TARBALL)
    if not Path(src).is_file():
        pytest.skip(f"the anvil tarball {src} is missing: run scripts/system-deps.sh")
    monkeypatch.setenv("FARNODE_ANVIL_SOURCE", src)
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(engine_root))
    pa = AppPaths(tmp_path / "a" / "config", tmp_path / "a" / "data", tmp_path / "a" / "logs",
                  tmp_path / "a" / "cache").ensure()
    pb = AppPaths(tmp_path / "b" / "config", tmp_path / "b" / "data", tmp_path / "b" / "logs",
                  tmp_path / "b" / "cache").ensure()
    pa.settings_file.write_text(json.dumps({"network": {"port": free_port(), "num_blocks": 2,
                                                        "demo_traffic_per_minute": 60}}))
    a = AppCore(pa, face="headless", policy_inputs=PolicyInputs(), keystore=private_keystore(),
                earnings_interval_s=2.0, payout_interval_s=20.0)
    b = None
    try:
        a.start()
        a.wallet.import_key(KEY_A)
        a.start_node()
        assert a.node.supervisor.wait_for(C.ONLINE, 180).state == C.ONLINE
        assert wait_until(lambda: a.local_payouts.info is not None, 60)
        info = a.local_payouts.info
        network = tmp_path / "lab.json"
        network.write_text(json.dumps({
            "farnode_network": 1, "name": "Two nodes", "initial_peers": list(a.node.supervisor.peer.addrs),
            "dht_prefix": DEMO_DHT_PREFIX, "model": str(demo_model_path(pa)),
            "payouts": {"rpc_url": info.rpc_url, "chain_id": info.chain_id, "token_address": info.token_address,
                        "payout_senders": [info.operator], "reward_per_1k_tokens": float(RATE),
                        "confirmations": 0}}))
        pb.settings_file.write_text(json.dumps({"network": {
            "port": free_port(), "host": "127.0.0.1", "announce_address": "127.0.0.1", "nat_traversal": False,
            "metered": True, "device": "cpu", "num_blocks": 2}}))
        b = AppCore(pb, face="headless", policy_inputs=PolicyInputs(), keystore=private_keystore(), earnings_interval_s=2.0)
        b.start()
        b.join_network(str(network))
        b.wallet.import_key(KEY_B)
        b.start_node()
        assert b.node.supervisor.wait_for(C.ONLINE, 240).state == C.ONLINE
        assert b.node.stats().blocks == (2, 3), b.node.stats()
        wa, wb = a.settings.wallet.address, b.settings.wallet.address
        assert wait_until(lambda: _paid(info.rpc_url, info.token_address, wa) > 0
                          and _paid(info.rpc_url, info.token_address, wb) > 0, 240), \
            a.local_payouts.service_log.read_text()[-3000:]
        peer_a, peer_b = a.node.supervisor.peer.peer_id, b.node.supervisor.peer.peer_id
        a.stop_node()  # the traffic ends first; then B leaves
        b.stop_node()
        ledger = ServedLedger(pa.served_ledger)
        try:
            served = ledger.totals()
        finally:
            ledger.close()
        want = {wa: Decimal(served.get(peer_a, 0)) * RATE / 1000, wb: Decimal(served.get(peer_b, 0)) * RATE / 1000}
        assert want[wa] > 0 and want[wb] > 0, served

        def settled() -> bool:
            return all(abs(_paid(info.rpc_url, info.token_address, w) - v) <= v * Decimal("0.02")
                       for w, v in want.items())

        assert wait_until(settled, 90), ({w: _paid(info.rpc_url, info.token_address, w) for w in want}, want)
        print(f"client counted {served}; paid A {_paid(info.rpc_url, info.token_address, wa)} FMR for "
              f"{want[wa]}, B {_paid(info.rpc_url, info.token_address, wb)} FMR for {want[wb]}")
        # B reads what it was paid through its own earnings, from the chain the network file named
        b.earnings.sync_now()
        assert wait_until(lambda: b.earnings.latest is not None and b.earnings.latest.paid_total > 0, 30)
    finally:
        if b is not None:
            b.close()
        a.close()
