"""One app per data folder, window or headless: with a node online in one face, a second launch of either
face refuses and names the holder's pid (a second window brings the first one forward, a window facing a
headless node says so in a message box too), and the first node keeps serving all along."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from farnode_desktop.core.instance import InstanceLock
from tests.support.display import private_xvfb, require_tools, xdpyinfo_ok
from tests.support.wait import scaled

from .conftest import REPO, Face, app_env, paths_of, write_settings

pytestmark = [pytest.mark.engine, pytest.mark.display]


@pytest.fixture(scope="module")
def display():
    """An X display for the message box a refused window shows (the current one, or a private Xvfb)."""
    require_tools("Xvfb", "xdotool", "xdpyinfo")
    current = os.environ.get("DISPLAY")
    if current and xdpyinfo_ok(current):
        yield current
        return
    with private_xvfb(first=200) as display:
        yield display


def _dismiss_box(display: str, title: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Press OK in the message box called ``title`` (found with xdotool, focused, Return typed)."""
    env = dict(os.environ, DISPLAY=display)
    deadline = time.time() + scaled(timeout)
    while time.time() < deadline and proc.poll() is None:
        found = subprocess.run(["xdotool", "search", "--name", title], env=env, capture_output=True, text=True)
        ids = found.stdout.split()
        if ids:
            time.sleep(0.5)  # mapped and ready for input
            subprocess.run(["xdotool", "windowfocus", "--sync", ids[-1]], env=env, capture_output=True, timeout=10)
            subprocess.run(["xdotool", "key", "Return"], env=env, capture_output=True, timeout=10)
            return
        time.sleep(0.2)
    raise AssertionError(f"no window {title!r} appeared (exit {proc.poll()})")


def _serving(first: Face, since: int, timeout: float = 120) -> int:
    """The first node is still online and has served more requests than ``since``."""
    deadline = time.time() + scaled(timeout)
    while time.time() < deadline:
        n = first.requests()
        if first.state() == "online" and n > since:
            return n
        time.sleep(0.2)
    raise AssertionError(f"the first node stopped serving: state {first.state()!r}, requests {first.requests()}")


@pytest.mark.parametrize("first_face", ["headless", "window"])
def test_a_second_launch_refuses_and_the_first_keeps_serving(first_face, home, engine_root, free_port, display):
    write_settings(home, {"network": {"port": free_port, "device": "cpu", "demo_traffic_per_minute": 60}})
    env = app_env(home, engine_root)
    first = Face(first_face, home, env)
    try:
        first.wait_state("online", 240)
        served = _serving(first, 0)
        launcher = json.loads((paths_of(home).run_dir / "node-main.json").read_text())["pid"]
        assert InstanceLock(paths_of(home).run_dir).holder().pid == first.pid

        # A second headless node: refused at once with the holder's pid; exit code 2.
        second = subprocess.run([sys.executable, "-m", "farnode_desktop", "node"], env=env, cwd=REPO,
                                capture_output=True, text=True, timeout=scaled(60))
        assert second.returncode == 2, second
        assert f"process {first.pid}" in second.stderr and "already running" in second.stderr
        assert second.stdout == ""

        # A second window.
        gui_env = dict(env, DISPLAY=display, QT_QPA_PLATFORM="xcb")
        window = subprocess.Popen([sys.executable, "-m", "farnode_desktop", "gui"], env=gui_env, cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if first_face == "window":  # brings the first window forward, says which process it is, exits 0
                out, err = window.communicate(timeout=scaled(60))
                assert window.returncode == 0, err
                assert f"process {first.pid}" in out and "brought forward" in out
                assert first.hook_state().get("brought_forward", 0) >= 1
            else:  # says so on the terminal and in a message box, exits 1
                _dismiss_box(display, "FarNode is already running", window)
                out, err = window.communicate(timeout=scaled(60))
                assert window.returncode == 1, err
                assert f"process {first.pid}" in err and "headless node" in err
        finally:
            if window.poll() is None:
                window.kill()
                window.wait()

        # The first node never stopped: the same server process, online, serving more requests.
        assert psutil.pid_exists(launcher)
        assert json.loads((paths_of(home).run_dir / "node-main.json").read_text())["pid"] == launcher
        _serving(first, served)
        assert first.stop() == 0, first.stderr()[-3000:]
    finally:
        first.kill()
    assert InstanceLock(paths_of(home).run_dir).holder() is None
