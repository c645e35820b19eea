"""Crashes: the app killed outright, and the server killed under the app."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.node.demo_swarm import ensure_demo_model, launcher_config
from farnode_desktop.core.node.supervisor import RestartPolicy, Supervisor
from farnode_desktop.core.settings import Settings
from tests.support import REPO
from tests.support.ports import port_is_free
from tests.support.processes import group_members
from tests.support.wait import wait_until

pytestmark = pytest.mark.engine
HERE = Path(__file__).resolve().parent


def test_engine_dies_with_the_app(engine_paths, free_port):
    """SIGKILL to the app: the launcher sees its control pipe close, stops the server cleanly, and every
    engine process (server, handlers, DHT, p2pd, the demo client and its p2pd) is gone within 15 s."""
    app = subprocess.Popen([sys.executable, str(HERE / "app_process.py"), str(free_port)],
                           stdout=subprocess.PIPE, text=True, env=os.environ.copy(), cwd=str(REPO))
    try:
        line = app.stdout.readline()
        info = json.loads(line)
        assert "error" not in info, info
        groups = [info["launcher"], info["traffic"]]
        assert all(group_members(g) for g in groups)
    finally:
        app.kill()
        app.wait()
        app.stdout.close()
    assert wait_until(lambda: not any(group_members(g) for g in groups), 15), \
        [(p.pid, p.name()) for g in groups for p in group_members(g)]
    assert port_is_free(free_port)


def test_server_crash_restarts_then_holds(engine_paths, engine, bus, free_port):
    events: list[C.NodeEvent] = []
    bus.subscribe("node.event", lambda _t, e: events.append(e))
    sup = Supervisor(engine, bus, log_dir=engine_paths.log_dir, run_dir=engine_paths.run_dir,
                     policy=RestartPolicy(delays_s=(0.5, 1.0), max_crashes=3, window_s=300))
    settings = Settings()
    settings.network.port = free_port
    cfg = launcher_config(settings, engine_paths, model_path=ensure_demo_model(engine_paths, engine))
    try:
        sup.start(cfg)
        assert sup.wait_for(C.ONLINE, 120).state == C.ONLINE
        first = sup.pid
        os.kill(first, signal.SIGKILL)  # the server's main process dies; its children are orphaned
        assert sup.wait_for(C.RESTARTING, 10).state == C.RESTARTING
        assert sup.wait_for(C.ONLINE, 120).state == C.ONLINE  # restarted by itself, on the same port
        assert sup.pid != first and not group_members(first)  # the dead run's DHT and p2pd were removed
        # Two more crashes within the window: on hold, with a message, and no more restarts.
        for _ in range(2):
            os.kill(sup.pid, signal.SIGKILL)
            assert sup.wait_for({C.RESTARTING, C.HELD}, 10).state in (C.RESTARTING, C.HELD)
            if sup.state.state == C.RESTARTING:
                assert sup.wait_for({C.STARTING, C.MEASURING, C.JOINING, C.LOADING, C.ONLINE}, 10)
                assert wait_until(lambda: sup.pid is not None, 10)
        held = sup.wait_for(C.HELD, 10)
        assert held.state == C.HELD
        assert "crashed 3 times" in held.message and "Press Start" in held.message
        kinds = [e.kind for e in events]
        assert kinds.count("crash") == 3 and kinds.count("restart") == 2 and kinds[-1] == "hold"
        assert sup.pid is None and port_is_free(free_port)
    finally:
        sup.close()


def test_leftovers_of_a_killed_run_are_removed(engine_paths, engine, bus, free_port):
    """The app and the launcher both SIGKILLed (nothing could clean up): the next start finds the orphaned
    DHT/p2pd through the pid file, removes them and starts on the same port."""
    app = subprocess.Popen([sys.executable, str(HERE / "app_process.py"), str(free_port)],
                           stdout=subprocess.PIPE, text=True, env=os.environ.copy(), cwd=str(REPO))
    try:
        info = json.loads(app.stdout.readline())
        assert "error" not in info, info
        pgid, traffic = info["launcher"], info["traffic"]
    finally:
        app.kill()  # first the app (so nothing of it can clean up), then at once the launcher
        app.wait()
        app.stdout.close()
    os.kill(pgid, signal.SIGKILL)
    assert wait_until(lambda: len(group_members(pgid)) >= 1, 5)
    assert not port_is_free(free_port)  # the orphaned p2pd still holds the port
    fresh = Supervisor(engine, bus, node_id=info["node_id"], log_dir=engine_paths.log_dir,
                       run_dir=engine_paths.run_dir)
    try:
        # The demo client sees its control pipe close and leaves by itself, even with a request cut off.
        assert wait_until(lambda: not group_members(traffic), 20), [p.name() for p in group_members(traffic)]
        assert fresh.cleanup_leftovers() >= 1
        assert wait_until(lambda: not group_members(pgid), 5)
        settings = Settings()
        settings.network.port = free_port
        fresh.start(launcher_config(settings, engine_paths, model_path=ensure_demo_model(engine_paths, engine)))
        assert fresh.wait_for(C.ONLINE, 120).state == C.ONLINE
    finally:
        fresh.close()
        for group in (pgid, traffic):  # whatever a failed assertion above left behind
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
