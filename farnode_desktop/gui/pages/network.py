"""Network: the models the network serves, how well each block is covered, its servers, and this node.

Read from the network's DHT by the engine-side probe while the page is shown (and while the node serves off
the local swarm); the page only draws the :class:`~farnode_desktop.core.network.view.NetworkView` it gets.
Per model, a coverage chart: blocks on x, servers per block as bars (left axis), the tokens/s they announce
as a line (right axis), this node's blocks' bars green and the least-covered span shaded red.
"""

from __future__ import annotations

import math
import re
import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHeaderView,
    QLabel,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.network.view import ModelView, NetworkView
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.widgets import Notice, dim, page_header

MINE_COLOR = "#27ae60"
LOW_COLOR = "#c0392b"
BAR_COLOR = "#2e86de"
LINE_COLOR = "#e67e22"
COLUMNS = ("Server", "Name", "Blocks", "State", "Version", "Connection", "Announced tok/s", "Cache left")
COLUMN_TIPS = {"Name": "The name the server announces (a wallet address is shown as one)",
               "Announced tok/s": "The throughput capacity the server announces for its span (measured when it "
                                  "started): what the swarm routes by, not what it serves right now",
               "Cache left": "Attention-cache tokens the server has left for new sessions"}
NAME_COLUMN = COLUMNS.index("Name")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def display_name(public_name: str) -> str:
    """A server's announced name as the table shows it: a wallet address (the default name of a node with a
    wallet) as "wallet 0x1234…abcd", anything else as announced."""
    name = public_name.strip()
    if _ADDRESS.match(name):
        return f"wallet {name[:6]}…{name[-4:]}"
    return name or "–"


def block_tick_step(num_blocks: int, max_ticks: int = 16) -> int:
    """A whole-number spacing for a block axis with at most ``max_ticks`` labels (1, 2, 5, 10, 20, ...)."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500):
        if math.ceil(num_blocks / step) <= max_ticks:
            return step
    return 1000


def coverage_chart(model: ModelView):
    """A pyqtgraph plot of one model's coverage (imported here: pyqtgraph takes a while to load)."""
    import pyqtgraph as pg

    n = model.num_blocks
    plot = pg.PlotWidget()
    plot.setMinimumHeight(190)
    plot.setMaximumHeight(260)
    plot.setBackground(None)
    item = plot.getPlotItem()
    item.setMouseEnabled(False, False)
    item.hideButtons()
    item.setLabel("bottom", "block")
    item.setLabel("left", "servers")
    item.showGrid(y=True, alpha=0.25)
    xs = list(range(n))
    start, end = model.least_covered
    if end > start and model.servers_per_block:
        item.addItem(pg.LinearRegionItem((start - 0.5, end - 0.5), movable=False,
                                         brush=QBrush(QColor(192, 57, 43, 35)), pen=pg.mkPen(None)))
    mine = {i for a, b in model.mine for i in range(a, b)}  # this node's blocks: green bars
    brushes = [pg.mkBrush(MINE_COLOR if i in mine else BAR_COLOR) for i in xs]
    bars = pg.BarGraphItem(x=xs, height=list(model.servers_per_block), width=0.7, brushes=brushes)
    item.addItem(bars)
    step = block_tick_step(n)  # blocks are whole: no "0.5" between them
    item.getAxis("bottom").setTickSpacing(major=step, minor=step)
    item.getAxis("left").setTickSpacing(major=max(1, math.ceil(max(model.servers_per_block or (1,)) / 6)),
                                        minor=1)  # servers are whole too
    top = max(model.servers_per_block or (0,))
    item.setYRange(0, max(top, 1) * 1.15, padding=0)
    item.setXRange(-0.6, n - 0.4, padding=0)
    # throughput on a second axis
    view = pg.ViewBox()
    item.showAxis("right")
    item.scene().addItem(view)
    item.getAxis("right").linkToView(view)
    item.getAxis("right").setLabel("tokens/s", color=LINE_COLOR)
    view.setXLink(item)
    line = pg.PlotCurveItem(xs, list(model.throughput_per_block), pen=pg.mkPen(LINE_COLOR, width=2))
    view.addItem(line)
    view.setYRange(0, max(max(model.throughput_per_block or (0,)), 1) * 1.15, padding=0)

    def sync() -> None:
        view.setGeometry(item.getViewBox().sceneBoundingRect())

    item.getViewBox().sigResized.connect(sync)
    sync()
    plot.bars, plot.line, plot.throughput_view = bars, line, view  # for tests and later updates
    return plot


class ModelCard(QFrame):
    def __init__(self, model: ModelView) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.model = model
        layout = QVBoxLayout(self)
        online = [s for s in model.servers if s.online]
        start, end = model.least_covered
        low = min(model.servers_per_block[start:end], default=0)
        whole = ("every block is served" if model.complete else
                 f"<span style='color:{LOW_COLOR}'>blocks {start}–{end - 1} have no server: generation fails</span>")
        title = QLabel(f"<b>{model.name}</b> · {model.num_blocks} blocks · {len(online)} "
                       f"server{'s' * (len(online) != 1)} online · {whole}")
        title.setWordWrap(True)
        layout.addWidget(title)
        note = QLabel(f"Least covered (shaded red): blocks {start}–{end - 1} ({low} server{'s' * (low != 1)}). "
                      + (f"This node serves blocks {', '.join(f'{a}–{b - 1}' for a, b in model.mine)} (green bars)."
                         if model.mine else "This node serves none of its blocks."))
        dim(note)
        note.setWordWrap(True)
        layout.addWidget(note)
        self.chart = coverage_chart(model)
        layout.addWidget(self.chart)
        self.table = QTableWidget(len(model.servers), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for col, name in enumerate(COLUMNS):
            if name in COLUMN_TIPS:
                self.table.horizontalHeaderItem(col).setToolTip(COLUMN_TIPS[name])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NAME_COLUMN, QHeaderView.ResizeMode.Stretch)  # wide windows: the name grows
        # As tall as its rows (and the sideways scroll bar when the columns do not fit): never cut off
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        bold = QFont()
        bold.setBold(True)
        for row, s in enumerate(model.servers):
            a, b = s.span
            relay = "relay" if s.using_relay else "direct" if s.using_relay is False else "?"
            if s.answered is False:
                relay += " (not answering)"
            cells = (f"…{s.peer_id[-10:]}" + (" (this node)" if s.mine else ""), display_name(s.public_name),
                     f"{a}–{b - 1}" if s.blocks else "–", s.state, s.version or "?", relay, f"{s.throughput:,.0f}",
                     "?" if s.cache_tokens_left is None else f"{s.cache_tokens_left:,}")
            for col, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setToolTip(s.public_name if col == NAME_COLUMN and s.public_name else s.peer_id)
                if s.mine:
                    cell.setFont(bold)
                    cell.setForeground(QBrush(QColor(MINE_COLOR)))
                self.table.setItem(row, col, cell)
        layout.addWidget(self.table)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self.fit_table()

    def fit_table(self) -> None:
        """The table's height: its header, every row, and the sideways scroll bar when it shows."""
        t = self.table
        bar = t.horizontalScrollBar()
        extra = bar.sizeHint().height() if t.horizontalHeader().length() > t.viewport().width() else 0
        t.setFixedHeight(t.horizontalHeader().height() + 2 * t.frameWidth() + extra
                         + sum(t.rowHeight(r) for r in range(t.rowCount())))


class NetworkPage(QWidget):
    def __init__(self, core: AppCore, bridge: BusBridge, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.core = core
        self.view: NetworkView | None = None
        self.cards: list[ModelCard] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header("Network", "The models the network serves, how well each block is covered, "
                                                "and where this node stands (read from the network itself)."))
        self.error = Notice("#e0a100")
        layout.addWidget(self.error)
        self.status = QLabel("Reading the network…")
        dim(self.status)
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.host = QWidget()
        self.cards_layout = QVBoxLayout(self.host)
        self.cards_layout.setContentsMargins(0, 0, 0, 0)
        self.cards_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.host)
        layout.addWidget(scroll, 1)
        bridge.network.connect(self.set_view)
        bridge.network_error.connect(self._on_error)
        if core.network_view is not None:
            self.set_view(core.network_view)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        self.core.watch_network(True)

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().hideEvent(event)
        self.core.watch_network(False)

    def _on_error(self, text: str) -> None:
        local_idle = self.core.is_local and not self.core.is_running()  # nothing to read: not a failure
        self.error.show_message("The local demo swarm is not running" if local_idle
                                else "The network could not be read", text)
        if self.view is None:  # not "Reading the network…" under a notice that says it could not be
            self.status.hide()

    def set_view(self, view: NetworkView) -> None:
        self.view = view
        self.error.hide()
        self.status.show()
        for card in self.cards:
            card.setParent(None)
            card.deleteLater()
        self.cards = [ModelCard(m) for m in view.models]
        for i, card in enumerate(self.cards):
            self.cards_layout.insertWidget(i, card)
        when = time.strftime("%H:%M:%S", time.localtime(view.time))
        mine = f"; this node is {', '.join('…' + p[-10:] for p in view.my_peers)}" if view.my_peers else \
            "; this node serves nothing now"
        self.status.setText(f"{len(view.models)} model{'s' * (len(view.models) != 1)} served, read at {when}{mine}."
                            if view.models else f"No model is served on this network right now (read at {when}).")
