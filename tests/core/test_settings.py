from __future__ import annotations

import json

import pytest

from farnode_desktop.core.errors import SettingsError
from farnode_desktop.core.settings import CUSTOM_SWARM, DamagedSettings, Settings, SettingsStore


def test_missing_file_gives_defaults(tmp_path):
    store = SettingsStore(tmp_path / "settings.json")
    s = store.load()
    assert s == Settings() and store.notes == []


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


@pytest.mark.parametrize("text, where", [
    ('{"network": {"port": 4', "line 1, column 23"),  # a write cut short by some other tool
    ('{\n  "network": {\n    "swarm": "custom",\n  }\n}\n', "line 4, column 3"),  # a trailing comma
    ('{"network": {"demo_traffic_per_minute": NaN}}', "NaN at line 1, column 41"),
    ('{"policies": {"drain_s": -Infinity}}', "-Infinity at line 1, column 26"),
    ("", "is empty"),
    ("[1, 2]", "not a JSON object"),
])
def test_a_damaged_file_is_refused_where_it_is_and_left_alone(tmp_path, text, where):
    path = tmp_path / "settings.json"
    path.write_text(text)
    with pytest.raises(DamagedSettings) as ei:
        SettingsStore(path).load()
    assert str(path) in ei.value.message and where in ei.value.message
    assert "farnode-desktop settings edit" in ei.value.message and "delete it" in ei.value.message
    assert path.read_text() == text and [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "settings.json"
    path.write_bytes(b'{"network":\n {"model": "caf\xe9"}}')
    with pytest.raises(DamagedSettings, match="not UTF-8 text .byte 27, line 2"):
        SettingsStore(path).load()
    assert path.read_bytes() == b'{"network":\n {"model": "caf\xe9"}}'


def test_invalid_values_are_refused_not_reset(tmp_path):
    path = tmp_path / "settings.json"
    original = {"network": {"port": 99999, "model": "m"}, "wallet": {"address": "0xabc"},
                "chain": {"confirmations": "twelve", "rpc_url": "http://127.0.0.1:8545"}}
    path.write_text(json.dumps(original))
    with pytest.raises(DamagedSettings) as ei:
        SettingsStore(path).load()
    message = ei.value.message
    assert "network.port must be between 0 and 65535, not 99999" in message
    assert "chain.confirmations takes a whole number, not \"twelve\"" in message
    assert "wallet.address '0xabc' is not an address" in message
    assert json.loads(path.read_text()) == original and len(list(tmp_path.iterdir())) == 1


def test_a_file_of_an_older_version_still_loads(tmp_path):
    path = tmp_path / "settings.json"  # version 1 saved the loopback host for every network, and fewer keys
    path.write_text(json.dumps({"network": {"swarm": "public", "host": "127.0.0.1", "port": 31400}}))
    s = SettingsStore(path).load()
    assert s.network.host == "" and s.network.port == 31400 and s.policies == Settings().policies


@pytest.mark.parametrize("key, value, words", [
    ("network.demo_traffic_per_minute", float("nan"), "network.demo_traffic_per_minute must be a finite number"),
    ("policies.drain_s", float("inf"), "policies.drain_s must be a finite number"),
    ("wallet.address", "0x" + "a" * 39, "is not an address"),
    ("wallet.address", "0x52908400098527886E0F7030069857D2E4169EE7".replace("E7", "e7"), "wrong checksum"),
    ("network.dht_prefix", "my.model", "no '.' or spaces"),
    ("network.dht_prefix", "my model", "no '.' or spaces"),
    ("chain.rpc_url", "file:///etc/passwd", "http:// or https://"),
    ("chain.rpc_url", "not a url", "http:// or https://"),
    ("chain.chain_id", -1, "positive whole number"),
    ("chain.token_address", "0x1234", "is not an address"),
    ("chain.payout_senders", ["0x1234"], "is not an address"),
    ("chain.start_block", -5, "must not be negative"),
    ("network.public_name", "x" * 5000, "at most 64 printable characters"),
])
def test_values_the_engine_or_the_chain_would_refuse(tmp_path, key, value, words):
    import dataclasses

    section, _, name = key.partition(".")
    s = Settings()
    setattr(getattr(s, section), name, value)
    assert any(words in p for p in s.validate()), s.validate()
    store = SettingsStore(tmp_path / "settings.json")
    with pytest.raises(SettingsError, match="not valid"):
        store.save(s)
    assert not (tmp_path / "settings.json").exists()
    fine = Settings()
    fine.wallet.address = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55's own example
    fine.chain = dataclasses.replace(fine.chain, rpc_url="https://rpc.example.org/v1", chain_id=8453,
                                     token_address="0x52908400098527886e0f7030069857d2e4169ee7")
    fine.network.dht_prefix, fine.network.public_name = "meta-llama/Llama-2-70b-hf", "Jöns' 4090"
    assert fine.validate() == []


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
