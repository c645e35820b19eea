"""A private Xvfb for the idle-time and foreground tests (used by conftest's ``xvfb`` fixture)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from farnode_desktop.core.policies.platform.x11 import X11IdleTime


def free_display() -> int:
    for n in range(140, 400):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number")


@pytest.fixture
def xvfb():
    """A private Xvfb (``-noreset`` keeps root properties when clients disconnect); yields ``:N``."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (scripts/system-deps.sh installs it): no X server to read idle time")
    for _ in range(5):
        n = free_display()
        proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "640x480x24", "-nolisten", "tcp", "-noreset"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        display = f":{n}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if X11IdleTime(display).idle_seconds().seconds is not None:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            break
    else:
        pytest.fail("Xvfb did not start")
    try:
        yield display
    finally:
        proc.terminate()
        proc.wait(10)
