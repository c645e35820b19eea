"""Earnings: balance, paid and pending payouts, the unpaid ESTIMATE (labelled as one), the payout table,
the earnings chart and a CSV export. The data comes from ``earnings.update`` snapshots and the core."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from farnode_desktop.core.app_core import AppCore
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.errors import show_error
from farnode_desktop.gui.widgets import Notice, StatCard, dim, page_header


def fmt_tokens(v: Decimal | float | None) -> str:
    if v is None:
        return "–"
    return f"{Decimal(v):,.4f}"


class EarningsPage(QWidget):
    def __init__(self, core: AppCore, bridge: BusBridge, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.core, self.tasks = core, tasks
        self.snapshot = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        head = QHBoxLayout()
        head.addWidget(page_header("Earnings", "Reward-token payouts to your wallet, read from the chain."), 1)
        self.sync_button = QPushButton("Sync now")
        self.export_button = QPushButton("Export CSV…")
        head.addWidget(self.sync_button, 0, Qt.AlignmentFlag.AlignTop)
        head.addWidget(self.export_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(head)
        self.notice = Notice("#e0a100")
        layout.addWidget(self.notice)
        grid = QGridLayout()
        self.card_balance = StatCard("Wallet balance", "–", "at the last sync")
        self.card_paid = StatCard("Paid out", "–", "confirmed payouts")
        self.card_pending = StatCard("Pending", "–", "waiting for confirmations")
        self.card_estimate = StatCard("Estimated, not yet paid", "–",
                                      "an ESTIMATE from the tokens served since the last payout")
        for i, c in enumerate((self.card_balance, self.card_paid, self.card_pending, self.card_estimate)):
            grid.addWidget(c, 0, i)
        layout.addLayout(grid)
        self.status = QLabel("")
        dim(self.status)
        layout.addWidget(self.status)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Time", "Amount", "Status", "Transaction"])
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(120)
        layout.addWidget(self.table, 1)
        self.chart = None
        self.chart_slot = QVBoxLayout()
        layout.addLayout(self.chart_slot, 2)
        self.sync_button.clicked.connect(self.sync_now)
        self.export_button.clicked.connect(self.export_csv)
        bridge.earnings.connect(self.set_snapshot)
        self.last_export: tuple[Path, int] | None = None

    def attach_chart(self) -> None:
        if self.chart is None:
            from farnode_desktop.gui.charts import EarningsChart

            self.chart = EarningsChart(self.core.store)
            self.chart.setMinimumHeight(220)
            self.chart_slot.addWidget(self.chart)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        self.attach_chart()
        self.tasks.run(self.core.earnings.snapshot, self.set_snapshot, lambda e, tb: None)

    def sync_now(self) -> None:
        self.sync_button.setEnabled(False)
        self.tasks.run(self.core.earnings.sync_once, self._synced, self._failed)

    def _synced(self, snap) -> None:
        self.sync_button.setEnabled(True)
        self.set_snapshot(snap)

    def _failed(self, exc: BaseException, tb: str) -> None:
        self.sync_button.setEnabled(True)
        show_error(self, exc, tb)

    def set_snapshot(self, snap) -> None:
        self.snapshot = snap
        self.card_balance.set(fmt_tokens(snap.balance))
        self.card_paid.set(fmt_tokens(snap.paid_total), f"{snap.payout_count} confirmed payouts")
        self.card_pending.set(fmt_tokens(snap.pending_total), f"{snap.pending_count} waiting for confirmations")
        tokens = snap.tokens_since_last_payout
        self.card_estimate.set(("≈ " + fmt_tokens(snap.estimated_unpaid)) if snap.estimated_unpaid is not None
                               else "–", "ESTIMATE: " + (f"{tokens:,} tokens served since the last payout"
                                                         if tokens is not None else "no served-token data"))
        if snap.error:
            title = "Earnings data is out of date" if snap.stale else "Earnings are not set up"
            since = (f" (since {time.strftime('%Y-%m-%d %H:%M', time.localtime(snap.stale_since))})"
                     if snap.stale and snap.stale_since else "")
            self.notice.show_message(title + since, snap.error)
        else:
            self.notice.hide()
        self.status.setText(f"Synced to block {snap.last_synced_block:,} (chain head {snap.head_block:,})."
                            if snap.head_block else "")
        self.tasks.run(self.core.earnings.payouts, self._fill_table, lambda e, tb: None)

    def _fill_table(self, payouts: list) -> None:
        self.table.setRowCount(len(payouts))
        for row, p in enumerate(reversed(payouts)):
            cells = (time.strftime("%Y-%m-%d %H:%M", time.localtime(p.time)), fmt_tokens(p.amount),
                     "confirmed" if p.confirmed else "pending", p.tx_hash)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()

    def export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export payouts", str(Path.home() / "farnode-payouts.csv"),
                                              "CSV files (*.csv)")
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> None:
        self.tasks.run(lambda: (path, self.core.earnings.export_csv(path)), self._exported, self._failed)

    def _exported(self, result: tuple[Path, int]) -> None:
        self.last_export = result
        self.status.setText(f"Exported {result[1]} payouts to {result[0]}.")
