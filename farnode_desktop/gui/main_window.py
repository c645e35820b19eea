"""The main window: a sidebar of pages and the stack that shows them."""

from __future__ import annotations

import linecache
from collections.abc import Callable

from PySide6.QtCore import QEvent, QSize, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QStackedWidget,
    QWidget,
)

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.look import state_icon
from farnode_desktop.gui.pages.dashboard import DashboardPage
from farnode_desktop.gui.pages.gpus import GpusPage
from farnode_desktop.gui.pages.logs import LogsPage
from farnode_desktop.gui.pages.network import NetworkPage
from farnode_desktop.gui.pages.settings_page import SettingsPage

PageFactory = Callable[[AppCore, BusBridge, TaskRunner], QWidget]


class MainWindow(QMainWindow):
    close_requested = Signal()  # the user closed the window (the app decides: tray or quit)
    first_painted = Signal()

    def __init__(self, core: AppCore, bridge: BusBridge, tasks: TaskRunner,
                 extra_pages: list[tuple[str, PageFactory]] | None = None) -> None:
        super().__init__()
        self.core = core
        self.setWindowIcon(state_icon("online"))
        self.sidebar = QListWidget()
        self.sidebar.setFixedWidth(150)
        self.sidebar.setIconSize(QSize(18, 18))
        self.sidebar.setStyleSheet("QListWidget { border: none; font-size: 11pt; outline: 0; background: palette(base); } "
                                   "QListWidget::item { padding: 8px 10px; }")
        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {}
        self.dashboard = DashboardPage(core, bridge, tasks)
        self.add_page("Dashboard", self.dashboard)
        self.add_page("GPUs", GpusPage(core, bridge, tasks))
        self.network_page = NetworkPage(core, bridge, tasks)
        self.add_page("Network", self.network_page)
        for name, factory in extra_pages or []:
            self.add_page(name, factory(core, bridge, tasks))
        self.settings_page = SettingsPage(core, bridge, tasks)
        self.add_page("Settings", self.settings_page)
        self.logs = LogsPage(core, bridge, tasks)
        self.add_page("Logs", self.logs)
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.sidebar.setCurrentRow(0)
        self.dashboard.open_logs.connect(lambda: self.show_page("Logs"))
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.sidebar)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.resize(1060, 720)
        self.setMinimumSize(760, 520)  # 800x600 screens and small windows
        self._painted = False
        QApplication.instance().installEventFilter(self)
        self._stopping = False
        bridge.state.connect(self.set_state)
        self.set_state(core.state)

    def add_page(self, name: str, page: QWidget, index: int | None = None) -> None:
        self.pages[name] = page
        opener = getattr(page, "open_page", None)  # a page's "Open Wallet"-style buttons
        if opener is not None:
            opener.connect(self.show_page)
        item = QListWidgetItem(name)
        if index is None:
            self.sidebar.addItem(item)
            self.stack.addWidget(page)
        else:
            self.sidebar.insertItem(index, item)
            self.stack.insertWidget(index, page)

    def show_page(self, name: str) -> None:
        self.sidebar.setCurrentRow(self.stack.indexOf(self.pages[name]))

    def shutdown(self) -> None:
        """The core is closed: pages stop their periodic work (the window may outlive it, hidden)."""
        for page in self.pages.values():
            stop = getattr(page, "shutdown", None)
            if stop is not None:
                stop()

    def set_stopping(self) -> None:
        """Quit: the core closes next, its metrics store with it; the charts stop asking it first."""
        self._stopping = True
        for page in self.pages.values():
            chart = getattr(page, "chart", None)
            if chart is not None:
                chart.shutdown()
        self.dashboard.set_stopping(True)
        self.setWindowTitle("FarNode: Stopping…")

    def set_state(self, state: C.NodeState) -> None:
        if self._stopping:
            return
        self.setWindowTitle(f"FarNode: {C.state_info(state.state).words}")

    def bring_forward(self) -> None:
        self.showNormal()
        self.raise_()
        self.activateWindow()

    def eventFilter(self, obj, e: QEvent) -> bool:  # noqa: N802 (Qt API)
        """Until the first paint: notice the first Paint event of any widget of this window."""
        if not self._painted and e.type() == QEvent.Type.Paint and isinstance(obj, QWidget) \
                and obj.window() is self:
            self._painted = True
            QApplication.instance().removeEventFilter(self)
            self.first_painted.emit()
            QTimer.singleShot(0, self.attach_charts)
        return False

    def attach_charts(self) -> None:
        """Charts come after the first paint (their library takes most of the start-up time)."""
        self.dashboard.attach_chart()
        for page in self.pages.values():
            attach = getattr(page, "attach_chart", None)
            if attach is not None and page is not self.dashboard:
                attach()
        # Start-up's imports are done. PySide6's __feature__ switch reads the source of every module imported after
        # it (inspect.getsource, to see whether the module uses PySide6), and linecache keeps what it read: ~50,000
        # lines of typing, inspect, pydoc, numpy, pyqtgraph... (~3 MB) for the app's life. Nothing needs them: a
        # traceback reads the lines it shows again.
        linecache.clearcache()

    def changeEvent(self, e: QEvent) -> None:  # noqa: N802 (Qt API)
        """Light/dark switch at run time: style sheets resolve palette() once, so re-apply them."""
        if e.type() == QEvent.Type.PaletteChange:
            self.sidebar.setStyleSheet(self.sidebar.styleSheet())
        super().changeEvent(e)

    def closeEvent(self, e: QCloseEvent) -> None:  # noqa: N802 (Qt API)
        e.ignore()
        self.close_requested.emit()
