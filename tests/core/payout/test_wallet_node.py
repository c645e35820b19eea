"""A real node with a real payout wallet: the address is the node's public name, the node's peer id is bound
to the wallet by a signed statement, and the key and phrase reach no file, log, command line or engine
environment."""

from __future__ import annotations

import psutil
import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.payout.wallet import WalletManager, verify_node_binding
from farnode_desktop.core.settings import SettingsStore
from tests.support.processes import cmdline, environ_text

pytestmark = [pytest.mark.engine, pytest.mark.keyring]


def _needles(key_hex: str, phrase: str) -> list[bytes]:
    bare = key_hex.lower().removeprefix("0x")
    return [bare.encode(), bare.upper().encode(), ("0x" + bare).encode(), phrase.encode(),
            " ".join(phrase.split()[:4]).encode()]


def test_wallet_node_public_name_binding_and_no_secret_anywhere(engine_paths, bus, keystore, free_port):  # noqa: F811
    store = SettingsStore(engine_paths.settings_file)
    manager = WalletManager(store, keystore)
    new = manager.create()
    key = manager.export_private_key(confirm=True)
    settings = store.load()
    settings.network.port = free_port
    settings.network.demo_traffic_per_minute = 60
    store.save(settings)
    assert settings.wallet.address == new.address

    node = NodeController(engine_paths, bus)
    try:
        node.start()
        assert node.supervisor.wait_for(C.ONLINE, 120).state == C.ONLINE
        assert node.traffic.wait_for(lambda s: s.requests >= 1, 90)
        launcher = psutil.Process(node.supervisor.pid)
        engine_procs = [launcher, *launcher.children(recursive=True),
                        psutil.Process(node.traffic._proc.pid)]
        assert node.supervisor._config["public_name"] == new.address  # announced to the swarm

        # The statement a payout service checks: this node's peer id belongs to this wallet's owner.
        peer_id = node.supervisor.peer.peer_id
        binding = manager.sign_node_binding(peer_id, chain_id=31337)
        assert verify_node_binding(binding.statement, binding.signature, expected_peer_id=peer_id) == new.address

        needles = _needles(key, new.phrase)
        for proc in engine_procs:
            text = cmdline(proc) + "\n" + environ_text(proc)
            for n in needles:
                assert n.decode() not in text, f"secret in {proc.pid} {proc.name()}"
    finally:
        node.stop()
        node.close()
    for folder in (engine_paths.config_dir, engine_paths.data_dir, engine_paths.log_dir, engine_paths.cache_dir):
        for f in folder.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                for n in needles:
                    assert n not in data, f"secret found in {f}"
