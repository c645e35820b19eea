"""The data folder's instance lock between real processes: the second is refused with the holder's pid, the
lock dies with its holder however it exits, and the node processes it started never inherit it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from farnode_desktop.core.instance import AlreadyRunning, InstanceLock

REPO = Path(__file__).resolve().parents[2]

HOLDER = r"""
import subprocess, sys, time
from farnode_desktop.core.instance import InstanceLock
lock = InstanceLock(sys.argv[1])
lock.acquire(sys.argv[2])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # like an engine process
print(child.pid, flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def holder(tmp_path):
    procs = []

    def start(face: str = "headless") -> tuple[subprocess.Popen, int]:
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run"), face], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
        child = int(p.stdout.readline())
        procs.append((p, child))
        return p, child

    yield start
    for p, child in procs:
        for pid in (p.pid, child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait()
        p.stdin.close()
        p.stdout.close()


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path, holder):
    proc, _ = holder("window")
    lock = InstanceLock(tmp_path / "run")
    with pytest.raises(AlreadyRunning) as err:
        lock.acquire("headless")
    assert err.value.holder.pid == proc.pid and err.value.holder.face == "window"
    assert f"process {proc.pid}" in err.value.message and "the FarNode window" in err.value.message
    assert lock.holder().pid == proc.pid
    assert not lock.held

    proc.stdin.write("\n")  # the holder lets go
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"
    assert lock.holder() is None
    lock.acquire("headless")
    try:
        assert lock.holder().pid == os.getpid() and lock.holder().face == "headless"
        record = json.loads((tmp_path / "run" / "instance.lock").read_text())
        assert record["pid"] == os.getpid()
    finally:
        lock.release()


def test_the_lock_dies_with_a_killed_holder_not_with_its_children(tmp_path, holder):
    proc, child = holder("headless")
    assert InstanceLock(tmp_path / "run").holder().pid == proc.pid
    proc.kill()  # no clean-up at all
    proc.wait()
    assert psutil.pid_exists(child)  # its "engine" process lives on, and does not hold the lock
    lock = InstanceLock(tmp_path / "run")
    assert lock.holder() is None
    lock.acquire("window")
    lock.release()


def test_two_locks_in_one_process_conflict_too(tmp_path):
    first, second = InstanceLock(tmp_path / "run"), InstanceLock(tmp_path / "run")
    first.acquire("window")
    try:
        with pytest.raises(AlreadyRunning) as err:
            second.acquire("window")
        assert err.value.holder.pid == os.getpid()
    finally:
        first.release()
    second.acquire("window")
    second.release()



LOOKER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)  # what holder() does to look, only slower: take the free lock, drop it
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("looking", flush=True)
time.sleep(0.3)
fcntl.flock(fd, fcntl.LOCK_UN)
"""


def test_a_start_after_a_crash_is_not_refused_by_a_process_that_only_looks(tmp_path, holder):
    """After a crash the lock file still names the dead app. A start (acquire) that meets the lock taken for an
    instant by another process's holder() probe (a `status`, a second launch looking) waits for it and takes
    the lock: it must not report the dead pid as "already running"; holder() must not name it either."""
    proc, _child = holder("window")
    proc.kill()  # the crash: its record stays in the lock file
    proc.wait()
    path = tmp_path / "run" / "instance.lock"
    assert json.loads(path.read_bytes())["pid"] == proc.pid
    looker = subprocess.Popen([sys.executable, "-c", LOOKER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert looker.stdout.readline() == "looking\n"
        assert InstanceLock(tmp_path / "run").holder() is None  # a dead record is nobody
        lock = InstanceLock(tmp_path / "run")
        lock.acquire("headless")  # the old code: AlreadyRunning naming the dead pid
        assert InstanceLock(tmp_path / "run").holder().pid == os.getpid()
        lock.release()
    finally:
        looker.wait()
        looker.stdout.close()


@pytest.mark.parametrize("seconds", [30, -30])
def test_the_holder_is_still_named_after_the_wall_clock_stepped(tmp_path, holder, clock_step, seconds):
    """A clock step while the app runs (NTP, a VM resumed) moved psutil's create_time of the holder past the start
    it had recorded: `status` and a second launch found the folder held by nobody (a CI run met it)."""
    proc, _child = holder("window")
    clock_step(seconds)
    found = InstanceLock(tmp_path / "run").holder()
    assert found is not None and found.pid == proc.pid and found.face == "window"


def test_the_record_of_an_older_version_is_read_by_its_start_time(tmp_path, holder):
    """A holder of an older version wrote no start mark: it is known by the wall clock, and a live process that
    started after the record's time (a reused pid) is still nobody."""
    proc, _child = holder("headless")
    path = tmp_path / "run" / "instance.lock"
    record = json.loads(path.read_bytes())
    assert record.pop("mark")
    path.write_text(json.dumps(record))  # (the holder's lock is on the open file; its content is this record)
    assert InstanceLock(tmp_path / "run").holder().pid == proc.pid
    path.write_text(json.dumps(dict(record, started=record["started"] - 60)))
    assert InstanceLock(tmp_path / "run").holder() is None
