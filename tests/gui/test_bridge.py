"""The task runner: results and errors reach the GUI thread; a delivered task leaves nothing behind (the
window runs a few every few seconds for weeks); its worker threads are few, steady, and end with it."""

from __future__ import annotations

import gc
import logging
import threading
import weakref

import pytest

from farnode_desktop.gui.bridge import TaskRunner


class _Callback:
    def __init__(self, into: list) -> None:
        self.into = into

    def __call__(self, value) -> None:
        self.into.append((value, threading.current_thread() is threading.main_thread()))


def test_results_and_errors_are_delivered_on_the_gui_thread(qtbot):
    runner = TaskRunner()
    got, errors, default = [], [], []
    runner.default_error = lambda exc, tb: default.append((str(exc), "Traceback" in tb))
    runner.run(lambda: 6 * 7, _Callback(got))
    runner.run(lambda: 1 / 0, None, lambda exc, tb: errors.append((type(exc), "ZeroDivisionError" in tb,
                                                                   threading.current_thread().name)))

    def fails():
        raise RuntimeError("the RPC did not answer")

    runner.run(fails)
    qtbot.waitUntil(lambda: runner.pending == 0, timeout=10_000)
    assert got == [(42, True)]
    assert errors == [(ZeroDivisionError, True, threading.main_thread().name)]
    assert default == [("the RPC did not answer", True)]
    assert runner.wait(1000) and runner.running == 0
    runner.close()


def test_a_delivered_task_leaves_nothing_alive(qtbot):
    """(Each task used to have its own Qt object for its signals, kept alive with the task's callbacks by the
    connection: ~4.4 kB a task for the app's life.)"""
    runner = TaskRunner(threads=3)
    callbacks, results = [], []
    for i in range(600):
        cb = _Callback(results)
        callbacks.append(weakref.ref(cb))
        runner.run(lambda i=i: i, cb)
        del cb
    qtbot.waitUntil(lambda: runner.pending == 0, timeout=30_000)
    assert sorted(v for v, _ in results) == list(range(600))
    gc.collect()
    assert sum(ref() is not None for ref in callbacks) == 0
    assert 1 <= len(runner.threads) <= 3  # steady: started as work came, at most the pool's size
    runner.close()


def test_close_ends_the_threads_and_a_later_task_is_not_run(qtbot, caplog):
    caplog.set_level(logging.INFO, logger="farnode_desktop.gui.bridge")
    runner = TaskRunner(threads=2)
    started = threading.Event()
    release = threading.Event()
    runner.run(lambda: (started.set(), release.wait(10))[-1], lambda _r: None)
    assert started.wait(10)
    assert not runner.wait(100)  # still running: says so
    mine = runner.threads
    runner.close()
    runner.run(lambda: pytest.fail("run after close"))
    assert "not run" in caplog.text
    release.set()
    assert runner.wait(10_000)
    for t in mine:
        t.join(10)
        assert not t.is_alive()
    qtbot.waitUntil(lambda: runner.pending == 0, timeout=10_000)  # the task given before close was delivered
