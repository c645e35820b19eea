"""Network: the models the network serves, how well each block is covered, its servers, and this node.

Read from the network's DHT by the engine-side probe while the page is shown (and while the node serves off
the local swarm); the page only draws the :class:`~farnode_desktop.core.network.view.NetworkView` it gets.
Per model, a coverage chart: blocks on x, servers per block as bars (left axis), the tokens/s they announce
as a line (right axis), this node's span shaded green and the least-covered span red.
"""

from __future__ import annotations

import time

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
COLUMNS = ("Server", "Name", "Blocks", "State", "Version", "Connection", "Tokens/s", "Cache left")


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
    for a, b in model.mine:  # this node's span(s)
        item.addItem(pg.LinearRegionItem((a - 0.5, b - 0.5), movable=False, brush=QBrush(QColor(39, 174, 96, 60)),
                                         pen=pg.mkPen(MINE_COLOR)))
    if end > start and model.servers_per_block:
        item.addItem(pg.LinearRegionItem((start - 0.5, end - 0.5), movable=False,
                                         brush=QBrush(QColor(192, 57, 43, 35)), pen=pg.mkPen(None)))
    bars = pg.BarGraphItem(x=xs, height=list(model.servers_per_block), width=0.7, brush=BAR_COLOR)
    item.addItem(bars)
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
        note = QLabel(f"Least covered: blocks {start}–{end - 1} ({low} server{'s' * (low != 1)}). "
                      + (f"This node serves blocks {', '.join(f'{a}–{b - 1}' for a, b in model.mine)} (green)."
                         if model.mine else "This node serves none of its blocks."))
        dim(note)
        note.setWordWrap(True)
        layout.addWidget(note)
        self.chart = coverage_chart(model)
        layout.addWidget(self.chart)
        self.table = QTableWidget(len(model.servers), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        bold = QFont()
        bold.setBold(True)
        for row, s in enumerate(model.servers):
            a, b = s.span
            relay = "relay" if s.using_relay else "direct" if s.using_relay is False else "?"
            if s.answered is False:
                relay += " (not answering)"
            cells = (f"…{s.peer_id[-10:]}" + (" (this node)" if s.mine else ""), s.public_name or "–",
                     f"{a}–{b - 1}" if s.blocks else "–", s.state, s.version or "?", relay, f"{s.throughput:,.0f}",
                     "?" if s.cache_tokens_left is None else f"{s.cache_tokens_left:,}")
            for col, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setToolTip(s.peer_id)
                if s.mine:
                    cell.setFont(bold)
                    cell.setForeground(QBrush(QColor(MINE_COLOR)))
                self.table.setItem(row, col, cell)
        self.table.setFixedHeight(self.table.horizontalHeader().height() + 4
                                  + sum(self.table.rowHeight(r) for r in range(len(model.servers))))
        layout.addWidget(self.table)


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
        self.error.show_message("The network could not be read", text)

    def set_view(self, view: NetworkView) -> None:
        self.view = view
        self.error.hide()
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
