"""The desktop app's footprint in the session a user really has: time from launch to the first painted
window, then the first-run wizard done (a wallet created in the OS keyring on its wallet step, the node
started at its end), every page opened, earnings synced from a real chain (anvil, payouts to that wallet),
the node online on the local demo swarm; then steady RSS and the GUI process's CPU share over 60 s online.

Baseline, measured in the same run: a bare QApplication + QMainWindow launched the same way.

    FARNODE_ENGINE_ROOT=.engine python benchmarks/gui_footprint.py [--seconds 60] [--platform offscreen]

It starts a private Secret Service (D-Bus + gnome-keyring, tests/support/secret_service.py) and anvil
(scripts/system-deps.sh installs both). The app is driven from inside its own process by a
small driver that clicks what a user clicks (wizard buttons, the wallet's Create and the phrase dialog,
the sidebar's pages) and saves the chain settings as the Settings page does; the driver is idle while the
figures are taken. RSS and CPU are read from outside with psutil.

Targets (issue 12): first paint < 1 s, RSS < 200 MB, CPU < 1 % of one core. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
PAYOUTS = 5  # payouts to the new wallet before the chain settings are saved

BASELINE = r"""
import json, os, sys, time
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.setCentralWidget(QLabel("baseline")); w.resize(1060, 720)
class F(QObject):
    done = False
    def eventFilter(self, o, e):
        if not self.done and e.type() == QEvent.Type.Paint:
            self.done = True
            with open(os.environ["OUT"], "w") as f: json.dump({"first_paint": time.time()}, f)
        return False
f = F(); app.installEventFilter(f)
w.show()
sys.exit(app.exec())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _wait(path: Path, pred, timeout: float, proc: subprocess.Popen, what: str) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = _read(path)
        if d and pred(d):
            return d
        if proc.poll() is not None:
            raise SystemExit(f"the app exited early ({proc.returncode}) waiting for {what}; last state {d}")
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}; last state {_read(path)}")


def _cpu_share(p: psutil.Process, seconds: float) -> tuple[float, float]:
    """(% of one core used by the process itself over ``seconds``, max RSS MB sampled each second)."""
    t0, c0 = time.monotonic(), p.cpu_times()
    rss = 0.0
    end = t0 + seconds
    while time.monotonic() < end:
        time.sleep(1.0)
        rss = max(rss, p.memory_info().rss / 1e6)
    c1, t1 = p.cpu_times(), time.monotonic()
    return 100.0 * ((c1.user - c0.user) + (c1.system - c0.system)) / (t1 - t0), rss


def _stop(proc: subprocess.Popen, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def measure_baseline(env: dict, seconds: float, tmp: Path) -> dict:
    out = tmp / "baseline.json"
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-c", BASELINE], env=dict(env, OUT=str(out)))
    try:
        d = _wait(out, lambda d: "first_paint" in d, 30, proc, "the first paint")
        cpu, rss = _cpu_share(psutil.Process(proc.pid), seconds)
    finally:
        _stop(proc)
    return {"first_paint_s": d["first_paint"] - t0, "rss_mb": rss, "cpu_pct": cpu}


def measure_app(env: dict, seconds: float, tmp: Path) -> dict:
    from tests.support.chain import deploy, start_anvil

    anvil = start_anvil()
    try:
        chain = deploy(anvil.url)
        return _session(env, seconds, tmp, chain)
    finally:
        anvil.stop()


def _session(env: dict, seconds: float, tmp: Path, chain) -> dict:
    home = tmp / "home"
    home.mkdir()
    status, control = tmp / "driver.json", tmp / "control.json"
    _write(control, {"port": _free_port()})
    env = dict(env, FARNODE_HOME=str(home), XDG_CONFIG_HOME=str(home / "xdg"), FARNODE_BENCH_STATUS=str(status),
               FARNODE_BENCH_CONTROL=str(control))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, __file__, "--session"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "app.log", "w"))
    try:
        d = _wait(status, lambda d: d.get("first_paint"), 60, proc, "the first paint")
        first = d["first_paint"] - t0
        d = _wait(status, lambda d: d.get("wallet"), 300, proc, "the wizard's new wallet")
        wallet = d["wallet"]
        for i in range(PAYOUTS):  # the payout service pays the new wallet; then enough confirmations
            chain.pay(wallet, chain.units(1 + i))
        chain.mine(12)
        _write(control, dict(_read(control), chain={
            "rpc_url": chain.url, "chain_id": chain.w3.eth.chain_id, "token_address": chain.token.address,
            "payout_senders": [chain.sender], "confirmations": 12}))
        d = _wait(status, lambda d: d.get("ready"), 900, proc, "earnings synced, every page opened, online")
        time.sleep(5)  # let the first traffic and chart queries settle
        p = psutil.Process(proc.pid)
        rss_ready = p.memory_info().rss / 1e6
        cpu, rss = _cpu_share(p, seconds)
        end = _read(status)
        if end.get("state") != "online":
            raise SystemExit(f"the node left online during the measurement: {end}")
    finally:
        t_quit = time.time()
        code = _stop(proc)
        quit_s = time.time() - t_quit
    return {"first_paint_s": first, "rss_mb": rss, "cpu_pct": cpu, "quit_s": quit_s, "exit_code": code,
            "rss_at_ready_mb": rss_ready, "milestones": d.get("rss_mb", {}), "payouts": d.get("payouts"),
            "paid_total": d.get("paid_total"), "online_s": d.get("online_s")}


# ---------------------------------------------------------------------------------------- the app's side
def run_session() -> int:
    """In the app's process: run the app as ``farnode-desktop gui`` does, with the driver attached."""
    from farnode_desktop.gui import app as gui_app

    captured: list = []

    class DrivenGuiApp(gui_app.GuiApp):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            captured.append(self)
            from PySide6.QtCore import QTimer

            self._driver = Driver(self)
            QTimer.singleShot(0, self._driver.begin)

    gui_app.GuiApp = DrivenGuiApp
    return gui_app.run_gui()


class Driver:
    """Clicks through the session on the GUI thread, one step per timer tick, and reports milestones."""

    def __init__(self, gui) -> None:
        from PySide6.QtCore import QTimer

        self.gui = gui
        self.status = Path(os.environ["FARNODE_BENCH_STATUS"])
        self.control = Path(os.environ["FARNODE_BENCH_CONTROL"])
        self.report: dict = {"rss_mb": {}}
        self.timer = QTimer()
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.tick)
        self.steps = iter(self.script())
        self.wait_until = 0.0
        self.online_since = 0.0
        gui.window.first_painted.connect(lambda: self.say(first_paint=time.time()))

    def say(self, **kw) -> None:
        self.report.update(kw)
        _write(self.status, self.report)

    def milestone(self, name: str) -> None:
        self.report["rss_mb"][name] = round(psutil.Process().memory_info().rss / 1e6, 1)
        self.say()

    def begin(self) -> None:
        self.timer.start()

    def tick(self) -> None:
        try:
            if self.online_since == 0.0 and self.gui.core.state.state == "online":
                self.online_since = time.time()
            if not next(self.steps):
                return
        except StopIteration:
            self.timer.stop()  # idle from here on: the figures are the app's alone
        except Exception as exc:  # the benchmark says what went wrong and leaves
            import traceback

            self.say(error=f"{exc}\n{traceback.format_exc()}")
            self.timer.stop()
            self.gui.quit()

    def script(self):
        """A generator: each ``yield False`` waits a tick, ``yield True`` moves on at once."""
        from dataclasses import replace

        from PySide6.QtWidgets import QApplication

        from farnode_desktop.core.settings import ChainSettings
        from farnode_desktop.gui.first_run import FirstRunWizard

        gui, core = self.gui, self.gui.core
        wizard = None
        while wizard is None:  # the first run: the wizard opens over the window
            wizard = next((w for w in QApplication.topLevelWidgets() if isinstance(w, FirstRunWizard)
                           and w.isVisible()), None)
            yield False
        self.milestone("window + wizard")
        while wizard.currentPage() is wizard.gpu_step and wizard.gpu_step.result.text().startswith("Looking"):
            yield False
        wizard.next()  # GPUs -> network (the local demo swarm is the default)
        yield False
        wizard.next()  # -> the wallet step: Create a new wallet
        yield False
        page = wizard.wallet_step.page
        page.create_button.click()
        while getattr(page, "last_dialog", None) is None:
            yield False
        dialog = page.last_dialog
        shown = {int(lab.text().split(".")[0]): lab.text().split(". ", 1)[1] for lab in dialog.word_labels}
        for n, edit in zip(dialog.asked, dialog.inputs, strict=True):  # type back the words asked for
            edit.setText(shown[n])
        dialog.close_button.click()  # "I have written them down"
        while not core.settings.wallet.address:
            yield False
        self.say(wallet=core.settings.wallet.address)
        wizard.next()  # -> the engine step
        while "ready" not in wizard.engine_step.status.text():
            yield False
        wizard.next()  # -> Ready, "Start contributing now" ticked
        yield False
        wizard.accept()
        self.milestone("first run done, wallet created")

        for name in list(gui.window.pages):  # every page, as a user looks around
            gui.window.show_page(name)
            t = time.time()
            while time.time() - t < 2.0:
                yield False
        self.milestone("every page opened")

        while "chain" not in _read(self.control):  # the payout service paid the new wallet
            yield False
        c = _read(self.control)["chain"]
        s = core.settings
        core.save_settings(replace(s, chain=ChainSettings(**c)))  # as the Settings page saves it
        snap = None
        while snap is None or snap.payout_count < PAYOUTS:
            snap = core.earnings.latest
            yield False
        gui.window.show_page("Earnings")
        t = time.time()
        while time.time() - t < 2.0:
            yield False
        gui.window.show_page("Dashboard")
        self.milestone("earnings synced")

        while core.state.state != "online":
            yield False
        while time.time() - self.online_since < 60.0:  # online for a minute before the figures
            yield False
        self.milestone("online 60 s")
        if os.environ.get("FARNODE_BENCH_DIAG"):  # what the memory is made of (a diagnosis run)
            import ctypes
            import gc
            import threading

            gc.collect()
            self.milestone("after gc")
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            self.milestone("after malloc_trim")
            self.say(threads=threading.active_count(), modules=len(sys.modules),
                     top=sorted({m.split(".")[0] for m in sys.modules}))
        self.say(ready=True, state=core.state.state, payouts=snap.payout_count, paid_total=str(snap.paid_total),
                 online_s=round(time.time() - self.online_since))
        # Idle from here; the state is read again (from the process's own timer-free bus) at the end.
        core.bus.subscribe("node.state", lambda _t, _s: self.say(state=core.state.state))


# ---------------------------------------------------------------------------------------- entry
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="CPU/RSS window while online (s)")
    ap.add_argument("--platform", default="offscreen", help="QT_QPA_PLATFORM (offscreen, or xcb with DISPLAY)")
    ap.add_argument("--session", action="store_true", help=argparse.SUPPRESS)  # the app's process
    args = ap.parse_args()
    if args.session:
        sys.path.insert(0, str(REPO))
        return run_session()
    sys.path.insert(0, str(REPO))
    from tests.support.secret_service import available, private_secret_service

    if available():
        raise SystemExit(f"No Secret Service to create the wallet in: {available()} missing (scripts/system-deps.sh)")
    env = dict(os.environ, QT_QPA_PLATFORM=args.platform, PYTHONPATH=str(REPO))
    env.pop("FARNODE_TEST_STATE_FILE", None)
    with tempfile.TemporaryDirectory(prefix="farnode-bench-") as d:
        tmp = Path(d)
        base = measure_baseline(env, min(args.seconds, 20.0), tmp)
        with private_secret_service(tmp / "keyring") as bus:  # the app's OS keyring
            app = measure_app(dict(env, DBUS_SESSION_BUS_ADDRESS=bus), args.seconds, tmp)
    print(f"GUI footprint ({args.platform}, {psutil.cpu_count()} CPUs): first run with a wallet created, every "
          "page opened, earnings synced from anvil, node online on the local demo swarm")
    print(f"{'':28}{'bare Qt window':>16}{'FarNode app':>14}{'ratio':>8}{'target':>10}")
    rows = [("launch -> first paint (s)", "first_paint_s", "< 1"), ("steady RSS (MB)", "rss_mb", "< 200"),
            ("CPU, % of one core", "cpu_pct", "< 1")]
    for label, key, target in rows:
        b, a = base[key], app[key]
        ratio = f"{a / b:.1f}x" if b > 0 else "n/a"
        print(f"{label:28}{b:16.3f}{a:14.3f}{ratio:>8}{target:>10}")
    print("RSS along the session (MB): " + ", ".join(f"{k} {v}" for k, v in app["milestones"].items()))
    print(f"(app: CPU and max RSS over {args.seconds:.0f} s after {app['online_s']} s online; baseline idle over "
          f"{min(args.seconds, 20.0):.0f} s; {app['payouts']} payouts synced, {app['paid_total']} paid; quit with "
          f"the node stopped in {app['quit_s']:.1f} s, exit code {app['exit_code']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
