"""Fixtures for the wallet tests. The real Secret Service (``secret_service``, ``keystore``) is in
tests/support/secret_service.py."""

from __future__ import annotations

import pytest

from farnode_desktop.core.payout.wallet import WalletManager
from farnode_desktop.core.settings import SettingsStore


@pytest.fixture
def wallet(app_paths, keystore) -> WalletManager:
    return WalletManager(SettingsStore(app_paths.settings_file), keystore)
