"""Wallet and Earnings pages on the real core: a real Secret Service keyring (private D-Bus session) and a
real chain (anvil with the reward token), offscreen Qt."""

from __future__ import annotations

import csv
import json
import uuid

import pytest
from eth_account import Account
from PySide6.QtWidgets import QMessageBox

from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.keystore import Keystore
from farnode_desktop.core.policies.runner import PolicyInputs
from farnode_desktop.gui.errors import OPEN_DIALOGS
from farnode_desktop.gui.pages.wallet import SecretDialog
from tests.gui.conftest import shot


def _gui(qtbot, core):
    from farnode_desktop.gui.app import GuiApp

    g = GuiApp(core, use_tray=False)
    qtbot.addWidget(g.window)
    g.window.show()
    qtbot.waitExposed(g.window)
    return g


def _quit(qtbot, g):
    with qtbot.waitSignal(g.quitted, timeout=30_000):
        g.quit()
    for d in list(OPEN_DIALOGS):
        d.close()


@pytest.fixture
def keyring_core(app_paths, secret_service):  # noqa: F811
    from keyring.backends.SecretService import Keyring

    ks = Keystore(Keyring(), service=f"farnode-desktop-test-{uuid.uuid4().hex[:8]}")
    core = AppCore(app_paths, policy_inputs=PolicyInputs(), keystore=ks)
    core.start()
    yield core, ks
    core.close()


def test_wallet_create_shows_the_phrase_once_then_export_and_remove(qtbot, keyring_core, artifacts_dir):
    core, ks = keyring_core
    g = _gui(qtbot, core)
    try:
        g.window.show_page("Wallet")
        page = g.window.pages["Wallet"]
        qtbot.waitUntil(lambda: page.empty.isVisible(), timeout=10_000)
        shot(g.window, artifacts_dir, "gui-wallet-empty.png")
        page.create_button.click()
        qtbot.waitUntil(lambda: isinstance(page.last_dialog, SecretDialog) and page.last_dialog.isVisible(),
                        timeout=20_000)
        dlg = page.last_dialog
        words = dlg.secret.text().split()
        assert len(words) == 12
        assert not dlg.close_button.isEnabled()  # the user must acknowledge first
        shot(dlg, artifacts_dir, "gui-wallet-phrase.png")
        dlg.reject()
        assert dlg.isVisible()  # Esc does not dismiss it unacknowledged
        dlg.ack.setChecked(True)
        dlg.close_button.click()
        assert dlg.secret.text() == ""
        Account.enable_unaudited_hdwallet_features()
        address = Account.from_mnemonic(" ".join(words)).address
        qtbot.waitUntil(lambda: page.full.isVisible() and page.address.text() == address, timeout=10_000)
        assert not page.qr.pixmap().isNull()
        settings_text = core.paths.settings_file.read_text()
        assert address in settings_text
        assert " ".join(words) not in settings_text
        assert core.settings.wallet.address == address  # the core took the new address
        shot(g.window, artifacts_dir, "gui-wallet.png")

        page.confirmed_export()
        qtbot.waitUntil(lambda: page.last_dialog is not dlg and page.last_dialog.isVisible(), timeout=10_000)
        key = page.last_dialog.secret.text()
        assert Account.from_key(key).address == address
        page.last_dialog.ack.setChecked(True)
        page.last_dialog.close_button.click()

        page.confirmed_remove()
        qtbot.waitUntil(lambda: page.empty.isVisible(), timeout=10_000)
        assert core.settings.wallet.address == ""
        assert ks.get_secret(address) is None
    finally:
        _quit(qtbot, g)


def test_wallet_import_key_and_bad_input(qtbot, keyring_core):
    core, _ks = keyring_core
    g = _gui(qtbot, core)
    try:
        page = g.window.pages["Wallet"]
        page.run_import(core.wallet.import_key, "not a key")
        qtbot.waitUntil(lambda: any(isinstance(d, QMessageBox) for d in OPEN_DIALOGS), timeout=10_000)
        box = next(d for d in OPEN_DIALOGS if isinstance(d, QMessageBox))
        assert "not a key" not in box.text()  # never repeats what may be a secret
        box.close()
        acct = Account.create()
        page.run_import(core.wallet.import_key, acct.key.hex())
        qtbot.waitUntil(lambda: page.address.text() == acct.address, timeout=10_000)
        assert json.loads(core.paths.settings_file.read_text())["wallet"]["address"] == acct.address
        assert acct.key.hex()[-20:] not in core.paths.settings_file.read_text()
    finally:
        _quit(qtbot, g)


def test_wallet_without_a_keyring_says_what_to_do(qtbot, app_paths):
    from keyring.backends.fail import Keyring as FailKeyring

    core = AppCore(app_paths, policy_inputs=PolicyInputs(), keystore=Keystore(FailKeyring()))
    core.start()
    g = _gui(qtbot, core)
    try:
        page = g.window.pages["Wallet"]
        page.create_button.click()
        qtbot.waitUntil(lambda: any(isinstance(d, QMessageBox) for d in OPEN_DIALOGS), timeout=10_000)
        box = next(d for d in OPEN_DIALOGS if isinstance(d, QMessageBox))
        assert box.windowTitle() == "No usable keyring"
        assert core.settings.wallet.address == "" and not app_paths.settings_file.exists()
    finally:
        _quit(qtbot, g)


def test_earnings_page_from_a_real_chain(qtbot, app_paths, chain, artifacts_dir, tmp_path):  # noqa: F811
    wallet = chain.new_wallet()
    core = AppCore(app_paths, policy_inputs=PolicyInputs(), earnings_interval_s=3600)
    core.start()
    g = _gui(qtbot, core)
    try:
        g.window.show_page("Earnings")
        page = g.window.pages["Earnings"]
        page.sync_now()
        qtbot.waitUntil(lambda: page.notice.isVisible(), timeout=15_000)
        assert "RPC URL" in page.notice.text.text()  # not set up yet: says what is missing

        s = core.settings
        from dataclasses import replace

        chain_settings = replace(s.chain, rpc_url=chain.url, chain_id=chain.w3.eth.chain_id,
                                 token_address=chain.token.address, payout_senders=[chain.sender], confirmations=2,
                                 reward_per_1k_tokens=0.5)
        core.save_settings(replace(s, chain=chain_settings, wallet=replace(s.wallet, address=wallet)))
        chain.pay(wallet, chain.units(1.5))
        chain.pay(wallet, chain.units(2.25))
        chain.mine(3)
        chain.pay(wallet, chain.units(0.5))  # not yet confirmed
        page.sync_now()
        # (a background sync started by the settings change may answer first: wait for the full picture)
        qtbot.waitUntil(lambda: page.card_paid.value.text() == "3.7500"
                        and page.card_pending.value.text() == "0.5000", timeout=30_000)
        assert page.card_balance.value.text() == "4.2500"
        assert "ESTIMATE" in page.card_estimate.note.text()
        qtbot.waitUntil(lambda: page.table.rowCount() == 3, timeout=10_000)
        assert not page.notice.isVisible()
        g.window.attach_charts()
        shot(g.window, artifacts_dir, "gui-earnings.png")
        out = tmp_path / "payouts.csv"
        page.export_to(out)
        qtbot.waitUntil(lambda: page.last_export is not None, timeout=10_000)
        rows = list(csv.DictReader(out.read_text().splitlines()))
        assert [r["status"] for r in rows].count("confirmed") == 2 and len(rows) == 3
    finally:
        _quit(qtbot, g)
