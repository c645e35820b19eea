"""A private X server (Xvfb) for tests that need a display and find none, or must not use the current one."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import stop_process


def free_display(first: int = 140, last: int = 400) -> int:
    """An X display number in [first, last) that no server holds (no socket, no lock file)."""
    for n in range(first, last):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number")


def xdpyinfo_ok(display: str) -> bool:
    """Whether the X server of ``display`` answers."""
    return subprocess.run(["xdpyinfo"], env=dict(os.environ, DISPLAY=display), capture_output=True).returncode == 0


def missing_tools(*tools: str) -> str:
    """'' when every tool is on PATH, else the missing ones, comma-separated."""
    return ", ".join(t for t in tools if shutil.which(t) is None)


def require_tools(*tools: str) -> None:
    """Skip the test, naming them, when any of ``tools`` is not on PATH."""
    missing = missing_tools(*tools)
    if missing:
        pytest.skip(f"needs {missing} (scripts/system-deps.sh installs them)")


@contextlib.contextmanager
def private_xvfb(*, screen: str = "1280x800x24", extra: tuple[str, ...] = (), first: int = 140,
                 ready: Callable[[str], bool] = xdpyinfo_ok, timeout: float = 30, tries: int = 5) -> Iterator[str]:
    """Start Xvfb on a free display number (from ``first`` on), wait until ``ready(display)`` is true, yield
    ``":N"``, and stop the server afterwards. A server that exits at once (another one took the number
    between the check and the start) is retried on the next free number, ``tries`` times in all."""
    for _ in range(tries):
        display = f":{free_display(first)}"
        proc = subprocess.Popen(["Xvfb", display, "-screen", "0", screen, "-nolisten", "tcp", *extra],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and not ready(display):
            if time.monotonic() > deadline:
                proc.terminate()
                proc.wait(10)
                raise AssertionError(f"Xvfb {display} did not answer within {timeout:.0f} s")
            time.sleep(0.05)
        if proc.poll() is None:
            break
    else:
        raise AssertionError(f"Xvfb did not start ({tries} tries)")
    try:
        yield display
    finally:
        stop_process(proc)
