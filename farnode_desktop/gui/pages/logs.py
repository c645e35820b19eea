"""Logs: the node's server log live (``node.log`` events) after the tail of its log file; a filter that searches
the log files; and a "Copy diagnostics" button that bundles settings, versions and the last lines with secrets
redacted."""

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

#: Shown at once, and all the page keeps in memory (the last lines, for the view and diagnostics): the filter
#: searches the log files themselves, which hold all of it (the page used to keep 5,000 lines for the filter,
#: ~0.35 MB more each hour of the window's first two, with demo traffic). A shown line costs the text view about
#: 6.5 kB (3,000 real log lines: +19 MB against +1 MB for the same strings in a list); with demo traffic the
#: server logs ~2,000 lines an hour, so 5,000 shown lines grew the window by ~15 MB an hour for its first 2.5
#: hours (the soak run).
VIEW_LINES = 1000
FLUSH_MS = 300  # new lines are appended in batches (a chatty server must not cost a repaint per line)
SEARCH_MS = 250  # the filter searches the files once typing pauses this long


class LogsPage(QWidget):
    def __init__(self, core: AppCore, bridge: BusBridge, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.core, self.tasks = core, tasks
        self.lines: collections.deque[str] = collections.deque(maxlen=VIEW_LINES)
        self._pending: list[str] = []
        self._search_generation = 0
        self._since_search: list[str] | None = None  # the lines that came while a search of the files ran
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
        self.filter.setPlaceholderText("Filter: show only lines containing… (searches the whole log)")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter_changed)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_MS)
        self._search_timer.timeout.connect(self._rerender)
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
        tasks.run(lambda: core.log_tail(VIEW_LINES), self._loaded_tail,
                  lambda e, tb: self.status.setText(f"Log file: {e}"))

    def _loaded_tail(self, old: list[str]) -> None:
        room = VIEW_LINES - len(self.lines)
        self.lines.extendleft(reversed(old[-room:]) if old and room else [])
        if self.isVisible():
            self._rerender()
        else:
            self._stale = True

    def _on_line(self, line: str) -> None:
        self._pending.append(line)
        if not self._timer.isActive():
            self._timer.start()

    def _needle(self) -> str:
        return self.filter.text().strip().lower()

    @property
    def searching(self) -> bool:
        """A search of the log files for the filter is under way (or waits for typing to pause)."""
        return self._since_search is not None or self._search_timer.isActive()

    def _filter_changed(self, _text: str) -> None:
        self._search_generation += 1  # a search still running is for the old text: its answer is dropped
        self._since_search = None
        if self._needle():
            self._search_timer.start()  # (restarted at each key)
        else:
            self._search_timer.stop()
            self._rerender()

    def shutdown(self) -> None:
        """Show what is pending now; no more lines come (the bridge is closed)."""
        self._timer.stop()
        self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        new, self._pending = self._pending, []
        self.lines.extend(new)
        if self._since_search is not None:  # shown with the search's answer (those it did not find already)
            self._since_search.extend(new)
            return
        if self._stale or not self.isVisible():
            self._stale = True
            return
        needle = self._needle()
        shown = [ln for ln in new if not needle or needle in ln.lower()][-VIEW_LINES:]
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
        needle = self._needle()
        if not needle:
            self.status.setText("")
            self._show(list(self.lines))
            return
        # The filter: the log files hold every line (the page keeps only the last ones), searched off the GUI
        # thread; lines that come meanwhile are held and added after the answer.
        self._search_timer.stop()
        self._search_generation += 1
        generation, self._since_search = self._search_generation, []
        self.status.setText(f"Searching the log for “{self.filter.text().strip()}”…")
        self.tasks.run(lambda: self.core.log_search(needle, VIEW_LINES),
                       lambda found: self._found(generation, needle, found),
                       lambda e, tb: self._search_failed(generation, e))

    def _found(self, generation: int, needle: str, found: list[str]) -> None:
        if generation != self._search_generation:
            return
        since, self._since_search = self._since_search or [], None
        later = [ln for ln in since if needle in ln.lower()]
        # A line is written to the file before it is published: the last of those found may be among the later.
        k = min(len(found), len(later))
        while k and found[-k:] != later[:k]:
            k -= 1
        matching = (found + later[k:])[-VIEW_LINES:]
        self.status.setText(f"{len(matching):,} matching line{'s' if len(matching) != 1 else ''}"
                            + (f" (the last {VIEW_LINES:,})" if len(matching) >= VIEW_LINES else "")
                            + f" in {self.core.log_path().name} and the files it rotated to.")
        self._show(matching)

    def _search_failed(self, generation: int, exc: BaseException) -> None:
        if generation != self._search_generation:
            return
        self._since_search = None
        self.status.setText(f"The log file could not be searched: {exc}")

    def _show(self, lines: list[str]) -> None:
        self.view.setPlainText("\n".join(lines[-VIEW_LINES:]))
        self.view.verticalScrollBar().setValue(self.view.verticalScrollBar().maximum())

    def visible_text(self) -> str:
        """What the view shows (brought up to date first if lines came while the page was not shown; with a
        filter, the answer of its search may still be on its way: see :attr:`searching`)."""
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
