"""Start marks: how records (the instance lock, pid files, the local chain's) know a process again, with real
processes; whatever the wall clock did since it started, and never a later process given the same pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from farnode_desktop.core.process_tree import start_mark, started_as


def test_a_mark_is_the_same_for_the_same_process_and_differs_for_others():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine, theirs = start_mark(os.getpid()), start_mark(child.pid)
        assert mine and theirs and mine != theirs
        assert start_mark(os.getpid()) == mine and start_mark(child.pid) == theirs
        assert started_as(child.pid, theirs) and started_as(os.getpid(), mine)
        assert not started_as(child.pid, mine)  # the pid is another process's than the mark's
    finally:
        child.kill()
        child.wait()
    assert start_mark(child.pid) is None and not started_as(child.pid, theirs)


def test_a_zombie_is_not_the_process_it_was():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    mark = start_mark(child.pid)
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert not started_as(child.pid, mark)
    finally:
        child.wait()


@pytest.mark.parametrize("seconds", [30, -30])
def test_a_mark_stays_when_the_wall_clock_steps(clock_step, seconds):
    """psutil's create_time moves with the clock (what made a running window look dead to `status` and to the
    single-instance check in CI); the mark does not."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mark, created = start_mark(child.pid), psutil.Process(child.pid).create_time()
        clock_step(seconds)
        assert psutil.Process(child.pid).create_time() == pytest.approx(created + seconds, abs=0.02)
        assert start_mark(child.pid) == mark and started_as(child.pid, mark)
    finally:
        child.kill()
        child.wait()
