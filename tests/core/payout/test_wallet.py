"""Wallet tests against a real Secret Service (gnome-keyring on a private D-Bus session bus)."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.keystore import SERVICE, KeyringAccessError, Keystore
from farnode_desktop.core.payout.wallet import (
    WalletError,
    WalletManager,
    address_qr,
    parse_address,
    verify_node_binding,
)
from farnode_desktop.core.settings import SettingsStore

pytestmark = pytest.mark.keyring

Account.enable_unaudited_hdwallet_features()
PEER = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
# A published BIP-39 test vector ("abandon" x11 + "about"): its first Ethereum address is well known.
ABANDON = "abandon " * 11 + "about"
ABANDON_ADDRESS = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"


def _new_key() -> tuple[str, str]:
    acct = Account.create()
    return "0x" + bytes(acct.key).hex(), acct.address


def test_create_stores_key_in_keyring_and_only_address_in_settings(wallet, keystore, secret_service, app_paths):
    new = wallet.create()
    assert len(new.phrase.split()) == 12 and "hidden" in repr(new) and new.phrase.split()[0] not in repr(new)
    assert new.address == parse_address(new.address) and wallet.address() == new.address
    # The phrase derives the stored key.
    key = wallet.export_private_key(confirm=True)
    assert Account.from_mnemonic(new.phrase).address == new.address == Account.from_key(key).address
    # Exactly one keyring entry, under the address, holding the key and not the phrase.
    entries = secret_service.entries(keystore.service)
    assert list(entries) == [new.address]
    assert json.loads(entries[new.address])["private_key"] == key and new.phrase not in entries[new.address]
    settings = json.loads(app_paths.settings_file.read_text())
    assert settings["wallet"] == {"address": new.address}


def test_import_private_key_with_and_without_prefix(wallet):
    key, address = _new_key()
    assert wallet.import_private_key(key[2:].upper()) == address
    assert wallet.export_private_key(confirm=True) == key
    key2, address2 = _new_key()
    assert wallet.import_private_key("  " + key2 + "\n") == address2 and wallet.address() == address2


def test_import_phrase_known_vector_and_path(wallet):
    assert wallet.import_phrase("  " + ABANDON.upper().replace(" ", "   ") + " ") == ABANDON_ADDRESS
    second = wallet.import_phrase(ABANDON, derivation_path="m/44'/60'/0'/0/1")
    assert second == Account.from_mnemonic(ABANDON, account_path="m/44'/60'/0'/0/1").address != ABANDON_ADDRESS
    assert wallet.address() == second


def test_export_needs_explicit_confirmation(wallet):
    key, _ = _new_key()
    wallet.import_private_key(key)
    for confirm in (False, "yes", 1, None):
        with pytest.raises(WalletError, match="explicit confirmation") as e:
            wallet.export_private_key(confirm=confirm)
        assert key[2:] not in str(e.value)
    assert wallet.export_private_key(confirm=True) == key


def test_remove(wallet, keystore, secret_service):
    key, address = _new_key()
    wallet.import_private_key(key)
    with pytest.raises(WalletError, match="Confirm"):
        wallet.remove()
    assert wallet.address() == address and address in secret_service.entries(keystore.service)
    assert wallet.remove(confirm=True) == address
    assert wallet.address() == "" and secret_service.entries(keystore.service) == {}
    with pytest.raises(WalletError, match="no payout wallet"):
        wallet.export_private_key(confirm=True)
    with pytest.raises(WalletError, match="no payout wallet"):
        wallet.remove(confirm=True)


@pytest.mark.parametrize("bad, message", [
    ("", "not a valid private key"),
    ("0x1234", "4 characters"),
    ("0x" + "g" * 64, "not a valid private key"),
    ("0x" + "00" * 32, "outside the range"),
    ("0x" + "ff" * 32, "outside the range"),
    (ABANDON, "looks like a recovery phrase"),
    ("0x9858EfFD232B4033E47d90003D41EC34EcaEda94", "looks like an address"),
])
def test_invalid_private_keys_leave_previous_wallet(wallet, bad, message):
    key, address = _new_key()
    wallet.import_private_key(key)
    with pytest.raises(WalletError, match=message) as e:
        wallet.import_private_key(bad)
    if len(bad) > 8:
        assert bad.lower().removeprefix("0x") not in str(e.value).lower()
    assert wallet.address() == address and wallet.export_private_key(confirm=True) == key


@pytest.mark.parametrize("bad, path, message", [
    ("abandon " * 10 + "about", None, "has 11"),
    ("abandon " * 11 + "abuot", None, r"number 12 of"),
    ("abandon " * 12, None, "checksum does not match"),
    (ABANDON, "m/44'/60'/x", "derivation path"),
    (ABANDON, "44/60", "derivation path"),
])
def test_invalid_phrases_leave_previous_wallet(wallet, bad, path, message):
    key, address = _new_key()
    wallet.import_private_key(key)
    kwargs = {"derivation_path": path} if path else {}
    with pytest.raises(WalletError, match=message) as e:
        wallet.import_phrase(bad, **kwargs)
    assert "abandon" not in str(e.value)
    assert wallet.address() == address and wallet.export_private_key(confirm=True) == key


def test_addresses_and_checksums():
    good = ABANDON_ADDRESS
    assert parse_address(good.lower()) == good and parse_address(" " + good + " ") == good
    assert parse_address("0x" + good[2:].upper()) == good
    wrong = good.replace("E", "e", 1)  # one letter's case flipped: the EIP-55 checksum no longer matches
    with pytest.raises(WalletError, match="wrong checksum"):
        parse_address(wrong)
    for bad in ("", "0x123", "9858EfFD232B4033E47d90003D41EC34EcaEda94", "0x" + "z" * 40):
        with pytest.raises(WalletError, match="not an Ethereum address"):
            parse_address(bad)


def test_locked_keyring_mid_operation_leaves_previous_wallet_intact(wallet, keystore, secret_service):
    first_key, first = _new_key()
    wallet.import_private_key(first_key)
    second_key, second = _new_key()
    secret_service.lock()
    try:
        with pytest.raises(KeyringAccessError, match="locked") as e:
            wallet.import_private_key(second_key)
        assert second_key[2:] not in str(e.value) and "Unlock" in e.value.message
        with pytest.raises(KeyringAccessError, match="locked"):
            wallet.create()
        assert wallet.address() == first  # the settings never switched
    finally:
        secret_service.unlock()
    # The first wallet still loads from the keyring and signs; the second left no entry.
    assert wallet.export_private_key(confirm=True) == first_key
    binding = wallet.sign_node_binding(PEER, chain_id=31337)
    assert verify_node_binding(binding.statement, binding.signature) == first
    assert list(secret_service.entries(keystore.service)) == [first]


def test_settings_failure_after_keyring_write_is_rolled_back(app_paths, keystore, secret_service):
    key, address = _new_key()
    blocker = app_paths.config_dir / "not-a-dir"
    blocker.write_text("a file where the settings folder should be")
    broken = WalletManager(SettingsStore(blocker / "settings.json"), keystore)
    with pytest.raises(FarNodeError):
        broken.import_private_key(key)
    assert secret_service.entries(keystore.service) == {}  # the new key was taken out again


def test_missing_or_foreign_keyring_entry_is_explained(wallet, keystore):
    key, address = _new_key()
    wallet.import_private_key(key)
    keystore.delete_secret(address)
    with pytest.raises(WalletError, match="not in your keyring"):
        wallet.sign_message("x")
    other_key, _ = _new_key()
    keystore.set_secret(address, json.dumps({"private_key": other_key}))
    with pytest.raises(WalletError, match="key of another address"):
        wallet.export_private_key(confirm=True)
    keystore.set_secret(address, "garbage")
    with pytest.raises(WalletError, match="damaged"):
        wallet.export_private_key(confirm=True)


def test_node_binding_sign_and_verify(wallet):
    key, address = _new_key()
    wallet.import_private_key(key)
    b = wallet.sign_node_binding(PEER, address.lower(), chain_id=8453, issued_at=1_700_000_000)
    assert b.address == address and "Chain ID: 8453" in b.statement and "2023-11-14T22:13:20Z" in b.statement
    assert "App: farnode-desktop" in b.statement and f"Peer ID: {PEER}" in b.statement
    assert verify_node_binding(b.statement, b.signature, expected_peer_id=PEER, expected_chain_id=8453) == address
    assert verify_node_binding(b.statement, b.signature[2:]) == address
    with pytest.raises(WalletError, match="not 1"):
        verify_node_binding(b.statement, b.signature, expected_chain_id=1)
    with pytest.raises(WalletError, match="not 12D3KooWother"):
        verify_node_binding(b.statement, b.signature, expected_peer_id="12D3KooWother")
    with pytest.raises(WalletError, match="issued"):
        verify_node_binding(b.statement, b.signature, max_age_s=3600, now=1_700_010_000)
    # Tampering with any field breaks the signature.
    _, other = _new_key()
    forged = b.statement.replace(address, other)
    with pytest.raises(WalletError, match="not by the wallet"):
        verify_node_binding(forged, b.signature)
    with pytest.raises(WalletError, match="not by the wallet"):
        verify_node_binding(b.statement.replace("8453", "8454"), b.signature)
    with pytest.raises(WalletError, match="canonical"):
        verify_node_binding(b.statement + "\nExtra: 1", b.signature)
    with pytest.raises(WalletError, match="malformed"):
        verify_node_binding(b.statement, "0x1234")
    with pytest.raises(WalletError, match="not a FarNode"):
        verify_node_binding("hello", b.signature)
    with pytest.raises(WalletError, match="only be bound"):
        wallet.sign_node_binding(PEER, other, chain_id=1)
    with pytest.raises(WalletError, match="peer id"):
        wallet.sign_node_binding("not a peer id!", chain_id=1)


def test_default_keystore_is_the_secret_service_under_the_app_name(app_paths, secret_service, monkeypatch):
    import keyring.core

    keyring.core.init_backend()  # choose as the app does, in this environment
    ks = Keystore()
    assert ks.describe() == "SecretService Keyring" and ks.service == SERVICE == "farnode-desktop"
    manager = WalletManager(SettingsStore(app_paths.settings_file))
    key, address = _new_key()
    manager.import_private_key(key)
    try:
        assert address in secret_service.entries("farnode-desktop")
    finally:
        manager.remove(confirm=True)
    assert address not in secret_service.entries("farnode-desktop")


def test_address_qr_codes():
    png = address_qr(ABANDON_ADDRESS.lower())
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 200
    svg = address_qr(ABANDON_ADDRESS, kind="svg", uri=True)
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    with pytest.raises(WalletError):
        address_qr("0xnope")
