"""The payout wallet: create, import, export, remove; sign and verify the node-binding statement.

The private key lives only in the OS keyring (:mod:`farnode_desktop.core.keystore`); the settings file holds
the checksummed address only. The key is read from the keyring just for the moment it is needed (signing,
an explicit export), and never goes to files, logs, settings, command lines or the engine's environment.
Error messages never repeat what the user typed when it may be a secret.

Every operation either completes or leaves the previous wallet exactly as it was: the new key is written
to the keyring (and read back) before the settings switch to its address, and a failure at any step
undoes the steps before it.

The key arithmetic (new keys, phrases, signatures) is in :mod:`farnode_desktop.core.payout.keys`, in this
process or in a short helper process (the app core's choice: eth-account's memory stays out of the app).
This module owns ``segno`` (QR codes).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from farnode_desktop import APP_ID
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.eth_address import checksum, is_checksum_address
from farnode_desktop.core.keystore import Keystore
from farnode_desktop.core.payout.keys import (
    DEFAULT_DERIVATION_PATH,
    PHRASE_LENGTHS,
    KeyPair,
    KeysInProcess,
    WalletError,
)
from farnode_desktop.core.settings import SettingsStore

BINDING_TITLE = "FarNode node binding"
_SECRET_FORMAT = 1
_ADDRESS_RE = re.compile(r"^0[xX][0-9a-fA-F]{40}$")
_PEER_ID_RE = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{20,128}$")  # libp2p peer ids are base58btc

__all__ = ["DEFAULT_DERIVATION_PATH", "PHRASE_LENGTHS", "WalletError", "WalletManager", "NewWallet", "NodeBinding",
           "parse_address", "binding_statement", "verify_node_binding", "address_qr", "FarNodeError"]

T = TypeVar("T")


@dataclass(frozen=True)
class NewWallet:
    """A wallet just created. Show ``phrase`` ONCE, with the warning, and then drop it: it is not stored."""

    address: str
    phrase: str
    derivation_path: str = DEFAULT_DERIVATION_PATH

    def __repr__(self) -> str:  # never print the phrase by accident
        return f"NewWallet(address={self.address!r}, phrase=<{len(self.phrase.split())} words hidden>)"


PHRASE_WARNING = (
    "Write these words down on paper, in order, and keep them somewhere safe and private. They are the only "
    "way to recover this wallet if this computer or its keyring is lost. Anyone who sees them can take your "
    "earnings. FarNode Desktop does not store them and will not show them again."
)


@dataclass(frozen=True)
class NodeBinding:
    """An EIP-191 signed statement that binds a node's peer id to a wallet address."""

    statement: str  # the exact text that was signed (UTF-8)
    signature: str  # 0x-prefixed 65-byte signature (r, s, v)
    address: str
    peer_id: str
    chain_id: int
    issued_at: int  # epoch seconds


# ----------------------------------------------------------------------------------------------- parsing
def parse_address(text: str, *, what: str = "address") -> str:
    """The checksummed form of ``text``; raise :class:`WalletError` for anything that is not an address.

    All-lowercase and all-uppercase addresses have no checksum and are accepted; a mixed-case address
    must have a correct EIP-55 checksum (a wrong one usually means a typo).
    """
    s = (text or "").strip()
    if not _ADDRESS_RE.match(s):
        raise WalletError(f"The {what} {s[:50]!r} is not an Ethereum address: it must be 0x followed by 40 "
                          "hexadecimal characters. Copy it again from its source.")
    body = s[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address("0x" + body):
        raise WalletError(f"The {what} {s} has a wrong checksum (the mix of capital and small letters does not "
                          "match), which usually means a typo. Copy it again from its source.")
    return checksum("0x" + body)


# ------------------------------------------------------------------------------------------------ manager
class WalletManager:
    """The one payout wallet: its address in the settings, its key in the OS keyring.

    Blocking (the keyring may be slow or show a prompt): call it off the GUI thread.
    """

    def __init__(self, settings_store: SettingsStore, keystore: Keystore | None = None, keys: Any = None):
        self.settings_store = settings_store
        self.keystore = keystore or Keystore()
        self.keys = keys or KeysInProcess()  # or keys.KeysProcess(): the same operations in a helper process

    # -- reading
    def address(self) -> str:
        """The payout address from the settings, "" when there is no wallet."""
        return self.settings_store.load().wallet.address

    def has_key(self) -> bool:
        """True when the keyring holds the key of the configured address."""
        address = self.address()
        return bool(address) and self.keystore.get_secret(address) is not None

    def _with_key(self, fn: Callable[[KeyPair], T]) -> T:
        """Load the key from the keyring, check it is the wallet's, call ``fn(pair)``, and drop it again."""
        address = self.address()
        if not address:
            raise WalletError("There is no payout wallet yet. Create one or import one first.")
        raw = self.keystore.get_secret(address)
        if raw is None:
            raise WalletError(f"The key of the payout wallet {address} is not in your keyring (it was removed "
                              "or the keyring was reset). Import the wallet again from its private key or "
                              "recovery phrase.")
        pair = None
        try:
            try:
                pair = self.keys.from_key(json.loads(raw)["private_key"])
            except Exception:
                raise WalletError(f"The keyring entry of {address} is damaged and holds no usable key. Import "
                                  "the wallet again from its private key or recovery phrase.") from None
            if pair.address != address:
                raise WalletError(f"The keyring entry of {address} holds the key of another address. Import the "
                                  "wallet again from its private key or recovery phrase.")
            return fn(pair)
        finally:
            del pair, raw

    # -- changing
    def _install(self, pair: KeyPair, source: str) -> str:
        """Store the key, then switch the settings to its address; undo on failure."""
        self.keystore.backend()  # refuse early, before anything happens, when there is no keyring
        settings = self.settings_store.load()
        address = pair.address
        previous_entry = self.keystore.get_secret(address)
        payload = json.dumps({"v": _SECRET_FORMAT, "address": address, "private_key": pair.key,
                              "source": source, "created": int(time.time())})
        self.keystore.set_secret(address, payload)
        del payload
        settings.wallet.address = address
        try:
            self.settings_store.save(settings)
        except BaseException:
            if previous_entry is None:
                try:
                    self.keystore.delete_secret(address)
                except FarNodeError:
                    pass
            raise
        return address

    def create(self, *, words: int = 12) -> NewWallet:
        """Create a new wallet with a BIP-39 recovery phrase of ``words`` words and make it the payout wallet.

        The phrase is returned once (see :data:`PHRASE_WARNING`) and never stored.
        """
        if words not in PHRASE_LENGTHS:
            raise WalletError("A recovery phrase has 12, 15, 18, 21 or 24 words.")
        self.keystore.backend()
        pair = self.keys.create(words, DEFAULT_DERIVATION_PATH)
        address = self._install(pair, "created")
        return NewWallet(address=address, phrase=pair.phrase)

    def import_private_key(self, key: str) -> str:
        """Make the wallet of ``key`` (64 hex characters, with or without 0x) the payout wallet."""
        return self._install(self.keys.from_key(key), "private_key")

    def import_phrase(self, phrase: str, *, derivation_path: str = DEFAULT_DERIVATION_PATH,
                      passphrase: str = "") -> str:
        """Make the wallet derived from a BIP-39 ``phrase`` (and optional path and passphrase) the payout
        wallet."""
        return self._install(self.keys.from_phrase(phrase, derivation_path, passphrase), "phrase")

    def export_private_key(self, *, confirm: bool = False) -> str:
        """The private key (0x + 64 hex). Only with ``confirm=True``, after the user explicitly agreed."""
        if confirm is not True:
            raise WalletError("Exporting the private key needs your explicit confirmation: anyone who sees the "
                              "key can take your earnings. Confirm to show it.", title="Confirmation needed")
        return self._with_key(lambda pair: pair.key)

    def remove(self, *, confirm: bool = False) -> str:
        """Remove the payout wallet: its key from the keyring and its address from the settings."""
        if confirm is not True:
            raise WalletError("Removing the wallet deletes its key from this computer; without a copy of the key "
                              "or the recovery phrase the wallet is lost. Confirm to remove it.",
                              title="Confirmation needed")
        settings = self.settings_store.load()
        address = settings.wallet.address
        if not address:
            raise WalletError("There is no payout wallet to remove.")
        settings.wallet.address = ""
        self.settings_store.save(settings)
        try:
            self.keystore.delete_secret(address)
        except BaseException:
            settings.wallet.address = address
            self.settings_store.save(settings)
            raise
        return address

    # -- signing
    def sign_message(self, text: str) -> str:
        """An EIP-191 (personal_sign) signature of ``text`` by the wallet, 0x-hex."""
        return self._with_key(lambda pair: self.keys.sign(pair.key, text))

    def sign_node_binding(self, peer_id: str, address: str | None = None, *, chain_id: int,
                          issued_at: int | None = None) -> NodeBinding:
        """Sign the statement that binds the node ``peer_id`` to this wallet (``address``, if given, must be
        the wallet's). ``issued_at``: epoch seconds, now by default."""
        own = self.address()
        if address is not None and own and parse_address(address) != own:
            raise WalletError(f"The node can only be bound to the payout wallet {own}, not to {address}.")
        when = int(time.time()) if issued_at is None else int(issued_at)
        statement = binding_statement(peer_id, own, chain_id, when)
        signature = self.sign_message(statement)
        return NodeBinding(statement=statement, signature=signature, address=own, peer_id=peer_id,
                           chain_id=chain_id, issued_at=when)


# ------------------------------------------------------------------------------------------ node binding
def binding_statement(peer_id: str, address: str, chain_id: int, issued_at: int) -> str:
    """The exact text signed for a node binding (every field on its own ``Name: value`` line)."""
    if not _PEER_ID_RE.match(peer_id or ""):
        raise WalletError(f"{peer_id!r} is not a valid node peer id (a base58 string such as 12D3KooW...).")
    if not address:
        raise WalletError("There is no payout wallet yet. Create one or import one first.")
    address = parse_address(address)
    if not isinstance(chain_id, int) or chain_id <= 0:
        raise WalletError(f"The chain id must be a positive integer, not {chain_id!r}.")
    stamp = datetime.fromtimestamp(issued_at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"{BINDING_TITLE}\n"
            f"I control the wallet below and run the FarMesh node below; pay this node's rewards to it.\n"
            f"App: {APP_ID}\n"
            f"Peer ID: {peer_id}\n"
            f"Wallet: {address}\n"
            f"Chain ID: {chain_id}\n"
            f"Issued at: {stamp}\n"
            f"Timestamp: {issued_at}")


def parse_binding_statement(statement: str) -> dict[str, str]:
    lines = statement.split("\n")
    if not lines or lines[0] != BINDING_TITLE:
        raise WalletError("This is not a FarNode node-binding statement (its first line is wrong).")
    fields: dict[str, str] = {}
    for line in lines[2:]:
        name, sep, value = line.partition(": ")
        if not sep or name in fields:
            raise WalletError(f"The node-binding statement has a malformed line: {line[:80]!r}.")
        fields[name] = value
    missing = {"App", "Peer ID", "Wallet", "Chain ID", "Timestamp"} - fields.keys()
    if missing:
        raise WalletError("The node-binding statement lacks: " + ", ".join(sorted(missing)) + ".")
    return fields


def verify_node_binding(statement: str, signature: str, *, expected_peer_id: str | None = None,
                        expected_chain_id: int | None = None, max_age_s: float | None = None,
                        now: float | None = None, keys: Any = None) -> str:
    """Check a node-binding statement and its signature; return the bound (checksummed) wallet address.

    Raises :class:`WalletError` when the statement is malformed, the signature is not the wallet's, or an
    expectation (peer id, chain id, age in seconds) is not met.
    """
    fields = parse_binding_statement(statement)
    address = parse_address(fields["Wallet"], what="wallet address in the statement")
    try:
        chain_id = int(fields["Chain ID"])
        issued_at = int(fields["Timestamp"])
    except ValueError:
        raise WalletError("The node-binding statement's chain id or timestamp is not a number.") from None
    if statement != binding_statement(fields["Peer ID"], address, chain_id, issued_at):
        raise WalletError("The node-binding statement is not in the canonical form; it may have been altered.")
    signer = (keys or KeysInProcess()).recover(statement, signature)
    if signer != address:
        raise WalletError(f"The node-binding signature was made by {signer}, not by the wallet {address} it "
                          "names: the statement is not valid.")
    if expected_peer_id is not None and fields["Peer ID"] != expected_peer_id:
        raise WalletError(f"The statement binds node {fields['Peer ID']}, not {expected_peer_id}.")
    if expected_chain_id is not None and chain_id != expected_chain_id:
        raise WalletError(f"The statement is for chain {chain_id}, not {expected_chain_id}.")
    if max_age_s is not None:
        age = (time.time() if now is None else now) - issued_at
        if age > max_age_s or age < -300:
            raise WalletError(f"The node-binding statement was issued {age:.0f} s ago, outside the accepted "
                              f"{max_age_s:.0f} s; sign a new one.")
    return address


# ------------------------------------------------------------------------------------ QR code, engine env
def address_qr(address: str, *, kind: str = "png", scale: int = 8, border: int = 4, uri: bool = False) -> bytes:
    """A QR code of the checksummed ``address`` as PNG or SVG bytes (``uri``: as an EIP-681 ethereum: URI).
    ``scale``: pixels per module."""
    import io

    import segno

    content = parse_address(address)
    if uri:
        content = f"ethereum:{content}"
    if kind not in ("png", "svg"):
        raise ValueError("kind must be 'png' or 'svg'")
    buf = io.BytesIO()
    segno.make_qr(content, error="m").save(buf, kind=kind, scale=scale, border=border)
    return buf.getvalue()
