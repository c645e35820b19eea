"""Fixtures shared by every test area. Area-specific fixtures live in the conftest.py of the area's folder (the
folders mirror the package's); the shared harness is the package tests/support, whose fixture modules are
registered here as plugins, so that no test imports another folder's conftest.

A test fails when it leaves threads or processes behind (``_nothing_left_behind``; the GUI tests' conftest
adds Qt timers), and when something contacted an address outside this computer. Every test runs under two
checks for the latter (see :class:`NetworkWatch`):
- Python code, in this process and in the engine processes of a local swarm, goes through the audit hook of
  ``farnode_desktop.engine.loopback``: a contact outside loopback is refused and recorded in the file named by
  ``FARNODE_EGRESS_LOG``;
- every process this one started is sampled: a connection to an address outside loopback, or a p2pd started
  with NAT port mapping, AutoNAT or relays on (or listening or bootstrapping outside loopback), is recorded.
A test during which either check recorded something fails.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from farnode_desktop.core.paths import AppPaths
from farnode_desktop.engine.loopback import EGRESS_LOG_ENV, guard
from tests.support import REPO
from tests.support.network_watch import NetworkWatch
from tests.support.processes import cmdline, descendants, kill_and_reap, reap_zombies, settle_popens
from tests.support.wait import load_factor, scaled

pytest_plugins = [
    "tests.support.engine",  # engine_root, engine_paths, engine, bus, free_port
    "tests.support.secret_service",  # secret_service, keystore
    "tests.support.chain",  # anvil, chain, proxy_factory
    "tests.support.gpus",  # make_nvml
]
ARTIFACTS = REPO / "test-artifacts"


def pytest_configure(config):
    """Run in parallel (pytest-xdist, ``scripts/test.sh`` does it), each worker gets an X display of its own with
    its own system tray: windows, tray icons and focus of two workers' tests never meet. The keyring (a
    private Secret Service per session: tests/support/secret_service.py), ports (free ones) and data folders
    (temporary ones) are already private to each worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not os.environ.get("DISPLAY"):
        return
    import contextlib
    import shutil
    import subprocess

    from tests.support.display import private_xvfb
    from tests.support.processes import stop_process

    stack = contextlib.ExitStack()
    display = stack.enter_context(private_xvfb(first=300 + 20 * int(worker[2:] or 0)))
    os.environ["DISPLAY"] = display
    if shutil.which("trayer"):
        tray = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
                                 "--height", "24"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(stop_process, tray)
    config.add_cleanup(stack.close)


@pytest.fixture
def farnode_home(tmp_path, monkeypatch) -> Path:
    """A private FARNODE_HOME: config, data, logs and cache of the app under a temporary folder."""
    home = tmp_path / "farnode-home"
    monkeypatch.setenv("FARNODE_HOME", str(home))
    return home


@pytest.fixture
def app_paths(farnode_home) -> AppPaths:
    return AppPaths.default().ensure()


ENGINE_ARCHIVE = "farmesh-75a473e.tar.gz"  # `git archive` of the commit the engine lock pins


@pytest.fixture
def clock_step(monkeypatch):
    """Step the wall clock as psutil sees it on Linux (NTP, a VM resumed): its boot time, read from /proc/stat at
    each call, is the wall clock now less the time since boot, so a step moves it and every create_time with it."""
    if not sys.platform.startswith("linux"):
        pytest.skip("psutil reads the boot time from the wall clock on Linux")
    from psutil import _pslinux

    real = _pslinux.boot_time

    def step(seconds: float) -> None:
        monkeypatch.setattr(_pslinux, "boot_time", lambda: real() + seconds)
    return step


@pytest.fixture(scope="session")
def engine_archive() -> Path:
    """The engine's source archive for offline installs: FARNODE_ENGINE_SOURCE (scripts/test.sh sets it), else
    shared/engine/ beside the repository (where CI lays shared/)."""
    path = Path(os.environ.get("FARNODE_ENGINE_SOURCE") or REPO.parent / "shared" / "engine" / ENGINE_ARCHIVE)
    if not path.is_file():
        pytest.fail(f"The FarMesh engine archive {path} is missing: put shared/ beside the repository "
                    f"(shared/engine/{ENGINE_ARCHIVE}) or set FARNODE_ENGINE_SOURCE to that archive.")
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY"))


# ---------------------------------------------------------------------------------------------- nothing leaves
@pytest.fixture(scope="session")
def network_watch(tmp_path_factory):
    """The session's egress record (a file the loopback guards append to) and its process watch."""
    record = tmp_path_factory.mktemp("egress") / "egress.jsonl"
    record.touch()
    os.environ[EGRESS_LOG_ENV] = str(record)  # inherited by every process the tests start
    guard(who="pytest")  # this process: refuse and record
    watch = NetworkWatch().start()
    yield record, watch
    watch.stop()


@pytest.fixture(autouse=True)
def _nothing_leaves_this_computer(network_watch):
    record, watch = network_watch
    offset = record.stat().st_size
    n_outside, n_bad = len(watch.outside), len(watch.bad_p2pd)
    fixed_before = set(watch.fixed_ports)
    yield
    watch.sample()  # the last moment of the test too
    attempts = [json.loads(line) for line in record.read_text()[offset:].splitlines() if line.strip()]
    problems = [f"{a['who']} (pid {a['pid']}) tried {a['destination']} ({a['event']})\n{a['stack']}"
                for a in attempts]
    problems += watch.outside[n_outside:] + watch.bad_p2pd[n_bad:] + sorted(watch.fixed_ports - fixed_before)
    if problems:
        pytest.fail("this test contacted (or tried to contact) an address outside this computer, or served on "
                    "a fixed default port:\n"
                    + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _node_waits_scale_with_load():
    """The tests' waits on a node (``Supervisor.wait_for``, ``TrafficGenerator.wait_for``) stretch their
    timeouts with the machine's load, as ``wait_until`` does: a test on a busy machine waits longer instead of
    failing. The methods themselves are the real ones; only the seconds given to them are scaled."""
    from farnode_desktop.core.node.demo_swarm import TrafficGenerator
    from farnode_desktop.core.node.supervisor import Supervisor

    patch = pytest.MonkeyPatch()
    for cls in (Supervisor, TrafficGenerator):
        def scaled_wait(self, what, timeout, _original=cls.wait_for):
            return _original(self, what, scaled(timeout))

        patch.setattr(cls, "wait_for", scaled_wait)
    yield
    patch.undo()


# ---------------------------------------------------------------------------------------------- left behind
LEFTOVER_GRACE_S = 5.0  # what a test started gets this long to end after the test (and its fixtures) ended


def _threads() -> dict[int, threading.Thread]:
    """Python's threads. Threads it did not start (Qt's pool threads that ran Python code) appear as dummies
    that never end: the GUI tests' conftest checks Qt's pool itself."""
    return {t.ident: t for t in threading.enumerate()
            if t.ident is not None and not isinstance(t, threading._DummyThread)}


def _children() -> dict[int, psutil.Process]:
    return {p.pid: p for p in descendants()}


def _forked_by(p: psutil.Process, older: dict[int, psutil.Process]) -> bool:
    """Whether ``p`` descends from a process that was already running before the test (a server of a
    module-scoped network forking request handlers when it moves to other blocks): not the test's doing."""
    me = os.getpid()
    try:
        for parent in p.parents():
            if parent.pid == me:
                return False
            if parent.pid in older:
                return True
    except psutil.Error:
        return False
    return False


def _unraisable_of_this_test(config) -> list[str]:
    """What was raised where nobody could catch it (a ``__del__``: "subprocess ... is still running") during
    this test. pytest reports it after the test's phase, but only when the phase did not fail: after a
    failing test it would be blamed on the next one. Read here, it stays with the test that caused it."""
    from _pytest.unraisableexception import collect_unraisable  # the plugin's own drain (no public API)

    try:
        collect_unraisable(config)
    except Exception as e:  # one warning raised as an error, or a group of them
        found = getattr(e, "exceptions", [e])
        return [f"unraisable: {x.__cause__!r}" if x.__cause__ else f"unraisable: {x}" for x in found]
    return []


@pytest.fixture(autouse=True)
def _nothing_left_behind(network_watch, request):
    """Threads and processes a test started must be gone when it ends (its fixtures' teardown included:
    this fixture is set up first and torn down last). What is left is reported, and processes are killed and
    reaped (no zombie for a later scan) so that the next test starts clean: one failing test never makes
    another fail (tests/test_conftest.py plants a failing test's leftovers to show it)."""
    threads_before, children_before = _threads(), _children()
    yield
    deadline = time.monotonic() + LEFTOVER_GRACE_S * load_factor()
    while True:
        threads = [t for ident, t in _threads().items() if ident not in threads_before and t.is_alive()]
        procs = [p for pid, p in _children().items() if pid not in children_before
                 and not _forked_by(p, children_before)]
        if not (threads or procs) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    problems = [f"thread {t.name!r} ({'daemon' if t.daemon else 'not daemon'})" for t in threads]
    problems += [f"process {p.pid} {cmdline(p)[:160]}" for p in procs]
    kill_and_reap(procs)
    ended = {p.pid for p in procs} | set(reap_zombies(exclude=children_before))
    if ended:
        settle_popens(ended)
    # Files, sockets and subprocesses the test dropped unclosed warn now, in this test (warnings are errors);
    # after the kill, so that a subprocess object of a leftover warns here once, not in a later test.
    gc.collect()
    problems += _unraisable_of_this_test(request.config)
    if problems:
        pytest.fail("this test left things running:\n  " + "\n  ".join(problems), pytrace=False)
