"""The no-keyring path (a real process with no D-Bus session) and a scan for leaked secrets."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from eth_account import Account

from farnode_desktop.core.node.demo_swarm import launcher_config
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.node.runtimes import make_runtime
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.payout.wallet import WalletManager
from farnode_desktop.core.settings import SettingsStore
from tests.support import REPO

pytestmark = pytest.mark.keyring
Account.enable_unaudited_hdwallet_features()

NO_KEYRING_SCRIPT = r"""
import json, sys
import keyring
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.keystore import KeyringUnavailableError
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import SettingsStore
from farnode_desktop.core.payout.wallet import WalletManager

paths = AppPaths.default().ensure()
w = WalletManager(SettingsStore(paths.settings_file))
out = {"backend": type(keyring.get_keyring()).__module__ + "." + type(keyring.get_keyring()).__name__}
for name, call in [("create", lambda: w.create()), ("import", lambda: w.import_private_key(sys.argv[1]))]:
    try:
        call()
        out[name] = "STORED"
    except KeyringUnavailableError as e:
        out[name] = [e.title, e.message]
print(json.dumps(out))
"""


def test_no_keyring_refuses_and_stores_nothing(tmp_path):
    acct = Account.create()
    key = "0x" + bytes(acct.key).hex()
    home = tmp_path / "home"
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL")}
    env.update(FARNODE_HOME=str(home), XDG_RUNTIME_DIR=str(runtime), PYTHONPATH=str(REPO))
    env.pop("PYTHON_KEYRING_BACKEND", None)  # let keyring choose, as it does for a user
    r = subprocess.run([sys.executable, "-c", NO_KEYRING_SCRIPT, key], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["backend"] == "keyring.backends.fail.Keyring"
    for name in ("create", "import"):
        title, message = out[name]
        assert title == "No usable keyring"
        assert "Nothing was stored" in message and "gnome-keyring" in message and "dbus-run-session" in message
        assert key[2:] not in message
    assert key[2:] not in r.stdout + r.stderr
    # Nothing at all was written: no settings, and no file anywhere under FARNODE_HOME holds the key.
    assert not (home / "config" / "settings.json").exists()
    for f in home.rglob("*"):
        assert not f.is_file() or key[2:].encode() not in f.read_bytes().lower()


def _secret_forms(key_hex: str) -> list[bytes]:
    body = key_hex.removeprefix("0x").lower()
    return [body.encode(), ("0x" + body).encode(), bytes.fromhex(body)]


def test_secrets_never_reach_files_logs_settings_or_engine_env(app_paths, keystore, secret_service, caplog,
                                                               monkeypatch):
    # Everything the app logs, at every level, goes to a file in the log dir during this test.
    handler = logging.FileHandler(app_paths.log_dir / "app.log")
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        store = SettingsStore(app_paths.settings_file)
        wallet = WalletManager(store, keystore)
        created = wallet.create(words=24)
        key1 = wallet.export_private_key(confirm=True)
        other = Account.create()
        key2 = "0x" + bytes(other.key).hex()
        wallet.import_private_key(key2.upper().replace("0X", "0x"))
        phrase_acct, phrase = Account.create_with_mnemonic(num_words=12)
        key3 = "0x" + bytes(phrase_acct.key).hex()
        assert wallet.import_phrase(phrase) == phrase_acct.address
        binding = wallet.sign_node_binding("12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN", chain_id=1)
        (app_paths.data_dir / "binding.json").write_text(json.dumps(binding.__dict__))  # what the app may keep
        settings = store.load()
        # A user's environment may hold a key under a usual name: it must not reach the engine either.
        monkeypatch.setenv("WALLET_PRIVATE_KEY", key2)
        monkeypatch.setenv("ETH_MNEMONIC", phrase)
        # What the app really gives an engine process: the runtime's spawn spec (argv, environment) and the
        # launcher configuration it writes on the control pipe.
        runtime = make_runtime(settings.network.runtime, engine=EngineEnv(app_paths, "cpu"), paths=app_paths)
        spec = runtime.spawn_spec("farnode_desktop.engine.launcher", [], {}, None)
        config = runtime.translate_config(launcher_config(settings, app_paths, model_path=app_paths.models_dir))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    assert config["public_name"] == phrase_acct.address  # the node announces the payout address, nothing more
    assert "WALLET_PRIVATE_KEY" not in spec.env and "ETH_MNEMONIC" not in spec.env

    needles: list[bytes] = []
    for k in (key1, key2, key3):
        needles += _secret_forms(k)
    for p in (created.phrase, phrase):
        needles += [p.encode(), " ".join(p.split()[:4]).encode()]  # also a fragment of the phrase

    haystacks: dict[str, bytes] = {}
    paths = AppPaths.default()
    for d in (paths.config_dir, paths.data_dir, paths.log_dir, paths.cache_dir):
        for f in d.rglob("*"):
            if f.is_file():
                haystacks[str(f)] = f.read_bytes()
    assert str(paths.settings_file) in haystacks and str(paths.log_dir / "app.log") in haystacks
    # The Secret Service's own files are encrypted: not even they hold the key in the clear.
    for f in (secret_service.data_home / "keyrings").rglob("*"):
        if f.is_file():
            haystacks[str(f)] = f.read_bytes()
    haystacks["os.environ"] = "\n".join(f"{k}={v}" for k, v in os.environ.items()
                                        if k not in ("WALLET_PRIVATE_KEY", "ETH_MNEMONIC")).encode()
    haystacks["engine env"] = "\n".join(f"{k}={v}" for k, v in spec.env.items()).encode()
    haystacks["engine argv"] = "\n".join(spec.argv).encode()
    haystacks["engine config"] = json.dumps(config).encode()
    haystacks["settings"] = json.dumps(settings.to_dict()).encode()
    haystacks["log records"] = "\n".join(r.getMessage() for r in caplog.records).encode()
    haystacks["binding"] = repr(binding).encode()
    haystacks["new wallet repr"] = repr(created).encode()
    for where, data in haystacks.items():
        low = data.lower()
        for needle in needles:
            assert needle.lower() not in low, f"a wallet secret leaked into {where}"
