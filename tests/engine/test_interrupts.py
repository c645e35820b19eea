"""A KeyboardInterrupt raised in the launcher's main thread never breaks a lock of the standard library.

The launcher stops a starting server by interrupting its main thread, wherever that thread is: often inside
threading's or multiprocessing's lock code (FarMesh's DHT calls, events and queues). The sweep
(interrupt_sweep.py, in a child process) raises an interrupt at every instruction of that code in turn (opcode
tracing: the exception lands exactly where a signal handler's would) and checks the locks, waiters and counts
afterwards: raising everywhere breaks them (the hazard is real), the launcher's handler never does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from farnode_desktop.engine import interrupts
from farnode_desktop.engine.launcher import Launcher

ROOT = Path(__file__).resolve().parents[2]


def _sweep(mode: str) -> dict:
    try:
        out = subprocess.run([sys.executable, "-m", "tests.engine.interrupt_sweep", mode], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {mode} sweep hung: an interrupt left a lock held that a later call waits on")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_blocking_waits_are_found_in_this_python():
    lines = {code.co_qualname: found for code, found in interrupts.INTERRUPTIBLE_LINES.items()}
    assert lines["Condition.wait"], lines  # threading's and multiprocessing's, found in their source
    assert all(found for found in lines.values()), lines
    assert len(interrupts.LOCK_MODULE_FILES) == 2


def test_raising_everywhere_in_the_lock_code_breaks_it():
    """The hazard the launcher avoids: some instructions of that code leave a lock held, a waiter behind or a
    count wrong when an interrupt lands on them (without this the sweep below would prove nothing)."""
    problems = _sweep("always")["problems"]
    assert any("left held" in p for p in problems), problems
    assert any("RuntimeError" in p or "waiter" in p or "sleeper" in p for p in problems), problems


def test_the_launchers_handler_never_breaks_the_lock_code():
    """The launcher's handler while a server starts: at every instruction of the lock code it raises only
    where nothing is left behind, and it does raise while the thread is blocked in a wait (so a stop still
    interrupts a start that waits on its DHT)."""
    result = _sweep("launcher")
    assert result["problems"] == []
    assert result["raised"] > 10  # inside Condition.wait's and the join's blocking calls


def test_real_signals_storming_the_lock_code_break_nothing():
    """The same with real signals, aimed at the main thread every 0.2 ms for 2 s while it runs that code."""
    result = _sweep("storm")
    assert result["problems"] == []
    assert result["raised"] > 20


@pytest.mark.parametrize("phase", [Launcher.SERVING, Launcher.LEAVING])
def test_a_serving_or_leaving_server_is_never_interrupted(phase):
    """Serving, the stop event stops the server; leaving, its shutdown must run to the end."""
    launcher = Launcher(None, {})
    launcher.in_engine = True
    launcher.phase = phase
    launcher.on_signal(signal.SIGINT, sys._getframe())  # returns: no KeyboardInterrupt
    assert not launcher.interrupted
    launcher.phase = Launcher.STARTING
    with pytest.raises(KeyboardInterrupt):
        launcher.on_signal(signal.SIGINT, sys._getframe())
