"""Ctrl-C and SIGTERM reach the app through a wake-up socket, with no polling timer: in the running app
(a real process, quitting cleanly) and the mechanism itself in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_wakeup_runs_the_callback_on_the_gui_thread(qtbot):
    import threading

    from farnode_desktop.gui.app import SignalWakeup

    seen: list[str] = []
    old = signal.getsignal(signal.SIGTERM)
    wakeup = SignalWakeup(lambda: seen.append(threading.current_thread().name))
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        qtbot.waitUntil(lambda: bool(seen), timeout=5000)
        assert seen == [threading.main_thread().name]
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the same path, no KeyboardInterrupt
        qtbot.waitUntil(lambda: len(seen) == 2, timeout=5000)
    finally:
        wakeup.close()
    assert signal.getsignal(signal.SIGTERM) is old  # handlers are given back on close


def _wait_state(path: Path, pred, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.time() + timeout
    state: dict = {}
    while time.time() < deadline:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {}
        if state and pred(state):
            return state
        assert proc.poll() is None, f"the app exited early ({proc.returncode})"
        time.sleep(0.05)
    raise AssertionError(f"timed out; last state {state}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_app_quits_cleanly_on_a_signal(tmp_path, sig):
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "settings.json").write_text("{}")  # not a first run: no wizard
    state = tmp_path / "state.json"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", FARNODE_HOME=str(home), PYTHONPATH=str(REPO),
               FARNODE_TEST_STATE_FILE=str(state), XDG_CONFIG_HOME=str(home / "xdg"))
    proc = subprocess.Popen([sys.executable, "-m", "farnode_desktop", "gui"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_state(state, lambda s: s.get("first_paint"), proc, 60)
        time.sleep(1.0)  # idle in Qt's loop: nothing wakes Python up but the signal
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert json.loads(state.read_text()).get("quit_done") is True
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
