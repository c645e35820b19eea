"""Showing errors: a FarNodeError as its title + message, anything else as a report the user can copy."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.report import redact

log = logging.getLogger(__name__)

PROBLEM_COLOUR = "#d63031"  # a problem said beside what it is about (a field, a file), not in a dialog

#: Dialogs currently open (kept referenced while non-modal; tests read them).
OPEN_DIALOGS: list[QDialog] = []


class ReportDialog(QDialog):
    """An unexpected error: what to do, the traceback, and a button that copies it."""

    def __init__(self, exc: BaseException, tb: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("FarNode: unexpected error")
        self.text = redact(tb or repr(exc))
        layout = QVBoxLayout(self)
        msg = QLabel("Something went wrong that FarNode did not expect. Your settings and wallet are safe. "
                     "Copy the report below and send it with a short note of what you were doing.")
        msg.setWordWrap(True)
        layout.addWidget(msg)
        self.view = QPlainTextEdit(self.text)
        self.view.setReadOnly(True)
        self.view.setMinimumSize(560, 220)
        layout.addWidget(self.view, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton("Copy report")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self.copy)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def copy(self) -> None:
        QApplication.clipboard().setText(self.text)
        self.copy_button.setText("Copied")


def show_error(parent: QWidget | None, exc: BaseException, tb: str = "") -> QDialog:
    """Show ``exc`` without blocking the event loop; returns the dialog (already open)."""
    if isinstance(exc, FarNodeError):
        box = QMessageBox(QMessageBox.Icon.Warning, exc.title, exc.message, QMessageBox.StandardButton.Ok, parent)
        dialog: QDialog = box
    else:
        log.error("unexpected error:\n%s", tb or repr(exc))
        dialog = ReportDialog(exc, tb, parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    OPEN_DIALOGS.append(dialog)
    dialog.finished.connect(lambda _r, d=dialog: OPEN_DIALOGS.remove(d) if d in OPEN_DIALOGS else None)
    dialog.open()
    return dialog

