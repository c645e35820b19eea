"""The payout wallet as the app's faces use it: what to show, and the user's actions on it.

:class:`WalletService` wraps the :class:`~farnode_desktop.core.payout.wallet.WalletManager` (built on first
use: eth-account takes about a second to import, and its key arithmetic runs in a helper process) and tells
the app when the wallet's address changed, so the earnings follow. Every method reads or writes the OS
keyring: BLOCKING, call it off the GUI thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from farnode_desktop.core.settings import SettingsStore


@dataclass(frozen=True)
class WalletInfo:
    address: str  # checksummed payout address, "" when there is no wallet
    has_key: bool  # the OS keyring holds its key
    qr_png: bytes  # QR code of the address (PNG), b"" without a wallet


class WalletService:
    def __init__(self, settings_store: SettingsStore, address: Callable[[], str],
                 on_change: Callable[[], None], keystore: Any = None) -> None:
        """``address``: the payout address in the app's current settings; ``on_change``: called after an
        action saved a new address to the settings file."""
        self._store = settings_store
        self._address = address
        self._on_change = on_change
        self._keystore = keystore
        self._manager: Any = None
        self._lock = threading.Lock()

    @property
    def manager(self) -> Any:
        """The :class:`~farnode_desktop.core.payout.wallet.WalletManager`."""
        with self._lock:
            if self._manager is None:
                from farnode_desktop.core.payout.keys import KeysProcess
                from farnode_desktop.core.payout.wallet import WalletManager

                # Key arithmetic in a helper process: eth-account would hold ~30 MB for the app's whole life.
                self._manager = WalletManager(self._store, self._keystore, keys=KeysProcess())
            return self._manager

    def info(self) -> WalletInfo:
        """The payout address ("" when none), whether the keyring holds its key, and its QR code (PNG)."""
        address = self._address()
        if not address:
            return WalletInfo("", False, b"")
        from farnode_desktop.core.payout.wallet import address_qr

        return WalletInfo(address, self.manager.has_key(), address_qr(address, scale=6))

    def create(self) -> Any:
        """A new wallet (``NewWallet``); its phrase is in the result only (show it once, then drop it)."""
        new = self.manager.create()
        self._on_change()
        return new

    def import_key(self, key: str) -> str:
        address = self.manager.import_private_key(key)
        self._on_change()
        return address

    def import_phrase(self, phrase: str) -> str:
        address = self.manager.import_phrase(phrase)
        self._on_change()
        return address

    def export_key(self) -> str:
        """The private key; call only after the user explicitly confirmed."""
        return self.manager.export_private_key(confirm=True)

    def remove(self) -> str:
        """Remove the wallet; call only after the user explicitly confirmed."""
        address = self.manager.remove(confirm=True)
        self._on_change()
        return address
