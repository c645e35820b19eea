"""The desktop app: single instance, the core, the main window, the tray, first run and a clean quit.

``run_gui(minimized)`` is what ``farnode-desktop gui`` calls. The data folder belongs to one process, window
or headless (the core's instance lock). A second window finds a first window through a local socket, asks
it to show itself, says which process it is and exits 0; when a headless node holds the folder it says so
(terminal and a message box) and exits 1.

Test hook: with ``FARNODE_TEST_STATE_FILE`` set, the app writes a small JSON file (state, window title,
tray icon geometry, chart points, time of the first paint) whenever the state changes and once a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QSocketNotifier, QTimer, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QApplication

from farnode_desktop import APP_NAME
from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.atomic import atomic_write_json
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.instance import AlreadyRunning, Holder, InstanceLock
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.errors import show_error
from farnode_desktop.gui.look import apply_theme
from farnode_desktop.gui.main_window import MainWindow
from farnode_desktop.gui.tray import Tray

log = logging.getLogger(__name__)

PAUSE_HOUR_S = 3600.0


def instance_key(paths: AppPaths) -> str:
    """The local socket name: one instance per user and data folder."""
    user = os.environ.get("USER") or os.environ.get("USERNAME") or str(os.getuid() if hasattr(os, "getuid") else 0)
    digest = hashlib.sha1(f"{user}:{paths.config_dir}".encode()).hexdigest()[:12]
    return f"farnode-desktop-{digest}"


def signal_running_instance(key: str, timeout_ms: int = 800) -> bool:
    """Ask an already running instance to show its window. True if one answered."""
    sock = QLocalSocket()
    sock.connectToServer(key)
    if not sock.waitForConnected(timeout_ms):
        return False
    sock.write(b"show\n")
    sock.flush()
    sock.waitForBytesWritten(timeout_ms)
    sock.disconnectFromServer()
    return True


def refuse_second_launch(holder: Holder | None, key: str, paths: AppPaths, wait_s: float = 3.0) -> int:
    """Another process holds this data folder. A window: bring it forward (it may be a moment before it
    listens, when it has just started) and say which process it is; exit code 0. Anything else: say who
    holds the folder and how to stop it, on the terminal and in a message box; exit code 1."""
    if holder is None or holder.face == "window":
        deadline = time.monotonic() + wait_s
        while True:
            if signal_running_instance(key):
                who = holder.describe() if holder else "another process"
                print(f"{APP_NAME} is already running on this data folder ({who}): its window was brought "
                      "forward.", flush=True)
                return 0
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    refusal = AlreadyRunning(holder, paths.data_dir)
    print(f"{refusal.title}: {refusal.message}", file=sys.stderr, flush=True)
    from PySide6.QtWidgets import QMessageBox

    QMessageBox.warning(None, refusal.title, refusal.message)
    return 1


class GuiState:
    """Small GUI-only facts kept between runs (not settings): tray hint shown, node left contributing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text())
            self.data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.data = {}

    def get(self, key: str, default: object = None) -> object:
        return self.data.get(key, default)

    def set(self, key: str, value: object) -> None:
        if self.data.get(key) != value:
            self.data[key] = value
            try:
                atomic_write_json(self.path, self.data)
            except OSError as exc:
                log.warning("could not save %s: %s", self.path, exc)


class GuiApp(QObject):
    """Wires the core to the window and the tray; owns start/stop/pause and the quit sequence."""

    quitted = Signal()

    def __init__(self, core: AppCore, *, use_tray: bool | None = None) -> None:
        super().__init__()
        self.core = core
        self.bridge = BusBridge(core.bus, self)
        self.tasks = TaskRunner(self, default_error=self._show_error)
        self.window = MainWindow(core, self.bridge, self.tasks, extra_pages=_optional_pages())
        self.gui_state = GuiState(core.paths.config_dir / "gui-state.json")
        self.tray: Tray | None = None
        if use_tray if use_tray is not None else Tray.available():
            self.tray = Tray(self.bridge, self)
            self.tray.toggle.connect(self.toggle_node)
            self.tray.pause_hour.connect(lambda: self.pause_for(PAUSE_HOUR_S))
            self.tray.resume.connect(self.resume_now)
            self.tray.open_window.connect(self.window.bring_forward)
            self.tray.quit.connect(self.quit)
            self.tray.show()
            self.window.dashboard.today_updated.connect(lambda t: self.tray.set_earnings_today(t.earnings))
        self.window.dashboard.toggle_requested.connect(self.toggle_node)
        self.window.close_requested.connect(self._window_closed)
        self.quitting = False
        self.brought_forward = 0  # times a second launch asked for this window
        self.busy = False  # a start or stop is under way
        self.first_paint_time: float | None = None
        self.window.first_painted.connect(self._on_first_paint)
        self._test_file = os.environ.get("FARNODE_TEST_STATE_FILE")
        self._test_last: dict | None = None
        self._last_state = core.state.state
        self._last_balloon: str | None = None  # the failure the tray last told of (one balloon per failure)
        self.bridge.state.connect(self._on_state)
        self.bridge.earnings.connect(self._on_earnings)
        self._payouts_seen: int | None = None
        if self._test_file:
            self._hook_timer = QTimer(self)
            self._hook_timer.setInterval(1000)
            self._hook_timer.timeout.connect(self.write_test_state)
            self._hook_timer.start()

    # ------------------------------------------------------------------ actions
    def toggle_node(self) -> None:
        if self.quitting or self.busy:
            return
        if self.core.is_running():
            self.stop_node()
        else:
            self.start_node()

    def start_node(self) -> None:
        self.busy = True
        self.gui_state.set("contributing", True)
        self.tasks.run(self.core.start_node, self._done, self._start_failed)

    def stop_node(self) -> None:
        self.busy = True
        self.gui_state.set("contributing", False)
        self.tasks.run(self.core.stop_node, self._done, self._start_failed)

    def pause_for(self, seconds: float | None) -> None:
        self.core.pause_for(seconds)

    def bring_forward(self) -> None:
        """A second launch asked for this window."""
        self.brought_forward += 1
        self.window.bring_forward()
        if self._test_file:
            self.write_test_state()

    def resume_now(self) -> None:
        self.core.resume_now()

    def _done(self, _state: object) -> None:
        self.busy = False

    def _start_failed(self, exc: BaseException, tb: str) -> None:
        """A start (or stop) that failed gives one notice: an expected failure (a FarNodeError, which says
        what to do) is the Dashboard's banner while the window shows, else the tray's balloon; only an
        unexpected one opens the report dialog."""
        self.busy = False
        if isinstance(exc, FarNodeError):
            self.notify_failure(exc.title, exc.message, show_dashboard=True)
        else:
            show_error(self.window if self.window.isVisible() else None, exc, tb)

    def notify_failure(self, title: str, message: str, *, show_dashboard: bool = False) -> None:
        """One notice of a failure: the banner when the window is visible (on the Dashboard, brought to it
        when ``show_dashboard``: the user's own start), else one tray balloon (not twice for the same
        message: the failed state and the start's error carry the same words)."""
        if self.window.isVisible() or self.tray is None:
            st = self.core.state
            if not (st.state in (C.FAILED, C.HELD) and st.message == message):
                # (the failed state's own banner says it already, in the words the status uses)
                self.window.dashboard.error.show_message(title, message)
            if show_dashboard:
                self.window.show_page("Dashboard")
            return
        if self._last_balloon == message:
            return
        self._last_balloon = message
        self.tray.notify(f"FarNode: {title}", message or "The node stopped.", error=True)

    def _show_error(self, exc: BaseException, tb: str) -> None:
        """A task's error nobody else handles: while the window is hidden an expected one is a balloon;
        otherwise a dialog (a FarNodeError's message, or the report of an unexpected error)."""
        if isinstance(exc, FarNodeError) and self.tray is not None and not self.window.isVisible():
            self.tray.notify(exc.title, exc.message, error=True)
            return
        show_error(self.window if self.window.isVisible() else None, exc, tb)

    def _on_state(self, state: C.NodeState) -> None:
        prev, self._last_state = self._last_state, state.state
        if state.state in (C.FAILED, C.HELD) and prev != state.state:
            # the Dashboard shows the failed state itself (its banner); hidden, the tray says it once
            if not self.window.isVisible() and self.tray is not None:
                self.notify_failure(C.state_info(state.state).words, state.message)
        elif state.state not in (C.FAILED, C.HELD):
            self._last_balloon = None
        if self._test_file:
            self.write_test_state()

    def _on_earnings(self, snap) -> None:
        """A tray notification when a new confirmed payout arrived (not for those already known)."""
        count = getattr(snap, "payout_count", None)
        if count is None:
            return
        if self._payouts_seen is not None and count > self._payouts_seen and self.tray is not None:
            self.tray.notify("FarNode: payout received",
                             f"{count - self._payouts_seen} new payout(s); paid in all: {snap.paid_total:,.4f}")
        self._payouts_seen = count

    # ------------------------------------------------------------------ window, quit
    def show_window(self, minimized: bool) -> None:
        if minimized and self.tray is not None:
            return
        self.window.show()

    def _window_closed(self) -> None:
        if self.tray is not None and not self.quitting:
            self.window.hide()
            if not self.gui_state.get("tray_hint_shown"):
                self.tray.notify(APP_NAME, "FarNode keeps running in the tray. Use Quit in the tray menu to "
                                           "stop it and close the app.")
                self.gui_state.set("tray_hint_shown", True)
        else:
            self.quit()

    def quit(self) -> None:
        """Stop the node off the GUI thread (the window and the tray say "Stopping…"), then leave."""
        if self.quitting:
            return
        self.quitting = True
        self.window.set_stopping()
        if self.tray is not None:
            self.tray.set_stopping()
        if self._test_file:
            self.write_test_state()
        self.tasks.run(self.core.close, lambda _r: self._finish(), lambda e, tb: self._finish(e, tb))

    def _finish(self, exc: BaseException | None = None, tb: str = "") -> None:
        if exc is not None:
            log.error("closing the core failed:\n%s", tb)
        self.bridge.close()
        self.window.shutdown()
        if self.tray is not None:
            self.tray.hide()
        self.window._stopping = True
        self.window.hide()
        if self._test_file:
            self.write_test_state(quit_done=True)
        self.tasks.close()  # the worker threads end once what was given has run
        self.quitted.emit()

    # ------------------------------------------------------------------ test hook
    def _on_first_paint(self) -> None:
        self.first_paint_time = time.time()
        if self._test_file:
            self.write_test_state()

    def write_test_state(self, quit_done: bool = False) -> None:
        if not self._test_file:
            return
        st = self.core.state
        geo = self.tray.geometry() if self.tray is not None else None
        chart = self.window.dashboard.chart
        points = {line.series: int(len(chart.data(line.series)[0])) for line in chart.lines()} if chart else {}
        dash = self.window.dashboard
        shown = {"state": _plain(dash.state_label.text()), "detail": dash.detail_label.text(),
                 "error": [dash.error.title.text(), dash.error.text.text()] if not dash.error.isHidden() else None}
        data = {
            "pid": os.getpid(), "time": time.time(), "state": st.state, "words": C.state_info(st.state).words,
            "message": st.message, "category": st.category, "shown": shown, "title": self.window.windowTitle(), "window_visible": self.window.isVisible(),
            "tray": [geo.x(), geo.y(), geo.width(), geo.height()] if geo is not None else None,
            "tray_tooltip": self.tray.icon.toolTip() if self.tray is not None else None,
            "tray_menu": [a.text() for a in self.tray.menu.actions() if a.text()] if self.tray is not None else None,
            "chart_points": sum(points.values()),
            "chart_served_points": points.get("tokens_inference_per_s", 0) + points.get("tokens_forward_per_s", 0), "first_paint": self.first_paint_time, "quitting": self.quitting,
            "quit_done": quit_done, "node_pids": self.core.node_pids(),
            "brought_forward": self.brought_forward, "requests": self.core.stats().requests,
        }
        # Only a change is written: an fsync'd file every second would be the hook's own CPU cost in the
        # footprint benchmark, not the app's. "time" is when the state last changed.
        key = {k: v for k, v in data.items() if k != "time"}
        if key == self._test_last:
            return
        self._test_last = key
        try:
            atomic_write_json(Path(self._test_file), data)
        except OSError as exc:
            log.warning("test state file: %s", exc)


def _plain(rich: str) -> str:
    """A label's rich text as the user reads it."""
    import re

    return re.sub(r"<[^>]+>", "", rich).replace("&nbsp;", " ").strip()


class SignalWakeup(QObject):
    """Runs ``on_signal`` on the GUI thread when SIGINT or SIGTERM arrives, without a polling timer.

    Python runs signal handlers only between bytecodes, and Qt's loop runs none while idle; the usual
    fix, a timer that wakes the interpreter twice a second, costs wake-ups for the app's whole life.
    Instead the C-level handler writes to a socket (``signal.set_wakeup_fd``) that a ``QSocketNotifier``
    watches: the notifier's slot is Python code, so the pending handler runs at once. A socket pair, not a
    pipe, so that it works on Windows too."""

    def __init__(self, on_signal: Callable[[], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rsock, self._wsock = socket.socketpair()
        for sock in (self._rsock, self._wsock):
            sock.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._wsock.fileno(), warn_on_full_buffer=False)
        self._notifier = QSocketNotifier(self._rsock.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._drain)
        self._old = {sig: signal.signal(sig, lambda *_: on_signal()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _drain(self) -> None:
        try:
            while self._rsock.recv(64):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        self._notifier.setEnabled(False)
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_fd)
        self._rsock.close()
        self._wsock.close()


def run_gui(minimized: bool = False) -> int:
    """Open the app (or bring the running one forward). Returns the process exit code."""
    QApplication.setApplicationName(APP_NAME)
    QApplication.setDesktopFileName("farnode-desktop")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    paths = AppPaths.default().ensure()
    key = instance_key(paths)
    holder = InstanceLock(paths.run_dir).holder()
    if holder is not None:
        return refuse_second_launch(holder, key, paths)
    apply_theme(app)
    try:
        core = AppCore(paths, face="window")
    except AlreadyRunning as exc:  # taken between the check above and now
        return refuse_second_launch(exc.holder, key, paths)
    except FarNodeError as exc:
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.critical(None, exc.title, exc.message)
        return 2
    server = QLocalServer()
    QLocalServer.removeServer(key)  # a stale socket of a killed instance
    server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
    if not server.listen(key):
        log.warning("single-instance socket %s: %s", key, server.errorString())

    gui = GuiApp(core)

    def on_connection() -> None:
        sock = server.nextPendingConnection()
        if sock is None:
            return
        sock.readyRead.connect(lambda: (sock.readAll(), gui.bring_forward()))
        sock.disconnected.connect(sock.deleteLater)

    server.newConnection.connect(on_connection)
    gui.quitted.connect(app.quit)
    core.start()

    if core.settings_notes:
        show_error(None, FarNodeError("\n".join(core.settings_notes), title="Unknown settings"))

    if core.first_run:
        from farnode_desktop.gui.first_run import FirstRunWizard

        wizard = FirstRunWizard(core, gui.tasks, gui.bridge)
        gui.window.show()
        wizard.finished_setup.connect(lambda start: gui.start_node() if start else None)
        wizard.open()
    else:
        gui.show_window(minimized)
        if gui.gui_state.get("contributing"):
            gui.start_node()  # the node was contributing when the app last closed

    # Ctrl-C / SIGTERM quit cleanly.
    wakeup = SignalWakeup(lambda: QTimer.singleShot(0, gui.quit))
    code = app.exec()
    wakeup.close()
    server.close()
    gui.tasks.wait(5000)
    return code


def _optional_pages() -> list:
    """The Earnings and Wallet pages (between GPUs and Settings)."""
    from farnode_desktop.gui.pages.earnings import EarningsPage
    from farnode_desktop.gui.pages.wallet import WalletPage

    return [("Earnings", EarningsPage), ("Wallet", WalletPage)]
