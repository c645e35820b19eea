"""End to end under a real X server with a real system tray (Xvfb + trayer): launch the app, drive it from
the tray menu with xdotool (Start, Pause for 1 hour, Resume now, Stop, Quit), check the state through the
app's test hook file, and check that no process of the node is left. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import Settings
from tests.support.display import private_xvfb, require_tools
from tests.support.ports import free_port
from tests.support.processes import stop_process, with_cmdline
from tests.support.wait import scaled

pytestmark = [pytest.mark.display, pytest.mark.engine]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO / "test-artifacts"
TOOLS = ("Xvfb", "trayer", "xdotool", "import", "xdpyinfo")


def _run(*args: str, env: dict | None = None, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env)


def _has_tray(display: str) -> bool:
    env = dict(os.environ, DISPLAY=display)
    r = _run("xdotool", "search", "--classname", "trayer", env=env)
    return r.returncode == 0 and bool(r.stdout.strip())


@pytest.fixture(scope="module")
def tray_display():
    """DISPLAY of an X server with a system tray: the current one if it has trayer, else a private one."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    require_tools(*TOOLS)
    current = os.environ.get("DISPLAY")
    if current and _has_tray(current):
        yield current
        return
    with private_xvfb() as display, open(ARTIFACTS_DIR / "e2e-trayer.log", "w") as trayer_log:
        trayer = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
                                   "--height", "24"], env=dict(os.environ, DISPLAY=display), stdout=trayer_log,
                                  stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 30
            while not _has_tray(display):
                assert trayer.poll() is None, f"trayer exited ({trayer.returncode}), see e2e-trayer.log"
                assert time.time() < deadline, "trayer did not start"
                time.sleep(0.1)
            yield display
        finally:
            stop_process(trayer, 5)


class App:
    def __init__(self, display: str, home: Path, state_file: Path, artifacts: Path) -> None:
        self.display, self.state_file, self.artifacts = display, state_file, artifacts
        self.env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "FARNODE_TEST_STATE_FILE")}
        self.env.update(DISPLAY=display, FARNODE_HOME=str(home), FARNODE_TEST_STATE_FILE=str(state_file),
                        XDG_CONFIG_HOME=str(home / "xdg"), PYTHONPATH=str(REPO))
        self.proc: subprocess.Popen | None = None

    def launch(self) -> subprocess.Popen:
        self.log = open(self.artifacts / "e2e-app.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "farnode_desktop", "gui"], env=self.env, cwd=REPO,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        return self.proc

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, pred, timeout: float, what: str) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.state()
            if st and pred(st):
                return st
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"the app exited ({self.proc.returncode}) while waiting for {what}; last state {st}")
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; last state {self.state()}")

    def xdo(self, *args: str) -> None:
        r = _run("xdotool", *args, env=self.env)
        assert r.returncode == 0, r.stderr

    def tray_menu(self, downs: int, shot: str | None = None) -> None:
        """Open the tray icon's menu with a right click, move down ``downs`` enabled items, press Return."""
        x, y, w, h = self.state()["tray"]
        self.xdo("mousemove", str(x + w // 2), str(y + h // 2))
        time.sleep(0.2)
        self.xdo("click", "3")
        time.sleep(0.8)
        if shot:
            self.screenshot(shot)
        for _ in range(downs):
            self.xdo("key", "Down")
            time.sleep(0.1)
        self.xdo("key", "Return")

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / name
        r = _run("import", "-window", "root", str(path), env=self.env, timeout=20)
        assert r.returncode == 0, r.stderr
        return path


def test_tray_start_pause_resume_stop_quit(tray_display, tmp_path, artifacts_dir):
    home = tmp_path / "home"
    paths = AppPaths(home / "config", home / "data", home / "logs", home / "cache")
    if not EngineEnv(paths, "cpu").is_ready():
        pytest.skip("the engine environment is not set up (run scripts/test.sh, or set FARNODE_ENGINE_ROOT)")
    s = Settings()
    s.network.port = free_port()
    s.network.demo_traffic_per_minute = 30.0
    paths.ensure()
    paths.settings_file.write_text(json.dumps(s.to_dict()))  # not a first run: no wizard
    app = App(tray_display, home, tmp_path / "state.json", artifacts_dir)
    proc = app.launch()
    node_procs: list[psutil.Process] = []
    try:
        st = app.wait(lambda s: s.get("first_paint") and s.get("tray") and s["tray"][2] > 0, 60, "window and tray")
        assert st["state"] == "stopped" and st["window_visible"] and st["title"] == "FarNode: Stopped"
        assert "Start contributing" in st["tray_menu"]
        time.sleep(0.5)
        app.screenshot("e2e-started-stopped.png")

        # A second launch brings the first window forward and exits 0.
        second = subprocess.run([sys.executable, "-m", "farnode_desktop", "gui"], env=app.env, cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 0 and "already running" in second.stdout

        app.tray_menu(1, shot="e2e-tray-menu.png")  # Start contributing
        app.wait(lambda s: s["state"] != "stopped", 20, "the node to start")
        st = app.wait(lambda s: s["state"] == "online" and "tokens/s" in (s["tray_tooltip"] or ""), 300, "online")
        assert st["title"] == "FarNode: Online: contributing"
        node_procs = [psutil.Process(p) for p in st["node_pids"]]
        node_procs += [c for p in node_procs for c in p.children(recursive=True)]
        app.wait(lambda s: s["chart_served_points"] > 0, 180, "served tokens on the chart")
        time.sleep(1.5)
        app.screenshot("e2e-online.png")

        app.tray_menu(2)  # Pause for 1 hour
        # the hook reads the core's state directly; the tray hears it through a queued signal: wait for both
        st = app.wait(lambda s: s["state"] == "paused" and "Resume now" in s["tray_menu"], 60, "paused")
        assert st["title"] == "FarNode: Paused"
        app.screenshot("e2e-paused.png")

        app.tray_menu(2)  # Resume now
        app.wait(lambda s: s["state"] == "online" and "Pause for 1 hour" in s["tray_menu"], 300, "online again")
        node_procs += [psutil.Process(p) for p in app.state()["node_pids"]]

        app.tray_menu(1)  # Stop contributing
        st = app.wait(lambda s: s["state"] == "stopped" and "Start contributing" in s["tray_menu"], 60, "stopped")
        assert not st["node_pids"]

        app.tray_menu(3)  # Quit (Pause is disabled while stopped: Start, Open, Quit)
        assert proc.wait(60) == 0
        assert app.state().get("quit_done") is True
    finally:
        stop_process(proc, 30)
        app.log.close()
    gone, alive = psutil.wait_procs(node_procs, timeout=scaled(10))
    assert not alive, f"node processes left: {[p.pid for p in alive]}"
    leftovers = with_cmdline(str(home))
    assert not leftovers, f"processes of this data folder left: {[p.pid for p in leftovers]}"
