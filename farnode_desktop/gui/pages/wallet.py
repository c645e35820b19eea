"""Wallet: create (recovery phrase shown once, numbered, with a warning; three of its words typed back), import a key or a phrase, show the address
with copy and QR, export the key after an explicit confirmation, remove. Secrets stay in the core and the
OS keyring; this page only shows them when the user asks, and drops them when the dialog closes."""

from __future__ import annotations

import random

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from farnode_desktop.core.app_core import AppCore
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.errors import PROBLEM_COLOUR, show_error
from farnode_desktop.gui.widgets import Notice, page_header

PHRASE_WARNING = ("Write these words down on paper, in this order, and keep them somewhere safe. They are shown "
                  "only this once. Anyone who has them can take your earnings; without them a lost computer "
                  "means a lost wallet. FarNode never asks for them except to import the wallet.")


class SecretDialog(QDialog):
    """Shows a secret once (the private key); Close needs the acknowledgement box ticked.
    The text is cleared when the dialog closes."""

    def __init__(self, title: str, secret: str, warning: str, ack: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        layout = QVBoxLayout(self)
        warn = QLabel(f"<b style='color:#d63031'>Important.</b> {warning}")
        warn.setWordWrap(True)
        layout.addWidget(warn)
        self.secret = QLabel(secret)
        self.secret.setWordWrap(True)
        self.secret.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(font.pointSizeF() * 1.3)
        self.secret.setFont(font)
        self.secret.setStyleSheet("padding: 12px; border: 1px solid palette(mid); border-radius: 4px;")
        layout.addWidget(self.secret)
        self.ack = QCheckBox(ack)
        layout.addWidget(self.ack)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.close_button = self.buttons.button(QDialogButtonBox.StandardButton.Close)
        self.close_button.setEnabled(False)
        self.ack.toggled.connect(self.close_button.setEnabled)
        self.buttons.rejected.connect(self.accept)
        layout.addWidget(self.buttons)
        self.resize(560, 300)

    def reject(self) -> None:  # Esc / window close: only once acknowledged
        if self.ack.isChecked():
            super().reject()

    def done(self, r: int) -> None:
        self.secret.setText("")
        super().done(r)


class PhraseDialog(QDialog):
    """A new wallet's recovery phrase, shown once with its words numbered in a grid, and confirmed by typing
    three of them picked at random (a ticked box proves nothing): wrong words are refused in red, and the
    dialog does not close (Esc included) until they are right. The words are dropped when it closes."""

    CHECKED = 3

    def __init__(self, phrase: str, parent: QWidget | None = None, *, rng: random.Random | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Your recovery phrase")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        self._words = phrase.split()
        picks = (rng or random.SystemRandom()).sample(range(len(self._words)), min(self.CHECKED, len(self._words)))
        self.asked = sorted(i + 1 for i in picks)  # 1-based word numbers the user must type
        layout = QVBoxLayout(self)
        warn = QLabel(f"<b style='color:{PROBLEM_COLOUR}'>Important.</b> {PHRASE_WARNING}")
        warn.setWordWrap(True)
        layout.addWidget(warn)
        self.grid_box = QWidget()
        self.grid_box.setObjectName("phraseGrid")
        self.grid_box.setStyleSheet("#phraseGrid { border: 1px solid palette(mid); border-radius: 4px; }")
        grid = QGridLayout(self.grid_box)
        grid.setHorizontalSpacing(18)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        columns = 4 if len(self._words) > 12 else 3
        rows = -(-len(self._words) // columns)
        self.word_labels: list[QLabel] = []
        for i, word in enumerate(self._words):  # numbered down each column, as it is written on paper
            lab = QLabel(f"{i + 1:>2}. {word}")
            lab.setFont(font)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(lab, i % rows, i // rows)
            self.word_labels.append(lab)
        layout.addWidget(self.grid_box)
        nums = [f"#{n}" for n in self.asked]
        self.prompt = QLabel(f"To show you have written them down, type word {', '.join(nums[:-1])} and {nums[-1]}:"
                             if len(nums) > 1 else f"To show you have written them down, type word {nums[0]}:")
        self.prompt.setWordWrap(True)
        layout.addWidget(self.prompt)
        row = QHBoxLayout()
        self.inputs: list[QLineEdit] = []
        for n in self.asked:
            edit = QLineEdit()
            edit.setPlaceholderText(f"word #{n}")
            edit.textEdited.connect(lambda _t: self.problem.setText(""))
            row.addWidget(QLabel(f"#{n}"))
            row.addWidget(edit, 1)
            self.inputs.append(edit)
        layout.addLayout(row)
        self.problem = QLabel("")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet(f"color: {PROBLEM_COLOUR};")
        layout.addWidget(self.problem)
        self.buttons = QDialogButtonBox()
        self.close_button = self.buttons.addButton("I have written them down", QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button.setDefault(True)
        self.buttons.accepted.connect(self.confirm)
        layout.addWidget(self.buttons)
        self.confirmed = False
        self.resize(600, 420)

    def wrong(self) -> list[int]:
        """The asked word numbers whose typed word is not the phrase's."""
        return [n for n, edit in zip(self.asked, self.inputs, strict=True)
                if edit.text().strip().lower() != self._words[n - 1].lower()]

    def confirm(self) -> None:
        wrong = self.wrong()
        if wrong:
            nums = [f"#{n}" for n in wrong]
            which = (f"Words {', '.join(nums[:-1])} and {nums[-1]} are" if len(nums) > 1 else f"Word {nums[0]} is")
            self.problem.setText(f"{which} not right. Check what you wrote down against the numbered words above "
                                 f"and type {'them' if len(nums) > 1 else 'it'} again: without the right words on "
                                 "paper the wallet cannot be recovered.")
            return
        self.confirmed = True
        self.accept()

    def reject(self) -> None:  # Esc / window close: only once the words were typed right
        if self.confirmed:
            super().reject()
        else:
            self.problem.setText("Type the words asked for first: they are shown only this once.")

    def done(self, r: int) -> None:
        for lab in self.word_labels:
            lab.setText("")
        self._words = []
        for edit in self.inputs:
            edit.clear()
        super().done(r)


class PhraseImportDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import a recovery phrase")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Type the 12 to 24 words of the wallet's recovery phrase, separated by spaces."))
        self.phrase = QPlainTextEdit()
        self.phrase.setFixedHeight(80)
        layout.addWidget(self.phrase)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def done(self, r: int) -> None:
        self.text = self.phrase.toPlainText() if r == QDialog.DialogCode.Accepted else ""
        self.phrase.setPlainText("")
        super().done(r)


class WalletPage(QWidget):
    def __init__(self, core: AppCore, bridge: BusBridge, tasks: TaskRunner, parent: QWidget | None = None, *,
                 header: bool = True) -> None:
        super().__init__(parent)
        self.core, self.tasks = core, tasks
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        if header:
            layout.addWidget(page_header("Wallet", "Your payouts go to this address. Its key stays in your "
                                                   "system's keyring and never leaves this computer."))
        self.notice = Notice("#e0a100")
        layout.addWidget(self.notice)

        # -- no wallet
        self.empty = QWidget()
        e = QVBoxLayout(self.empty)
        e.setContentsMargins(0, 0, 0, 0)
        e.addWidget(QLabel("There is no payout wallet yet. Create a new one, or import one you already have."))
        row = QHBoxLayout()
        self.create_button = QPushButton("Create a new wallet")
        self.import_key_button = QPushButton("Import a private key…")
        self.import_phrase_button = QPushButton("Import a recovery phrase…")
        for b in (self.create_button, self.import_key_button, self.import_phrase_button):
            row.addWidget(b)
        row.addStretch(1)
        e.addLayout(row)
        layout.addWidget(self.empty)

        # -- wallet
        self.full = QWidget()
        f = QHBoxLayout(self.full)
        f.setContentsMargins(0, 0, 0, 0)
        col = QVBoxLayout()
        col.addWidget(QLabel("Payout address"))
        self.address = QLineEdit()
        self.address.setReadOnly(True)
        self.address.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.address.setMinimumWidth(420)
        col.addWidget(self.address)
        self.key_state = QLabel("")
        self.key_state.setWordWrap(True)
        col.addWidget(self.key_state)
        actions = QHBoxLayout()
        self.copy_button = QPushButton("Copy address")
        self.export_button = QPushButton("Export private key…")
        self.remove_button = QPushButton("Remove wallet…")
        for b in (self.copy_button, self.export_button, self.remove_button):
            actions.addWidget(b)
        actions.addStretch(1)
        col.addLayout(actions)
        col.addStretch(1)
        f.addLayout(col, 1)
        self.qr = QLabel()
        self.qr.setFixedSize(220, 220)
        self.qr.setScaledContents(True)
        f.addWidget(self.qr, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.full)
        layout.addStretch(1)

        self.create_button.clicked.connect(self.create_wallet)
        self.import_key_button.clicked.connect(self.import_key)
        self.import_phrase_button.clicked.connect(self.import_phrase)
        self.copy_button.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.address.text()))
        self.export_button.clicked.connect(self.export_key)
        self.remove_button.clicked.connect(self.remove_wallet)
        self.last_dialog: QDialog | None = None
        self.empty.hide()
        self.full.hide()
        self._loaded = False

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if not self._loaded:
            self._loaded = True
            self.refresh()

    # ------------------------------------------------------------------ state
    def refresh(self) -> None:
        self.tasks.run(self.core.wallet.info, self._show, self._error)

    def _show(self, info) -> None:
        address, has_key = info.address, info.has_key
        self.empty.setVisible(not address)
        self.full.setVisible(bool(address))
        self._busy(False)
        if not address:
            self.notice.hide()
            return
        self.address.setText(address)
        self.key_state.setText("The key is in your keyring." if has_key else
                               "<span style='color:#d63031'>The key of this address is not in your keyring: "
                               "payouts still arrive, but you cannot sign or export. Import the wallet again "
                               "to fix it.</span>")
        self.export_button.setEnabled(has_key)
        pm = QPixmap()
        pm.loadFromData(info.qr_png)
        self.qr.setPixmap(pm)
        self.qr.setToolTip(address)

    def _busy(self, on: bool) -> None:
        for b in (self.create_button, self.import_key_button, self.import_phrase_button, self.export_button,
                  self.remove_button):
            b.setEnabled(not on)

    def _error(self, exc: BaseException, tb: str) -> None:
        self._busy(False)
        show_error(self, exc, tb)

    # ------------------------------------------------------------------ actions
    def create_wallet(self) -> None:
        self._busy(True)
        self.tasks.run(self.core.wallet.create, self._created, self._error)

    def _created(self, new) -> None:
        dlg = PhraseDialog(new.phrase, self)
        del new
        self.last_dialog = dlg
        dlg.open()
        self.refresh()

    def import_key(self) -> None:
        key, ok = QInputDialog.getText(self, "Import a private key", "Private key (64 hex characters):",
                                       QLineEdit.EchoMode.Password)
        if ok and key.strip():
            self.run_import(self.core.wallet.import_key, key)

    def import_phrase(self) -> None:
        dlg = PhraseImportDialog(self)
        if dlg.exec() == QDialog.DialogCode.Accepted and dlg.text.strip():
            self.run_import(self.core.wallet.import_phrase, dlg.text)

    def run_import(self, fn, secret: str) -> None:
        """Import off the GUI thread (the keyring may be slow or prompt)."""
        self._busy(True)
        self.tasks.run(lambda: fn(secret), lambda _a: self.refresh(), self._error)

    def export_key(self) -> None:
        answer = QMessageBox.warning(
            self, "Show the private key?",
            "Anyone who sees the private key can take your earnings. Show it only to move the wallet to another "
            "app, with nobody watching your screen.", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
            self.confirmed_export()

    def confirmed_export(self) -> None:
        self.tasks.run(self.core.wallet.export_key, self._exported, self._error)

    def _exported(self, key: str) -> None:
        dlg = SecretDialog("Private key", key, "This is the wallet's private key. Anyone who has it can take your "
                           "earnings.", "I have stored it safely", self)
        del key
        self.last_dialog = dlg
        dlg.open()

    def remove_wallet(self) -> None:
        answer = QMessageBox.warning(
            self, "Remove the wallet?",
            "This deletes the wallet's key from this computer. Without a copy of the key or the recovery phrase the "
            "wallet and what it holds are lost. Payouts stop until you set up a wallet again.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
            self.confirmed_remove()

    def confirmed_remove(self) -> None:
        self._busy(True)
        self.tasks.run(self.core.wallet.remove, lambda _a: self.refresh(), self._error)
