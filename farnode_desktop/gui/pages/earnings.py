"""Earnings, read as money: the wallet's balance, what was paid and what is pending in the token's own unit,
when the next payout is expected, the ESTIMATE of the unpaid work (only where the network publishes a rate,
and labelled as one), the payout table, the earnings chart and a CSV export. Before anything can be read it
says why in plain words and what to do (create a wallet, set up the payout chain), and before the first payout
that there is none yet. The data comes from ``earnings.update`` snapshots and the core."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.payout.earnings import MISSING_CHAIN, MISSING_WALLET, EarningsSnapshot
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.errors import show_error
from farnode_desktop.gui.look import fmt_amount, fmt_count, fmt_money
from farnode_desktop.gui.widgets import Notice, StatCard, dim, page_header

INFO_COLOUR = "#2e86de"


def fmt_tokens(v: object, unit: str) -> str:
    """An amount with its unit, or "–" when there is none."""
    return "–" if v is None else fmt_money(v, unit)


def fmt_interval(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.1f} days".replace(".0 days", " days")


def fmt_when(t: float, now: float) -> str:
    """A time of day today, else with its date."""
    same_day = time.localtime(t)[:3] == time.localtime(now)[:3]
    return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", time.localtime(t))


def next_payout_text(snap: EarningsSnapshot, now: float) -> tuple[str, str]:
    """(value, note) for the next payout: expected from the interval between the last payouts."""
    if snap.next_payout_time is None or not snap.payout_interval_s:
        return "–", ("expected once two payouts show how often they come" if snap.payout_count + snap.pending_count
                     else "after the first payouts")
    every = f"payouts came every ~{fmt_interval(snap.payout_interval_s)}"
    if snap.next_payout_time <= now:
        return "due", f"expected at {fmt_when(snap.next_payout_time, now)}; {every}"
    return f"≈ {fmt_when(snap.next_payout_time, now)}", every


def estimate_note(snap: EarningsSnapshot) -> str:
    """What the estimate is of: the tokens served since the last payout, or so far when there was none."""
    tokens = fmt_count(snap.tokens_since_last_payout or 0)
    if snap.last_payout_time is None:
        return f"ESTIMATE for {tokens} tokens served so far (no payout yet)"
    return f"ESTIMATE for {tokens} tokens served since the last payout"


def estimate_tip(snap: EarningsSnapshot) -> str:
    return (f"At the network's published rate of {fmt_amount(snap.rate_per_1k_tokens)} {snap.unit} per 1,000 "
            "tokens served. The payout service decides what is paid.")


def empty_state(snap: EarningsSnapshot | None) -> tuple[str, str, str] | None:
    """(title, text, page to open) saying why there is nothing to show yet and what to do; None when there
    are payouts (or a sync problem, which the page's notice says)."""
    if snap is None:
        return None
    if snap.setup_missing == MISSING_WALLET:
        return ("Create a wallet to be paid",
                "Payouts for the work this computer does go to a wallet of your own, whose key stays in this "
                "computer's keyring. Create or import one on the Wallet page: nothing can be paid until then.",
                "Wallet")
    if snap.setup_missing == MISSING_CHAIN:
        return ("No payout chain is set up",
                "The app does not know where this network pays, so there are no payouts to read yet. Enter the "
                "network's RPC URL, chain id, reward token and payout sender under Settings > Earnings (chain), "
                "or load the network's file in Settings.",
                "Settings")
    if not snap.error and snap.payout_count == 0 and snap.pending_count == 0:
        return ("No payout yet",
                f"The network's payout service pays {snap.unit} to your wallet for the tokens this node serves: "
                "keep it serving. Each payout shows here once the chain has confirmed it.", "")
    return None


class EarningsPage(QWidget):
    open_page = Signal(str)  # the main window shows that page (Wallet, Settings)

    def __init__(self, core: AppCore, bridge: BusBridge, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.core, self.tasks = core, tasks
        self.snapshot: EarningsSnapshot | None = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(18, 14, 18, 14)
        head = QHBoxLayout()
        self.header = page_header("Earnings", "Payouts to your wallet, read from the chain.")
        head.addWidget(self.header, 1)
        self.sync_button = QPushButton("Sync now")
        self.export_button = QPushButton("Export CSV…")
        head.addWidget(self.sync_button, 0, Qt.AlignmentFlag.AlignTop)
        head.addWidget(self.export_button, 0, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(head)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()  # small windows scroll instead of squeezing the chart and the table
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        self.scroll = scroll

        self.notice = Notice("#e0a100")
        layout.addWidget(self.notice)
        self.empty = Notice(INFO_COLOUR)  # why there is nothing yet, and what to do
        self.empty_button = self.empty.add_button("")
        self.empty_button.clicked.connect(lambda: self.open_page.emit(self._empty_page))
        self._empty_page = ""
        layout.addWidget(self.empty)

        self.details = QWidget()
        dl = QVBoxLayout(self.details)
        dl.setContentsMargins(0, 0, 0, 0)
        grid = QGridLayout()
        self.card_balance = StatCard("Wallet balance", "–", "not read yet")
        self.card_paid = StatCard("Paid out", "–", "confirmed payouts")
        self.card_pending = StatCard("Pending", "–", "waiting for confirmations")
        self.card_next = StatCard("Next payout", "–", "")
        self.card_estimate = StatCard("Estimated, not yet paid", "–", "ESTIMATE")
        for i, c in enumerate((self.card_balance, self.card_paid, self.card_pending, self.card_next,
                               self.card_estimate)):
            grid.addWidget(c, i // 3, i % 3)
        for column in range(3):
            grid.setColumnStretch(column, 1)
        dl.addLayout(grid)
        self.status = QLabel("")
        dim(self.status)
        self.status.setWordWrap(True)
        dl.addWidget(self.status)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Time", "Amount", "Status", "Transaction"])
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(140)
        dl.addWidget(self.table, 1)
        self.chart = None
        self.chart_slot = QVBoxLayout()
        dl.addLayout(self.chart_slot, 2)
        layout.addWidget(self.details, 1)
        layout.addStretch(0)  # takes the space while the details are hidden (the notices stay their size)
        self.sync_button.clicked.connect(self.sync_now)
        self.export_button.clicked.connect(self.export_csv)
        bridge.earnings.connect(self.set_snapshot)
        self.last_export: tuple[Path, int] | None = None

    def attach_chart(self) -> None:
        if self.chart is None:
            from farnode_desktop.gui.charts import EarningsChart

            self.chart = EarningsChart(self.core.store, runner=self.tasks)
            self.chart.setMinimumHeight(320)
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

    def set_snapshot(self, snap: EarningsSnapshot) -> None:
        self.snapshot = snap
        unit, now = snap.unit, time.time()
        empty = empty_state(snap)
        if empty is not None:
            title, text, page = empty
            self.empty.show_message(title, text)
            self._empty_page = page
            self.empty_button.setText(f"Open {page}")
            self.empty_button.setVisible(bool(page))
        else:
            self.empty.hide()
        self.details.setVisible(not snap.setup_missing)  # nothing to read: no cards of dashes, no empty table
        self.export_button.setEnabled(not snap.setup_missing)
        self.header.findChild(QLabel, "subtitle").setText(
            f"Payouts of {unit} to your wallet, read from the chain." if snap.symbol else
            "Payouts to your wallet, read from the chain.")
        self.card_balance.set(fmt_tokens(snap.balance, unit),
                              "in the wallet at the last sync" if snap.balance is not None else "not read yet")
        self.card_paid.set(fmt_money(snap.paid_total, unit),
                           f"{snap.payout_count} confirmed payout{'s' * (snap.payout_count != 1)}")
        self.card_pending.set(fmt_money(snap.pending_total, unit),
                              f"{snap.pending_count} waiting for confirmations")
        self.card_next.set(*next_payout_text(snap, now))
        if snap.rate_per_1k_tokens > 0 and snap.estimated_unpaid is not None:
            self.card_estimate.set("≈ " + fmt_money(snap.estimated_unpaid, unit), estimate_note(snap))
            self.card_estimate.setToolTip(estimate_tip(snap))
            self.card_estimate.show()
        else:  # the network publishes no rate: there is nothing to estimate from
            self.card_estimate.hide()
        if snap.error and not snap.setup_missing:
            title = "Earnings data is out of date" if snap.stale else "Earnings are not set up"
            since = (f" (since {time.strftime('%Y-%m-%d %H:%M', time.localtime(snap.stale_since))})"
                     if snap.stale and snap.stale_since else "")
            self.notice.show_message(title + since, snap.error)
        else:
            self.notice.hide()
        self.status.setText(f"Synced to block {snap.last_synced_block:,} (chain head {snap.head_block:,})."
                            if snap.head_block else "")
        if not snap.setup_missing:
            self.tasks.run(self.core.earnings.payouts, self._fill_table, lambda e, tb: None)

    def _fill_table(self, payouts: list) -> None:
        unit = self.snapshot.unit if self.snapshot is not None else "reward tokens"
        self.table.setRowCount(len(payouts))
        for row, p in enumerate(reversed(payouts)):
            cells = (time.strftime("%Y-%m-%d %H:%M", time.localtime(p.time)), fmt_money(p.amount, unit),
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
