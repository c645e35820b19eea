"""Dashboard: the Start/Stop toggle, the node's state in plain words, live numbers and the tokens/s chart."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.metrics.today import TodaySummary
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.look import fmt_amount, fmt_count, fmt_money, fmt_rate
from farnode_desktop.gui.pages.earnings import empty_state, next_payout_text
from farnode_desktop.gui.widgets import Notice, StatCard, dim

TODAY_REFRESH_MS = 5000


class DashboardPage(QWidget):
    """``toggle_requested`` is emitted by the big button; the main window decides start or stop."""

    toggle_requested = Signal()
    today_updated = Signal(object)  # TodaySummary
    open_logs = Signal()

    def __init__(self, core: AppCore, bridge: BusBridge, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.core, self.tasks = core, tasks
        self._state = core.state
        self._stats: C.NodeStats | None = None
        self._stopping = False

        top = QHBoxLayout()
        col = QVBoxLayout()
        self.state_label = QLabel()
        f = self.state_label.font()
        f.setPointSizeF(f.pointSizeF() * 1.7)
        f.setBold(True)
        self.state_label.setFont(f)
        self.detail_label = QLabel()
        self.detail_label.setWordWrap(True)
        dim(self.detail_label)
        col.addWidget(self.state_label)
        col.addWidget(self.detail_label)
        top.addLayout(col, 1)
        self.toggle = QPushButton()
        self.toggle.setMinimumSize(220, 56)
        tf = self.toggle.font()
        tf.setPointSizeF(tf.pointSizeF() * 1.25)
        tf.setBold(True)
        self.toggle.setFont(tf)
        self.toggle.setCursor(Qt.CursorShape.PointingHandCursor)
        self.toggle.clicked.connect(self.toggle_requested)
        # Paused (by you or a policy): resume from here, as from the tray (other pause reasons still apply).
        self.resume = QPushButton("Resume now")
        self.resume.setMinimumSize(140, 56)
        self.resume.setFont(tf)
        self.resume.setStyleSheet(f"QPushButton {{ background: {C.KIND_COLOURS[C.ICON_PAUSED]}; color: white; "
                                  "border-radius: 8px; padding: 8px 18px; }")
        self.resume.setCursor(Qt.CursorShape.PointingHandCursor)
        self.resume.clicked.connect(self.core.resume_now)
        self.resume.hide()
        top.addWidget(self.resume, 0, Qt.AlignmentFlag.AlignVCenter)
        top.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignVCenter)

        # Off the local swarm: do other peers reach this node? (direct / through a relay / unreachable + fix)
        self.reach = QLabel()
        self.reach.setWordWrap(True)
        self.reach.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reach.hide()
        self.error = Notice()
        self.error_logs = self.error.add_button("Open logs")
        self.error_logs.clicked.connect(self.open_logs)
        self.error_dismiss = self.error.add_button("Dismiss")
        self.error_dismiss.clicked.connect(self.error.hide)

        grid = QGridLayout()
        grid.setSpacing(8)
        self.card_rate = StatCard("Tokens per second", "0.0", "served right now")
        self.card_blocks = StatCard("Blocks served", "–", "")
        self.card_peer = StatCard("Peer", "–", "")
        self.card_tokens = StatCard("Tokens served today", "0", "")
        self.card_requests = StatCard("Requests today", "0", "")
        self.card_earnings = StatCard("Earnings", "–", "reading…")
        for i, card in enumerate((self.card_rate, self.card_blocks, self.card_peer, self.card_tokens,
                                  self.card_requests, self.card_earnings)):
            grid.addWidget(card, i // 3, i % 3)
        for column in range(3):
            grid.setColumnStretch(column, 1)
        self.copy_peer = QPushButton("Copy peer id")
        self.copy_peer.setToolTip("Copy this node's whole peer id to the clipboard")
        self.copy_peer.clicked.connect(self._copy_peer)
        self.card_peer.add_action(self.copy_peer)
        self.copy_peer.setEnabled(False)
        self._copied = QTimer(self)  # "Copied" for a moment, then the button's own words again
        self._copied.setSingleShot(True)
        self._copied.setInterval(1500)
        self._copied.timeout.connect(lambda: self.copy_peer.setText("Copy peer id"))

        # The chart (pyqtgraph: ~0.7 s to import) is built right after the window's first paint.
        self.chart = None
        self.chart_slot = QVBoxLayout()
        self._chart_placeholder = QLabel("Loading the chart…")
        self._chart_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._chart_placeholder.setMinimumHeight(240)
        self.chart_slot.addWidget(self._chart_placeholder)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addLayout(top)
        layout.addWidget(self.reach)
        layout.addWidget(self.error)
        layout.addLayout(grid)
        layout.addLayout(self.chart_slot, 1)

        bridge.state.connect(self.set_state)
        bridge.stats.connect(self.set_stats)
        bridge.progress.connect(self._on_progress)
        bridge.reachability.connect(self.set_reachability)
        bridge.earnings.connect(self.set_earnings)
        self.last_earnings = None
        self._today_timer = QTimer(self)
        self._today_timer.setInterval(TODAY_REFRESH_MS)
        self._today_timer.timeout.connect(self.refresh_today)
        self._today_timer.timeout.connect(self.refresh_earnings)  # a new wallet or chain needs no sync to show
        self._today_timer.start()
        self._today_busy = False
        self._today_again = False
        self.set_state(core.state)
        QTimer.singleShot(0, self.refresh_today)
        QTimer.singleShot(0, self.refresh_earnings)

    def shutdown(self) -> None:
        """Stop reading today's totals: the core (its metrics store) is closed."""
        self._today_timer.stop()

    def attach_chart(self) -> None:
        """Build the live tokens/s chart (imports pyqtgraph). Its refresh follows its range: one refresh
        per pixel of time at most (1 h over ~800 px: every ~4.5 s), never faster than 1 Hz."""
        if self.chart is not None:
            return
        from farnode_desktop.gui.charts import ThroughputChart

        class ServedChart(ThroughputChart):
            """Tokens served per second; the announced capacity (often 100x larger, which would flatten
            the served lines) is shown as a number on the tokens/s card instead."""

            title = "Tokens served per second"

            def lines(self):
                return [ln for ln in super().lines() if ln.series != "reported_throughput"]

        self.chart = ServedChart(self.core.store, runner=self.tasks)
        self.chart.setMinimumHeight(240)
        self.chart_slot.replaceWidget(self._chart_placeholder, self.chart)
        self._chart_placeholder.deleteLater()
        self.chart.range_box.currentTextChanged.connect(lambda _t: self._tune_chart_refresh())
        self._tune_chart_refresh()
        if self.isVisible():
            self.chart.show()

    def _tune_chart_refresh(self) -> None:
        if self.chart is None:
            return
        span = self.chart.range_seconds or 30 * 86400.0
        width = max(200, self.chart.plot_widget.width())
        self.chart.timer.setInterval(int(min(60_000, max(1000, 1000 * span / width))))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._tune_chart_refresh()

    # ------------------------------------------------------------------ state
    def set_stopping(self, on: bool) -> None:
        """Quit in progress: the toggle is disabled and the state says Stopping."""
        self._stopping = on
        self.set_state(self._state)

    def set_state(self, state: C.NodeState) -> None:
        self._state = state
        lk = C.state_info(C.STOPPING if self._stopping else state.state)
        self.state_label.setText(f"<span style='color:{lk.colour}'>●</span> {lk.words}")
        if state.state in (C.FAILED, C.HELD):
            detail = ""
        elif state.state == C.PAUSED:
            detail = f"{state.message or 'Paused'}. The node re-joins by itself when the reason ends."
        elif state.state == C.STOPPED:
            detail = state.message or ("Press Start to run a node on the local demo swarm (a private FarMesh "
                                       "network on this computer)." if self.core.is_local else
                                       "Press Start to lend this computer to the FarMesh network.")
        else:
            detail = state.message
        self.detail_label.setText(detail)
        running = C.state_info(state.state).running
        self.toggle.setText("Stop contributing" if running or state.state == C.STOPPING else "Start contributing")
        self.toggle.setEnabled(not self._stopping and state.state != C.STOPPING)
        color = "#c0392b" if running else "#27ae60"
        self.toggle.setStyleSheet(f"QPushButton {{ background: {color}; color: white; border-radius: 8px; "
                                  "padding: 8px 18px; } QPushButton:disabled { background: #95a5a6; }")
        self.resume.setVisible(state.state == C.PAUSED and not self._stopping)
        if not self._serving(state.state):
            self._show_idle(state.state)
        if state.state in (C.FAILED, C.HELD):
            self.error.show_message(C.state_info(state.state).words, state.message or "The node stopped.")
        elif state.state in (C.ONLINE, C.STARTING):
            self.error.hide()

    def set_reachability(self, statuses: dict) -> None:
        """node_id -> ReachabilityStatus (empty: not serving, or on the local swarm)."""
        if not statuses:
            self.reach.hide()
            return
        colors = {"direct": "#27ae60", "relay": "#e0a100", "unreachable": "#d63031", "unknown": "#7f8c8d"}
        lines = []
        for node_id, st in sorted(statuses.items()):
            who = "" if len(statuses) == 1 else f"{node_id}: "
            lines.append(f"<span style='color:{colors.get(st.state, '#7f8c8d')}'>●</span> <b>{who}"
                         f"{st.words.capitalize()}</b> — {st.detail}." + (f"<br>{st.fix}" if st.fix else ""))
        self.reach.setText("<br>".join(lines))
        self.reach.show()

    def _on_progress(self, p: C.EngineProgress) -> None:
        if self._state.state == C.PROVISIONING and not p.done:
            self.detail_label.setText(f"Engine set-up {p.percent:.0f}%: {p.step}")

    def _serving(self, state: str) -> bool:
        """A server is (being) brought up or serves: its figures mean something. Paused, stopping, stopped,
        failed or restarting, no server runs, whatever its last stats said."""
        return state in C.ACTIVE_STATES and not self._stopping

    def _show_idle(self, state: str) -> None:
        """The figures of a node without a server: nothing served, no blocks, no peer."""
        why = C.state_info(C.STOPPING if self._stopping else state).status.lower()
        self.card_rate.set("–", f"{why}: nothing served")
        self.card_blocks.set("–", f"{why}: no blocks")
        self.card_peer.set("–", "not on the network")
        self.card_peer.setToolTip("")
        self.copy_peer.setEnabled(False)

    def set_stats(self, s: C.NodeStats) -> None:
        if not (self._serving(self._state.state) and self._serving(s.state)):
            self._stats = None
            self._show_idle(self._state.state if not self._serving(self._state.state) else s.state)
            return
        self._stats = s
        rate = s.inference_tokens_per_s + s.forward_tokens_per_s
        # The announced figure is the server's measured capacity (what the swarm routes by), not what it
        # serves: often 100x larger. Say which is which.
        self.card_rate.set(fmt_rate(rate), f"served now; capacity it announces: {fmt_rate(s.reported_throughput)}"
                           if s.reported_throughput else "served right now")
        if s.blocks:
            self.card_blocks.set(f"{len(s.blocks)}", f"blocks {s.blocks[0]}–{s.blocks[-1]} of {s.total_blocks}")
        else:
            self.card_blocks.set("–", "none yet")
        if s.peer_id:
            self.card_peer.set(f"…{s.peer_id[-8:]}", "end of this node's peer id")
            self.card_peer.setToolTip(s.peer_id)
            self.copy_peer.setEnabled(True)
        else:
            self.card_peer.set("–", "not on the network yet")
            self.card_peer.setToolTip("")
            self.copy_peer.setEnabled(False)

    def _copy_peer(self) -> None:
        if self._stats and self._stats.peer_id:
            QGuiApplication.clipboard().setText(self._stats.peer_id)
            self.copy_peer.setText("Copied")
            self._copied.start()

    # ------------------------------------------------------------------ today's totals
    def refresh_today(self) -> None:
        if self.core.closed:
            return
        if self._today_busy:
            self._today_again = True  # data changed while a query ran: query once more after it
            return
        self._today_again = False
        self._today_busy = True
        self.tasks.run(self.core.today, self._apply_today, self._today_failed)

    def _today_failed(self, exc: BaseException, _tb: str) -> None:
        self._today_busy = False
        if self._today_again:
            self.refresh_today()
        self.card_tokens.set("–", getattr(exc, "message", str(exc))[:80])

    def _apply_today(self, t: TodaySummary) -> None:
        self._today_busy = False
        if self._today_again:
            self.refresh_today()
        self.last_today = t
        self.today_updated.emit(t)
        self.card_tokens.set(fmt_count(t.tokens), f"since midnight, as of {time.strftime('%H:%M:%S')}")
        self.card_requests.set(fmt_count(t.requests), "inference sessions and forward passes")

    # ------------------------------------------------------------------ earnings, as money
    def refresh_earnings(self) -> None:
        """The stored earnings (no RPC: milliseconds, off the GUI thread); later ones come with each sync."""
        if not self.core.closed:
            self.tasks.run(self.core.earnings.snapshot, self.set_earnings, lambda _e, _tb: None)

    def set_earnings(self, snap) -> None:
        """Paid, pending, balance, the next payout and the estimate (where the network publishes a rate), each
        with the token's unit; or why there is nothing yet."""
        self.last_earnings = snap
        unit = snap.unit
        empty = empty_state(snap)
        estimated = (fmt_money(snap.estimated_unpaid, unit)
                     if snap.rate_per_1k_tokens > 0 and snap.estimated_unpaid is not None else "")
        if snap.setup_missing:
            self.card_earnings.set("–", empty[0] if empty else "not set up")
            return
        if empty is not None:  # set up, nothing paid yet
            self.card_earnings.set("none yet", "No payout yet. " + (f"≈ {estimated} earned (estimate)" if estimated
                                                                    else "Keep the node serving."))
            return
        when, _every = next_payout_text(snap, time.time())
        first = f"paid · pending {fmt_amount(snap.pending_total)} · balance " + (
            fmt_amount(snap.balance) if snap.balance is not None else "–")
        # two short lines fit the card at 800 px wide; the estimate's full wording is the card's tooltip
        second = " · ".join(x for x in (f"next {when}" if when != "–" else "",
                                        f"est. +{estimated}" if estimated else "") if x)
        self.card_earnings.set(fmt_money(snap.paid_total, unit), first + ("\n" + second if second else ""))
        self.card_earnings.setToolTip(f"≈ {estimated} more earned since the last payout: an ESTIMATE at the "
                                      "network's published rate; the payout service decides what is paid."
                                      if estimated else "")
