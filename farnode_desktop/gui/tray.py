"""The tray icon: one icon per state, a click opens the window, a menu for the common actions, a tooltip
with the state, tokens/s and today's earnings, and notifications (payouts; failures when the app asks)."""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QObject, QRect, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.policies.rules import Decision
from farnode_desktop.gui.bridge import BusBridge
from farnode_desktop.gui.look import state_icon


class Tray(QObject):
    toggle = Signal()  # Start / Stop contributing
    pause_hour = Signal()
    resume = Signal()
    open_window = Signal()
    quit = Signal()

    def __init__(self, bridge: BusBridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.icons = {k: state_icon(k) for k in C.ICON_KINDS}
        self.icon = QSystemTrayIcon(self.icons[C.ICON_STOPPED], self)
        self.menu = QMenu()
        self.status_action = QAction("Stopped", self.menu)
        self.status_action.setEnabled(False)
        self.toggle_action = QAction("Start contributing", self.menu)
        self.pause_action = QAction("Pause for 1 hour", self.menu)
        self.open_action = QAction("Open FarNode", self.menu)
        self.quit_action = QAction("Quit", self.menu)
        for a in (self.status_action, None, self.toggle_action, self.pause_action, None, self.open_action,
                  self.quit_action):
            if a is None:
                self.menu.addSeparator()
            else:
                self.menu.addAction(a)
        self.toggle_action.triggered.connect(self.toggle)
        self.pause_action.triggered.connect(self._pause_clicked)
        self.open_action.triggered.connect(self.open_window)
        self.quit_action.triggered.connect(self.quit)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self.state = C.NodeState("main", C.STOPPED)
        self.rate = 0.0
        self.earnings_today: float | None = None
        self.pause_text = ""
        self._stopping = False
        self.kind = C.ICON_STOPPED
        self.sent: list[tuple[str, str, bool]] = []  # the last balloons asked for (title, text, error)
        bridge.state.connect(self.set_state)
        bridge.stats.connect(self._on_stats)
        bridge.decision.connect(self._on_decision)
        bridge.node_event.connect(self._on_event)
        self._update()

    @staticmethod
    def available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def geometry(self) -> QRect:
        return self.icon.geometry()

    def notify(self, title: str, text: str, error: bool = False) -> None:
        """A balloon (where the tray shows them). ``sent`` keeps what was asked for, shown or not."""
        self.sent.append((title, text, error))
        del self.sent[:-20]
        if self.icon.isVisible() and QSystemTrayIcon.supportsMessages():
            kind = QSystemTrayIcon.MessageIcon.Critical if error else QSystemTrayIcon.MessageIcon.Information
            self.icon.showMessage(title, text, kind, 8000)

    # ------------------------------------------------------------------ updates
    def set_stopping(self) -> None:
        self._stopping = True
        self._update()

    def set_state(self, state: C.NodeState) -> None:
        self.state = state  # a failure's balloon is the app's to give (only while the window is hidden)
        if state.state not in C.ACTIVE_STATES:
            self.rate = 0.0
        self._update()

    def set_earnings_today(self, value: float | None) -> None:
        self.earnings_today = value
        self._update()

    def _on_stats(self, s: C.NodeStats) -> None:
        rate = s.inference_tokens_per_s + s.forward_tokens_per_s
        if abs(rate - self.rate) >= 0.05:
            self.rate = rate
            self._update()

    def _on_decision(self, d: Decision) -> None:
        if not d.run and "manual" in " ".join(d.codes) and math.isfinite(d.earliest_change_at):
            self.pause_text = f"Paused until {time.strftime('%H:%M', time.localtime(d.earliest_change_at))}"
        else:
            self.pause_text = ""
        self._update()

    def _on_event(self, ev: C.NodeEvent) -> None:
        if ev.kind == "payout":
            self.notify("FarNode: payout received", ev.message)

    def _pause_clicked(self) -> None:
        if self.state.state == C.PAUSED:
            self.resume.emit()
        else:
            self.pause_hour.emit()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.open_window.emit()

    def _update(self) -> None:
        st = C.STOPPING if self._stopping else self.state.state
        lk = C.state_info(st)
        if lk.icon != self.kind:
            self.kind = lk.icon
            self.icon.setIcon(self.icons[lk.icon])
        running = lk.running
        self.toggle_action.setText("Stop contributing" if running else "Start contributing")
        self.toggle_action.setEnabled(st != C.STOPPING and not self._stopping)
        self.pause_action.setText("Resume now" if st == C.PAUSED else "Pause for 1 hour")
        self.pause_action.setEnabled(running and st != C.STOPPING)
        status = lk.words if st != C.PAUSED else (self.pause_text or f"Paused: {self.state.message}")
        self.status_action.setText(status)
        tip = [f"FarNode: {status}"]
        if st in (C.ONLINE, C.REBALANCING):
            tip.append(f"{self.rate:,.1f} tokens/s")
        if self.earnings_today is not None:
            tip.append(f"today {self.earnings_today:,.4f} earned")
        text = "\n".join(tip)
        if self.icon.toolTip() != text:
            self.icon.setToolTip(text)
