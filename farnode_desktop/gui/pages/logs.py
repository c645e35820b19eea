"""Logs: the node's server log live (``node.log`` events) after the tail of its log file; a filter; and a
"Copy diagnostics" button that bundles settings, versions and the last lines with secrets redacted."""

from __future__ import annotations

import collections

from PySide6.QtCore import QTimer
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from farnode_desktop.core.app_core import AppCore
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.errors import show_error
from farnode_desktop.gui.widgets import page_header

MAX_LINES = 5000  # kept in memory: what the filter searches and diagnostics copy
#: Shown at once. A shown line costs the text view about 6.5 kB (3,000 real log lines: +19 MB against +1 MB for
#: the same strings in a list); with demo traffic the server logs ~2,000 lines an hour, so 5,000 shown lines
#: grew the window by ~15 MB an hour for its first 2.5 hours (the soak run). The whole log is in its file.
VIEW_LINES = 1000
FLUSH_MS = 300  # new lines are appended in batches (a chatty server must not cost a repaint per line)


class LogsPage(QWidget):
    def __init__(self, core: AppCore, bridge: BusBridge, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.core, self.tasks = core, tasks
        self.lines: collections.deque[str] = collections.deque(maxlen=MAX_LINES)
        self._pending: list[str] = []
        # While the page is not shown, new lines are kept (for the filter and diagnostics) but not given to the
        # text view: a view lays out every line it gets, shown or not (heaptrack: ~1.3 kB of layout per line,
        # the window's largest growth once the chart leak was gone), and the app mostly runs with the window
        # on another page or hidden in the tray. The view is brought up to date when the page is shown.
        self._stale = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header("Logs", f"The node's server log: its last {VIEW_LINES:,} lines here, all of "
                                             f"it in {core.log_path()}."))
        bar = QHBoxLayout()
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter: show only lines containing…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._rerender)
        self.copy_button = QPushButton("Copy diagnostics")
        self.copy_button.setToolTip("Copies versions, settings and the last log lines for a bug report. "
                                    "Never includes your wallet key or recovery phrase.")
        self.copy_button.clicked.connect(self.copy_diagnostics)
        bar.addWidget(self.filter, 1)
        bar.addWidget(self.copy_button)
        layout.addLayout(bar)
        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(VIEW_LINES)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.view.setPlaceholderText("Nothing logged yet: the node's server writes here once it starts "
                                     "(Start contributing on the Dashboard).")
        layout.addWidget(self.view, 1)
        self.status = QLabel("")
        layout.addWidget(self.status)
        bridge.log_line.connect(self._on_line)
        self._timer = QTimer(self)  # armed by the first pending line: an idle log costs no wake-ups
        self._timer.setSingleShot(True)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self._flush)
        self.last_diagnostics = ""
        tasks.run(core.log_tail, self._loaded_tail, lambda e, tb: self.status.setText(f"Log file: {e}"))

    def _loaded_tail(self, old: list[str]) -> None:
        self.lines.extendleft(reversed(old[-(MAX_LINES - len(self.lines)):]) if old else [])
        if self.isVisible():
            self._rerender()
        else:
            self._stale = True

    def _on_line(self, line: str) -> None:
        self._pending.append(line)
        if not self._timer.isActive():
            self._timer.start()

    def _matches(self, line: str) -> bool:
        f = self.filter.text().strip().lower()
        return not f or f in line.lower()

    def shutdown(self) -> None:
        """Show what is pending now; no more lines come (the bridge is closed)."""
        self._timer.stop()
        self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        new, self._pending = self._pending, []
        self.lines.extend(new)
        if self._stale or not self.isVisible():
            self._stale = True
            return
        shown = [ln for ln in new if self._matches(ln)][-VIEW_LINES:]
        if shown:
            bar = self.view.verticalScrollBar()
            at_end = bar.value() >= bar.maximum() - 2
            self.view.appendPlainText("\n".join(shown))
            if at_end:
                bar.setValue(bar.maximum())

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if self._stale:
            self._rerender()

    def _rerender(self) -> None:
        self._stale = False
        matching = [ln for ln in self.lines if self._matches(ln)]
        self.view.setPlainText("\n".join(matching[-VIEW_LINES:]))
        self.view.verticalScrollBar().setValue(self.view.verticalScrollBar().maximum())

    def visible_text(self) -> str:
        """What the view shows (brought up to date first if lines came while the page was not shown)."""
        if self._stale:
            self._rerender()
        return self.view.toPlainText()

    def copy_diagnostics(self) -> None:
        self.copy_button.setEnabled(False)
        lines = list(self.lines)[-300:]
        self.tasks.run(lambda: self.core.diagnostics(lines if lines else None), self._copied, self._failed)

    def _copied(self, text: str) -> None:
        self.copy_button.setEnabled(True)
        self.last_diagnostics = text
        QGuiApplication.clipboard().setText(text)
        self.status.setText(f"Diagnostics copied to the clipboard ({len(text):,} characters, secrets removed).")

    def _failed(self, exc: BaseException, tb: str) -> None:
        self.copy_button.setEnabled(True)
        show_error(self, exc, tb)
