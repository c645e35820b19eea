"""The payout wallet: create, import, export, remove; sign and verify the node-binding statement.

The private key lives only in the OS keyring (:mod:`farnode_desktop.core.payout.keystore`); the settings file holds
the checksummed address only. The key is read from the keyring just for the moment it is needed (signing,
an explicit export), and never goes to files, logs, settings, command lines or the engine's environment.
Error messages never repeat what the user typed when it may be a secret.

Every operation either completes or leaves the previous wallet exactly as it was: the new key is written
to the keyring (and read back) before the settings switch to its address, and a failure at any step
undoes the steps before it.

This module owns ``eth-account`` (and its ``eth_utils`` helpers) and ``segno`` (QR codes).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from eth_account import Account
from eth_account.hdaccount.mnemonic import Language, Mnemonic
from eth_account.messages import encode_defunct
from eth_utils import is_checksum_address, to_checksum_address

from farnode_desktop import APP_ID
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.payout.keystore import Keystore
from farnode_desktop.core.settings import SettingsStore

Account.enable_unaudited_hdwallet_features()

DEFAULT_DERIVATION_PATH = "m/44'/60'/0'/0/0"
PHRASE_LENGTHS = (12, 15, 18, 21, 24)
BINDING_TITLE = "FarNode node binding"
_SECRET_FORMAT = 1
_PATH_RE = re.compile(r"^m(/[0-9]{1,10}'?)+$")
_HEX_KEY_RE = re.compile(r"^(0[xX])?[0-9a-fA-F]{64}$")
_ADDRESS_RE = re.compile(r"^0[xX][0-9a-fA-F]{40}$")
_PEER_ID_RE = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{20,128}$")  # libp2p peer ids are base58btc

T = TypeVar("T")


class WalletError(FarNodeError):
    title = "Wallet problem"


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
    return to_checksum_address("0x" + body)


def _normalise_key(key: str) -> bytes:
    s = (key or "").strip()
    if not _HEX_KEY_RE.match(s):
        n = len(s[2:] if s[:2].lower() == "0x" else s)
        hint = (" That looks like a recovery phrase: use 'Import recovery phrase' instead."
                if len(s.split()) in PHRASE_LENGTHS else
                " That looks like an address, not a private key." if _ADDRESS_RE.match(s) else "")
        raise WalletError("This is not a valid private key: a key is 64 hexadecimal characters (0-9, a-f), "
                          f"optionally starting with 0x; what was entered has {n} characters after any 0x."
                          + hint)
    raw = bytes.fromhex(s[2:] if s[:2].lower() == "0x" else s)
    return raw


def _account_from_key(key: str):
    raw = _normalise_key(key)
    try:
        return Account.from_key(raw)
    except Exception:  # out of the curve's range (0, >= n): never chain, the message may hold the key
        raise WalletError("This private key is outside the range a secp256k1 key can have (it is zero or too "
                          "large), so it cannot be a real wallet key. Check it and try again.") from None


def _normalise_phrase(phrase: str) -> str:
    words = (phrase or "").strip().lower().split()
    if len(words) not in PHRASE_LENGTHS:
        raise WalletError(f"A recovery phrase has 12, 15, 18, 21 or 24 words; this one has {len(words)}. "
                          "Check that you copied all the words.")
    wordlist = set(Mnemonic(Language.ENGLISH).wordlist)
    unknown = [str(i + 1) for i, w in enumerate(words) if w not in wordlist]
    if unknown:
        raise WalletError("Word(s) number " + ", ".join(unknown) + " of the recovery phrase are not in the "
                          "BIP-39 English word list. Check the spelling of those words.")
    joined = " ".join(words)
    if not Mnemonic(Language.ENGLISH).is_mnemonic_valid(joined):
        raise WalletError("The words are all valid, but the phrase's checksum does not match: a word is wrong "
                          "or the order is different. Check the phrase word by word.")
    return joined


def _account_from_phrase(phrase: str, path: str, passphrase: str):
    path = (path or DEFAULT_DERIVATION_PATH).strip()
    if not _PATH_RE.match(path):
        raise WalletError(f"The derivation path {path!r} is not valid: it looks like m/44'/60'/0'/0/0. "
                          "Leave it empty for the standard Ethereum path.")
    words = _normalise_phrase(phrase)
    try:
        return Account.from_mnemonic(words, passphrase=passphrase or "", account_path=path)
    except Exception:
        raise WalletError("The wallet could not be derived from this recovery phrase and path. Check both "
                          "and try again.") from None


def _key_hex(account: Any) -> str:
    return "0x" + bytes(account.key).hex()


# ------------------------------------------------------------------------------------------------ manager
class WalletManager:
    """The one payout wallet: its address in the settings, its key in the OS keyring.

    Blocking (the keyring may be slow or show a prompt): call it off the GUI thread.
    """

    def __init__(self, settings_store: SettingsStore, keystore: Keystore | None = None):
        self.settings_store = settings_store
        self.keystore = keystore or Keystore()

    # -- reading
    def address(self) -> str:
        """The payout address from the settings, "" when there is no wallet."""
        return self.settings_store.load().wallet.address

    def has_key(self) -> bool:
        """True when the keyring holds the key of the configured address."""
        address = self.address()
        return bool(address) and self.keystore.get_secret(address) is not None

    def _with_account(self, fn: Callable[[Any], T]) -> T:
        """Load the key from the keyring, call ``fn(account)``, and drop the key again."""
        address = self.address()
        if not address:
            raise WalletError("There is no payout wallet yet. Create one or import one first.")
        raw = self.keystore.get_secret(address)
        if raw is None:
            raise WalletError(f"The key of the payout wallet {address} is not in your keyring (it was removed "
                              "or the keyring was reset). Import the wallet again from its private key or "
                              "recovery phrase.")
        account = None
        try:
            try:
                data = json.loads(raw)
                account = Account.from_key(data["private_key"])
            except Exception:
                raise WalletError(f"The keyring entry of {address} is damaged and holds no usable key. Import "
                                  "the wallet again from its private key or recovery phrase.") from None
            if account.address != address:
                raise WalletError(f"The keyring entry of {address} holds the key of another address. Import the "
                                  "wallet again from its private key or recovery phrase.")
            return fn(account)
        finally:
            del account, raw

    # -- changing
    def _install(self, account: Any, source: str) -> str:
        """Store ``account``'s key, then switch the settings to its address; undo on failure."""
        self.keystore.backend()  # refuse early, before anything happens, when there is no keyring
        settings = self.settings_store.load()
        address = account.address
        previous_entry = self.keystore.get_secret(address)
        payload = json.dumps({"v": _SECRET_FORMAT, "address": address, "private_key": _key_hex(account),
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
        account, phrase = Account.create_with_mnemonic(num_words=words, account_path=DEFAULT_DERIVATION_PATH)
        address = self._install(account, "created")
        return NewWallet(address=address, phrase=phrase)

    def import_private_key(self, key: str) -> str:
        """Make the wallet of ``key`` (64 hex characters, with or without 0x) the payout wallet."""
        return self._install(_account_from_key(key), "private_key")

    def import_phrase(self, phrase: str, *, derivation_path: str = DEFAULT_DERIVATION_PATH,
                      passphrase: str = "") -> str:
        """Make the wallet derived from a BIP-39 ``phrase`` (and optional path and passphrase) the payout
        wallet."""
        return self._install(_account_from_phrase(phrase, derivation_path, passphrase), "phrase")

    def export_private_key(self, *, confirm: bool = False) -> str:
        """The private key (0x + 64 hex). Only with ``confirm=True``, after the user explicitly agreed."""
        if confirm is not True:
            raise WalletError("Exporting the private key needs your explicit confirmation: anyone who sees the "
                              "key can take your earnings. Confirm to show it.", title="Confirmation needed")
        return self._with_account(_key_hex)

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
        return self._with_account(lambda a: "0x" + bytes(a.sign_message(encode_defunct(text=text)).signature).hex())

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
                        now: float | None = None) -> str:
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
    try:
        sig = bytes.fromhex(signature[2:] if signature[:2].lower() == "0x" else signature)
        signer = Account.recover_message(encode_defunct(text=statement), signature=sig)
    except Exception:
        raise WalletError("The node-binding signature is malformed (it must be 65 bytes as hex).") from None
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
