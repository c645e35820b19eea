"""Stop says "Stopping" at once, whatever the node was doing: the faces hear it before the slow parts of a stop
(the set-up's unwinding, the demo traffic's and the servers' stops), and a paused node (no server whose stop
would say it) ends in Stopped too. The controller runs a real process that speaks the launcher's protocol
(fake_launcher.py) through the native runtime."""

from __future__ import annotations

import sys
import threading

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core import topics as T
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.controller import NodeController, ServerSpec
from farnode_desktop.core.node.demo_swarm import TrafficGenerator
from farnode_desktop.core.node.runtimes.base import NativeRuntime
from farnode_desktop.core.node.supervisor import Supervisor
from tests.support import REPO

FAKE = "tests.core.node.fake_launcher"


@pytest.fixture
def node(app_paths):
    bus = EventBus()
    ctl = NodeController(app_paths, bus)
    sup = Supervisor(ctl.engine, bus, log_dir=app_paths.log_dir, run_dir=app_paths.run_dir,
                     runtime=NativeRuntime(sys.executable, REPO), launcher=FAKE)
    ctl.supervisor.close()
    ctl.supervisor, ctl.supervisors = sup, {"main": sup}
    ctl.traffic = TrafficGenerator(sup.runtime, bus, app_paths.log_dir)
    heard: list[str] = []
    bus.subscribe(T.NODE_OVERALL_STATE, lambda _t, st: heard.append(st.state))
    yield ctl, heard
    ctl.close()


def _online(ctl: NodeController) -> None:
    ctl._user_wants_running = True  # what start() sets before the engine set-up it would run here
    ctl._start_specs([ServerSpec("main", {"model": "fake", "port": 0})])
    assert ctl.supervisor.wait_for(C.ONLINE, 10).state == C.ONLINE


def test_stop_of_an_online_node_says_stopping_before_anything_slow(node):
    ctl, heard = node
    _online(ctl)
    seen_at_stopping: list[bool] = []
    # What the faces hear first, and whether the set-up cancel (the first slow step) had begun by then.
    ctl.bus.subscribe(T.NODE_STATE, lambda _t, st: seen_at_stopping.append(ctl._setup_cancel.is_set())
                      if st.state == C.STOPPING else None)
    heard.clear()
    assert ctl.stop().state == C.STOPPED
    assert heard[0] == C.STOPPING and heard[-1] == C.STOPPED
    assert seen_at_stopping and seen_at_stopping[0] is False


def test_stop_of_a_paused_node_says_stopping_then_stopped(node):
    ctl, heard = node
    _online(ctl)
    ctl.pause("Paused by you until you resume")
    assert ctl.state.state == C.PAUSED and heard[-1] == C.PAUSED
    heard.clear()
    done = threading.Event()
    threading.Thread(target=lambda: (ctl.stop(), done.set()), daemon=True).start()
    assert done.wait(20)
    assert heard == [C.STOPPING, C.STOPPED]  # the old stop said nothing: the window kept showing "Paused"
    assert ctl.state.state == C.STOPPED


def test_stop_of_a_stopped_node_says_nothing(node):
    ctl, heard = node
    heard.clear()
    assert ctl.stop().state == C.STOPPED
    assert heard == []


@pytest.mark.engine
def test_the_first_starts_demo_model_is_said_not_hidden_in_setting_up_the_engine(app_paths):
    """After the wizard set the engine up, the first Start still spends seconds in PROVISIONING: not a
    verification (the ready engine's marker answers at once) but the demo model being made, once. The
    progress says so; the next start has nothing to say."""
    ctl = NodeController(app_paths, EventBus())
    try:
        if not ctl.engine.is_ready():
            pytest.skip("the engine environment is not set up (scripts/test.sh sets FARNODE_ENGINE_ROOT)")
        steps: list[str] = []
        ctl.prepare(lambda p: steps.append(p.step))
        assert steps[-1].startswith("making the demo model (first start only")
        steps.clear()
        ctl.prepare(lambda p: steps.append(p.step))
        assert not [s for s in steps if "demo model" in s]
    finally:
        ctl.close()
