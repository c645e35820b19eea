"""Wallet and Earnings pages on the real core: a real Secret Service keyring (private D-Bus session) and a
real chain (anvil with the reward token), offscreen Qt."""

from __future__ import annotations

import csv
import json

import pytest
from eth_account import Account
from PySide6.QtWidgets import QMessageBox

from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.keystore import Keystore
from farnode_desktop.core.policies.runner import PolicyInputs
from farnode_desktop.gui.errors import OPEN_DIALOGS
from farnode_desktop.gui.pages.wallet import PhraseDialog
from tests.gui.conftest import shot
from tests.support.secret_service import private_keystore


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
    ks = private_keystore()
    core = AppCore(app_paths, policy_inputs=PolicyInputs(), keystore=ks)
    core.start()
    yield core, ks
    core.close()


def read_phrase(dlg: PhraseDialog) -> list[str]:
    """The words as the user reads them in the numbered grid (" 3. word")."""
    return [lab.text().split(". ", 1)[1] for lab in sorted(dlg.word_labels, key=lambda lab: int(lab.text().split(".")[0]))]


def confirm_phrase(dlg: PhraseDialog, words: list[str]) -> None:
    """Type the asked words (a wrong one first: refused in red, the dialog stays), then the right ones."""
    assert len(dlg.asked) == 3 and f"#{dlg.asked[0]}" in dlg.prompt.text()
    wrong_word = "zzz" if words[dlg.asked[1] - 1] != "zzz" else "yyy"
    for n, edit in zip(dlg.asked, dlg.inputs, strict=True):
        edit.setText(words[n - 1])
    dlg.inputs[1].setText(wrong_word)
    dlg.close_button.click()
    assert dlg.isVisible() and f"#{dlg.asked[1]} is not right" in dlg.problem.text()
    assert "#d63031" in dlg.problem.styleSheet()
    dlg.inputs[1].setText(f"  {words[dlg.asked[1] - 1].upper()} ")  # spaces and case do not matter
    dlg.close_button.click()
    assert dlg.confirmed


def test_first_run_wallet_step_confirms_the_new_phrase_by_typed_words(qtbot, keyring_core, tasks, artifacts_dir):
    """The wizard's wallet step creates the wallet the same way: numbered words, three typed back."""
    from farnode_desktop.gui.bridge import BusBridge
    from farnode_desktop.gui.first_run import FirstRunWizard

    core, _ks = keyring_core
    bridge = BusBridge(core.bus)
    wiz = FirstRunWizard(core, tasks, bridge)
    qtbot.addWidget(wiz)
    wiz.show()
    wiz.next()
    wiz.next()
    page = wiz.wallet_step.page
    assert wiz.currentPage() is wiz.wallet_step and wiz.wallet_step.subTitle().startswith("Step 3 of 5.")
    qtbot.waitUntil(lambda: page.empty.isVisible(), timeout=10_000)
    page.create_button.click()
    qtbot.waitUntil(lambda: isinstance(page.last_dialog, PhraseDialog) and page.last_dialog.isVisible(),
                    timeout=20_000)
    dlg = page.last_dialog
    words = read_phrase(dlg)
    assert len(words) == 12 and [lab.text().split(".")[0].strip() for lab in dlg.word_labels] == [
        str(i) for i in range(1, 13)]
    shot(dlg, artifacts_dir, "gui-first-run-phrase.png")
    for edit in dlg.inputs:
        edit.setText("wrong")
    dlg.close_button.click()
    assert dlg.isVisible() and not dlg.confirmed and "are not right" in dlg.problem.text()
    shot(dlg, artifacts_dir, "gui-first-run-phrase-wrong.png")
    confirm_phrase(dlg, words)
    Account.enable_unaudited_hdwallet_features()
    address = Account.from_mnemonic(" ".join(words)).address
    qtbot.waitUntil(lambda: page.full.isVisible() and page.address.text() == address, timeout=10_000)
    wiz.reject()
    bridge.close()
    tasks.wait()
    qtbot.waitUntil(lambda: tasks.pending == 0, timeout=10_000)  # results delivered before the wizard goes


def test_wallet_create_shows_the_phrase_once_then_export_and_remove(qtbot, keyring_core, artifacts_dir):
    core, ks = keyring_core
    g = _gui(qtbot, core)
    try:
        g.window.show_page("Wallet")
        page = g.window.pages["Wallet"]
        qtbot.waitUntil(lambda: page.empty.isVisible(), timeout=10_000)
        shot(g.window, artifacts_dir, "gui-wallet-empty.png")
        page.create_button.click()
        qtbot.waitUntil(lambda: isinstance(page.last_dialog, PhraseDialog) and page.last_dialog.isVisible(),
                        timeout=20_000)
        dlg = page.last_dialog
        words = read_phrase(dlg)
        assert len(words) == 12
        shot(dlg, artifacts_dir, "gui-wallet-phrase.png")
        dlg.reject()
        assert dlg.isVisible()  # Esc does not dismiss it before the words were typed back
        confirm_phrase(dlg, words)
        assert not dlg.isVisible() and all(lab.text() == "" for lab in dlg.word_labels)
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
    """The Earnings page and the dashboard's card read as money: why there is nothing yet (no wallet, no chain,
    no payout), then the token's symbol on every amount, the next payout and the labelled estimate."""
    from dataclasses import replace

    wallet = chain.new_wallet()
    core = AppCore(app_paths, policy_inputs=PolicyInputs(), earnings_interval_s=3600)
    core.start()
    g = _gui(qtbot, core)
    try:
        g.window.resize(800, 600)
        g.window.show_page("Earnings")
        page = g.window.pages["Earnings"]
        card = g.window.dashboard.card_earnings
        # Nothing set up: the first thing to do is a wallet (not a list of chain settings, not 0.0000s).
        page.sync_now()
        qtbot.waitUntil(lambda: page.empty.isVisible() and page.sync_button.isEnabled(), timeout=15_000)
        assert page.empty.title.text() == "Create a wallet to be paid"
        assert not page.details.isVisible() and not page.notice.isVisible()
        shot(g.window, artifacts_dir, "gui-earnings-no-wallet.png")
        page.empty_button.click()
        assert g.window.stack.currentWidget() is g.window.pages["Wallet"]
        g.window.dashboard.refresh_earnings()
        qtbot.waitUntil(lambda: card.note.text() == "Create a wallet to be paid", timeout=10_000)
        assert card.value.text() == "–"

        # A wallet, no chain: say that the chain is what is missing.
        s = core.settings
        core.save_settings(replace(s, wallet=replace(s.wallet, address=wallet)))
        g.window.show_page("Earnings")
        qtbot.waitUntil(lambda: page.empty.title.text() == "No payout chain is set up", timeout=10_000)
        assert "Settings" in page.empty.text.text() and page.empty_button.text() == "Open Settings"

        # The chain set up (the network publishes 0.5 per 1,000 tokens), no payout yet.
        s = core.settings
        chain_settings = replace(s.chain, rpc_url=chain.url, chain_id=chain.w3.eth.chain_id,
                                 token_address=chain.token.address, payout_senders=[chain.sender], confirmations=2,
                                 reward_per_1k_tokens=0.5, start_block=chain.head() + 1)
        core.save_settings(replace(s, chain=chain_settings))
        now = __import__("time").time()
        core.store.record_many([("tokens_inference_per_s", now - 30, 3000.0)], add=True)
        core.store.flush()
        page.sync_now()
        qtbot.waitUntil(lambda: page.empty.title.text() == "No payout yet" and page.snapshot.symbol == "FMR",
                        timeout=30_000)
        assert "FMR" in page.empty.text.text() and page.details.isVisible()
        assert page.card_paid.value.text() == "0 FMR" and page.card_balance.value.text() == "0 FMR"
        assert page.card_estimate.value.text() == "≈ 1.5 FMR"  # 3,000 tokens x 0.5 / 1,000
        assert "so far (no payout yet)" in page.card_estimate.note.text()
        assert "since the last payout" not in page.card_estimate.note.text()
        assert page.card_next.value.text() == "–"
        qtbot.waitUntil(lambda: card.value.text() == "none yet", timeout=10_000)
        assert "≈ 1.5 FMR earned (estimate)" in card.note.text()

        # Payouts: three confirmed (ten minutes apart), one pending.
        chain.pay(wallet, chain.units(1.5))
        for amount in (2.25, 0.5):
            rpc_time(chain, 600)
            chain.pay(wallet, chain.units(amount))
        chain.mine(3)
        chain.pay(wallet, chain.units(0.5))  # not yet confirmed
        page.sync_now()
        # (a background sync started by the settings change may answer first: wait for the full picture)
        qtbot.waitUntil(lambda: page.card_paid.value.text() == "4.25 FMR"
                        and page.card_pending.value.text() == "0.5 FMR", timeout=30_000)
        assert page.card_balance.value.text() == "4.75 FMR"
        assert page.card_paid.note.text() == "3 confirmed payouts"
        assert page.card_next.value.text() in ("due",) or page.card_next.value.text().startswith("≈ ")
        assert "every ~10 min" in page.card_next.note.text()
        assert "ESTIMATE" in page.card_estimate.note.text() and "since the last payout" in page.card_estimate.note.text()
        assert not page.empty.isVisible() and not page.notice.isVisible()
        qtbot.waitUntil(lambda: page.table.rowCount() == 4, timeout=10_000)
        assert page.table.item(0, 1).text().endswith(" FMR")
        assert "Payouts of FMR" in page.header.findChild(__import__("PySide6.QtWidgets").QtWidgets.QLabel,
                                                         "subtitle").text()
        g.window.attach_charts()
        page.scroll.verticalScrollBar().setValue(0)
        shot(g.window, artifacts_dir, "gui-earnings-800x600.png")
        g.window.resize(1400, 1000)
        qtbot.wait(200)
        shot(g.window, artifacts_dir, "gui-earnings.png")
        qtbot.waitUntil(lambda: card.value.text() == "4.25 FMR", timeout=10_000)
        assert "pending 0.5 · balance 4.75" in card.note.text() and "next" in card.note.text()
        out = tmp_path / "payouts.csv"
        page.export_to(out)
        qtbot.waitUntil(lambda: page.last_export is not None, timeout=10_000)
        rows = list(csv.DictReader(out.read_text().splitlines()))
        assert [r["status"] for r in rows].count("confirmed") == 3 and len(rows) == 4
    finally:
        _quit(qtbot, g)


def rpc_time(chain, seconds: int) -> None:
    """Move the chain's clock: the next block is ``seconds`` later."""
    from tests.support.chain import rpc

    rpc(chain.url, "evm_increaseTime", [seconds])
