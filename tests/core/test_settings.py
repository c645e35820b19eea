from __future__ import annotations

import json

import pytest

from farnode_desktop.core.errors import SettingsError
from farnode_desktop.core.settings import CUSTOM_SWARM, Settings, SettingsStore


def test_missing_file_gives_defaults(tmp_path):
    store = SettingsStore(tmp_path / "settings.json")
    s = store.load()
    assert s == Settings() and store.warnings == []


def test_round_trip_is_atomic_and_private(tmp_path):
    path = tmp_path / "cfg" / "settings.json"
    store = SettingsStore(path)
    s = Settings()
    s.network.port = 40000
    s.network.initial_peers = ["/ip4/1.2.3.4/tcp/31337/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]
    s.wallet.address = "0x0000000000000000000000000000000000000001"
    store.save(s)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"]  # no temp file left behind
    again = SettingsStore(path).load()
    assert again == s


def test_corrupt_file_is_kept_aside_and_reported(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"network": {"port": 4')  # truncated write from some other tool
    store = SettingsStore(path)
    s = store.load()
    assert s == Settings()
    assert len(store.warnings) == 1 and "damaged" in store.warnings[0]
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.corrupt-")]
    assert len(kept) == 1 and kept[0].read_text() == '{"network": {"port": 4'
    assert kept[0].name in store.warnings[0]
    assert not path.exists()


def test_invalid_values_reset_only_their_section(tmp_path):
    path = tmp_path / "settings.json"
    original = {"network": {"port": 99999, "model": "m"}, "wallet": {"address": "0xabc"},
                "chain": {"confirmations": "twelve", "rpc_url": "http://127.0.0.1:8545"}}
    path.write_text(json.dumps(original))
    store = SettingsStore(path)
    s = store.load()
    assert s.network.port == Settings().network.port  # invalid section reset
    assert s.wallet.address == "0xabc"  # valid sections kept
    assert s.chain.rpc_url == "http://127.0.0.1:8545" and s.chain.confirmations == 12
    assert "network.port" in store.warnings[0] and "chain.confirmations" in store.warnings[0]
    kept = [p for p in tmp_path.iterdir() if ".invalid-" in p.name]
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == original


def test_save_refuses_invalid_settings_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "settings.json"
    store = SettingsStore(path)
    good = Settings()
    store.save(good)
    bad = Settings()
    bad.network.swarm = CUSTOM_SWARM
    bad.network.initial_peers = ["/ip4/1.2.3.4/tcp/31337"]  # no /p2p/<peer id>: not a usable peer address
    with pytest.raises(SettingsError, match="p2p"):
        store.save(bad)
    assert SettingsStore(path).load() == good
