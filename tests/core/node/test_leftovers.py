"""Leftover clean-up acts only on node processes whose recorded app is dead (real processes, no engine):
a node that a live app still runs is left alone, whoever's pid file names it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.node.supervisor import Supervisor
from farnode_desktop.core.process_tree import start_mark


@pytest.fixture
def group():
    """A real process group standing for a node's launcher (a python process leading its own session)."""
    procs = []

    def start() -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
        procs.append(p)
        # Popen returns when the exec has begun (the close-on-exec pipe closes), which is before the kernel has
        # set the new command line: until then /proc shows none (or the parent's), and the clean-up (which kills only processes
        # whose command line is an engine's) would pass this one by. A real leftover has run for a while.
        deadline = time.monotonic() + 10
        while "time.sleep(120)" not in psutil.Process(p.pid).cmdline() and time.monotonic() < deadline:
            time.sleep(0.005)
        return p

    yield start
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


@pytest.fixture
def supervisor(app_paths):
    sup = Supervisor(EngineEnv(app_paths, "cpu"), EventBus(), log_dir=app_paths.log_dir, run_dir=app_paths.run_dir)
    yield sup
    sup.close()


def _record(sup: Supervisor, node: subprocess.Popen, app_pid: int, app_started: float | None, **more) -> None:
    sup.run_dir.mkdir(parents=True, exist_ok=True)
    sup.pid_file.write_text(json.dumps({"pid": node.pid, "pgid": node.pid, "app_pid": app_pid,
                                        "app_started": app_started, **more}))


def test_a_live_apps_node_is_left_alone(supervisor, group):
    app = group()  # the app that started the node: alive
    node = group()
    _record(supervisor, node, app.pid, psutil.Process(app.pid).create_time())
    assert supervisor.cleanup_leftovers() == 0
    assert node.poll() is None and supervisor.pid_file.exists()

    _record(supervisor, node, os.getpid(), psutil.Process().create_time())  # this very process: alive
    assert supervisor.cleanup_leftovers() == 0
    assert node.poll() is None


def test_a_live_app_is_known_by_its_start_mark_after_the_wall_clock_stepped(supervisor, group, clock_step):
    """What this version records (app_mark): a clock step since the app started (which moves psutil's create_time)
    does not make the live app look dead, and its node is left alone; a reused pid is still not the app."""
    app = group()
    node = group()
    _record(supervisor, node, app.pid, psutil.Process(app.pid).create_time(), app_mark=start_mark(app.pid))
    clock_step(-30)
    assert supervisor.cleanup_leftovers() == 0
    assert node.poll() is None and supervisor.pid_file.exists()
    other = group()
    _record(supervisor, node, other.pid, psutil.Process(other.pid).create_time(), app_mark=start_mark(app.pid))
    assert supervisor.cleanup_leftovers() == 1
    node.wait(5)  # (psutil may have reaped it already)
    assert not psutil.pid_exists(node.pid)


def test_a_dead_apps_node_is_removed(supervisor, group):
    app = group()
    started = psutil.Process(app.pid).create_time()
    node = group()
    _record(supervisor, node, app.pid, started)
    os.killpg(app.pid, signal.SIGKILL)  # the app was killed; its node lives on
    app.wait()
    assert supervisor.cleanup_leftovers() == 1
    node.wait(5)  # (psutil may have reaped it already)
    assert not psutil.pid_exists(node.pid)
    assert not supervisor.pid_file.exists()


def test_a_reused_app_pid_is_not_mistaken_for_the_app(supervisor, group):
    other = group()  # a live process that now has the recorded pid, started after the app
    node = group()
    _record(supervisor, node, other.pid, psutil.Process(other.pid).create_time() - 60)
    assert supervisor.cleanup_leftovers() == 1
    node.wait(5)  # (psutil may have reaped it already)
    assert not psutil.pid_exists(node.pid)
