"""The desktop app's footprint: time from launch to the first painted window, steady RSS, and the GUI
process's CPU share while a real node is online on the local demo swarm (1 Hz stats, chart refresh).

Baseline, measured in the same run: a bare QApplication + QMainWindow launched the same way.

    FARNODE_ENGINE_ROOT=.engine python benchmarks/gui_footprint.py [--seconds 60] [--platform offscreen]

Targets (issue 6): first paint < 1 s, RSS < 200 MB, CPU < 1 % of one core. Figures are printed, not asserted.
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


def _wait(path: Path, pred, timeout: float, proc: subprocess.Popen) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = _read(path)
        if d and pred(d):
            return d
        if proc.poll() is not None:
            raise SystemExit(f"process exited early ({proc.returncode}); last state {d}")
        time.sleep(0.02)
    raise SystemExit(f"timed out; last state {_read(path)}")


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
        d = _wait(out, lambda d: "first_paint" in d, 30, proc)
        cpu, rss = _cpu_share(psutil.Process(proc.pid), seconds)
    finally:
        _stop(proc)
    return {"first_paint_s": d["first_paint"] - t0, "rss_mb": rss, "cpu_pct": cpu}


def measure_app(env: dict, seconds: float, tmp: Path) -> dict:
    home = tmp / "home"
    (home / "config").mkdir(parents=True)
    settings = {"network": {"port": _free_port(), "demo_traffic_per_minute": 12.0}}
    (home / "config" / "settings.json").write_text(json.dumps(settings))
    (home / "config" / "gui-state.json").write_text(json.dumps({"contributing": True}))  # start on launch
    state = tmp / "state.json"
    env = dict(env, FARNODE_HOME=str(home), FARNODE_TEST_STATE_FILE=str(state), XDG_CONFIG_HOME=str(home / "xdg"))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "farnode_desktop", "gui"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "app.log", "w"))
    try:
        d = _wait(state, lambda d: d.get("first_paint"), 60, proc)
        first = d["first_paint"] - t0
        t_online = time.time()
        _wait(state, lambda d: d.get("state") == "online", 600, proc)
        online_after = time.time() - t_online
        time.sleep(5)  # let the first traffic and chart queries settle
        cpu, rss = _cpu_share(psutil.Process(proc.pid), seconds)
        d = _read(state)
        if d.get("state") != "online":
            raise SystemExit(f"the node left online during the measurement: {d}")
    finally:
        t_quit = time.time()
        code = _stop(proc)
        quit_s = time.time() - t_quit
    return {"first_paint_s": first, "rss_mb": rss, "cpu_pct": cpu, "online_after_s": online_after,
            "quit_s": quit_s, "exit_code": code, "chart_points": d.get("chart_points")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="CPU/RSS window while online (s)")
    ap.add_argument("--platform", default="offscreen", help="QT_QPA_PLATFORM (offscreen, or xcb with DISPLAY)")
    args = ap.parse_args()
    env = dict(os.environ, QT_QPA_PLATFORM=args.platform, PYTHONPATH=str(REPO))
    env.pop("FARNODE_TEST_STATE_FILE", None)
    with tempfile.TemporaryDirectory(prefix="farnode-bench-") as d:
        tmp = Path(d)
        base = measure_baseline(env, min(args.seconds, 20.0), tmp)
        app = measure_app(env, args.seconds, tmp)
    print(f"GUI footprint ({args.platform}, {psutil.cpu_count()} CPUs; node online on the local demo swarm)")
    print(f"{'':28}{'bare Qt window':>16}{'FarNode app':>14}{'ratio':>8}{'target':>10}")
    rows = [("launch -> first paint (s)", "first_paint_s", "< 1"), ("steady RSS (MB)", "rss_mb", "< 200"),
            ("CPU, % of one core", "cpu_pct", "< 1")]
    for label, key, target in rows:
        b, a = base[key], app[key]
        ratio = f"{a / b:.1f}x" if b > 0 else "n/a"
        print(f"{label:28}{b:16.3f}{a:14.3f}{ratio:>8}{target:>10}")
    print(f"(app: CPU over {args.seconds:.0f} s while online; baseline idle over {min(args.seconds, 20.0):.0f} s; "
          f"node online {app['online_after_s']:.1f} s after the first paint; quit with the node stopped in "
          f"{app['quit_s']:.1f} s, exit code {app['exit_code']}; {app['chart_points']} chart points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
