"""The start's timeline (phase events -> Supervisor.timeline, the node log, ``status --json``) and the warm standby
launcher (Supervisor.keep_standby), with the fast stand-in launcher (fake_launcher.py) run as a real process."""

from __future__ import annotations

import sys
import time

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.node.runtimes.base import NativeRuntime
from farnode_desktop.core.node.supervisor import PREPARE_PHASE, Supervisor
from farnode_desktop.engine import protocol as P
from tests.support import REPO
from tests.support.processes import pid_gone
from tests.support.wait import wait_until

FAKE = "tests.core.node.fake_launcher"
SERVER_PHASES = [P.StartPhase.ENGINE_SETUP, P.StartPhase.DHT_JOIN, P.StartPhase.THROUGHPUT,
                 P.StartPhase.BLOCK_CHOICE, P.StartPhase.MODEL_LOAD, P.StartPhase.ANNOUNCE]


@pytest.fixture
def sup(app_paths):
    s = Supervisor(EngineEnv(app_paths, "cpu"), EventBus(), log_dir=app_paths.log_dir, run_dir=app_paths.run_dir,
                   runtime=NativeRuntime(sys.executable, REPO), launcher=FAKE)
    yield s
    s.close()


def test_a_start_records_every_phase_in_order_in_the_timeline_and_the_log(sup):
    ordered = time.time() - 0.5  # the app's own work (its checks, the plan) took half a second before the call
    sup.start({"model": "fake", "port": 0, "online_after_s": 0.3}, ordered_at=ordered)
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE
    timeline = sup.timeline
    assert [p["phase"] for p in timeline] == [PREPARE_PHASE, *P.PHASES], timeline
    assert not any(p.get("ahead") for p in timeline)
    assert timeline[0]["seconds"] >= 0.5
    load = next(p for p in timeline if p["phase"] == P.StartPhase.MODEL_LOAD)
    assert load["seconds"] >= 0.3  # the stand-in "loads" for online_after_s
    ends = [p["at_s"] for p in timeline]
    assert ends == sorted(ends) and ends[0] >= 0.5
    # contiguous phases: their seconds add up to the time from the order to the last one's end
    assert sum(p["seconds"] for p in timeline) == pytest.approx(ends[-1], abs=0.05)
    log = sup.log_path.read_text()
    assert all(f"start phase {p['phase']}" in log for p in timeline), log
    assert "start: online" in log
    # Phases the engine reports after it is online (a rebalance re-runs the block choice) are not the start's.
    sup._on_event(sup._run, P.Phase(t=time.time(), phase=P.StartPhase.BLOCK_CHOICE, seconds=9.0))
    assert sup.timeline == timeline


def test_a_standby_takes_the_next_start_with_its_imports_done_ahead(sup):
    assert sup.keep_standby({})
    standby_pid = sup._standby.proc.pid
    assert sup.keep_standby({}) and sup._standby.proc.pid == standby_pid  # one standby, kept
    time.sleep(0.6)  # the stand-in's imports (0.3 s) are over: the standby waits for its start order
    assert sup.has_standby
    sup.start({"model": "fake", "port": 0})
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE
    assert sup.pid == standby_pid and not sup.has_standby
    timeline = sup.timeline
    assert [p["phase"] for p in timeline] == list(P.PHASES)
    ahead = [p["phase"] for p in timeline if p.get("ahead")]
    assert ahead == [P.StartPhase.PROCESS, P.StartPhase.IMPORTS]
    imports = timeline[1]
    assert imports["seconds"] >= 0.3 and imports["at_s"] < 0  # done before the order, not waited for
    assert timeline[2]["at_s"] < 0.3  # the wait for the order is no phase: the start went on at once
    assert "standby launcher (pid" in sup.log_path.read_text()
    assert sup.stop().state == C.STOPPED
    assert wait_until(lambda: pid_gone(standby_pid), 5)


def test_a_standby_for_another_environment_is_replaced_and_a_dead_one_is_not_used(sup):
    assert sup.keep_standby({"CUDA_VISIBLE_DEVICES": "1"})
    other = sup._standby.proc.pid
    sup.start({"model": "fake", "port": 0}, {"CUDA_VISIBLE_DEVICES": "0"})
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE
    assert sup.pid != other and wait_until(lambda: pid_gone(other), 5)  # ended, not left behind
    assert sup.stop().state == C.STOPPED

    assert sup.keep_standby()  # the last start's environment
    dead = sup._standby.proc
    dead.kill()
    dead.wait()
    assert not sup.has_standby
    sup.start({"model": "fake", "port": 0}, {"CUDA_VISIBLE_DEVICES": "0"})
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE and sup.pid != dead.pid


def test_a_standby_exits_by_itself_when_its_control_pipe_closes_and_close_ends_it(sup):
    assert sup.keep_standby({})
    proc = sup._standby.proc
    proc.stdin.close()  # what the app's death does to it
    assert proc.wait(10) == P.ExitCode.OK
    assert not sup.has_standby
    sup.drop_standby()

    assert sup.keep_standby({})
    pid = sup._standby.proc.pid
    sup.close()
    assert pid_gone(pid) and not sup.has_standby


def test_status_json_carries_the_start_timeline(sup, app_paths):
    from types import SimpleNamespace

    from farnode_desktop.core.report import status_report
    from farnode_desktop.core.settings import Settings

    sup.start({"model": "fake", "port": 0})
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE
    node = SimpleNamespace(state=sup.state, stats=sup.stats, supervisor=sup, settings=Settings(), is_local=False,
                           plan=None, traffic=None)
    earnings = SimpleNamespace(configured=lambda: False)
    report = status_report(face="headless", data_dir=app_paths.data_dir, node=node, reachability={},
                           decision=None, earnings=earnings)
    assert [p["phase"] for p in report["start_timeline"]] == list(P.PHASES)
    assert all(isinstance(p["seconds"], float) for p in report["start_timeline"])


@pytest.fixture
def ctl(app_paths):
    from farnode_desktop.core.node.controller import NodeController
    from farnode_desktop.core.node.demo_swarm import TrafficGenerator

    bus = EventBus()
    node = NodeController(app_paths, bus)
    s = Supervisor(node.engine, bus, log_dir=app_paths.log_dir, run_dir=app_paths.run_dir,
                   runtime=NativeRuntime(sys.executable, REPO), launcher=FAKE)
    node.supervisor.close()
    node.supervisor, node.supervisors = s, {"main": s}
    node.traffic = TrafficGenerator(s.runtime, bus, app_paths.log_dir)
    yield node
    node.close()


def test_the_controller_keeps_a_standby_while_paused_only(ctl, monkeypatch):
    from farnode_desktop.core.node.controller import ServerSpec

    specs = [ServerSpec("main", {"model": "fake", "port": 0})]
    monkeypatch.setattr(ctl, "server_specs", lambda: specs)  # the plan needs an engine; the stand-in needs none
    ctl._user_wants_running = True  # what start() sets before the engine set-up it would run here
    ctl._start_specs(specs)
    sup = ctl.supervisor
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE and not sup.has_standby

    ctl.pause("a game started")
    assert ctl.state.state == C.PAUSED and sup.has_standby
    standby = sup._standby.proc.pid
    ctl.resume()
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE and sup.pid == standby
    assert sup.timeline[0]["phase"] == PREPARE_PHASE  # the resume's order counts from resume()

    ctl.warm_standby = False
    ctl.pause("without a standby")
    assert ctl.state.state == C.PAUSED and not sup.has_standby
    ctl.warm_standby = True
    ctl.resume()
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE

    ctl.pause("again")
    kept = sup._standby.proc.pid
    assert ctl.stop().state == C.STOPPED and not sup.has_standby
    assert wait_until(lambda: pid_gone(kept), 5)

    ctl._user_wants_running = True
    ctl._start_specs(specs)
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE
    ctl.pause("and the app closes")
    kept = sup._standby.proc.pid
    ctl.close()
    assert pid_gone(kept)


def test_the_last_start_in_words_for_the_status_command():
    from farnode_desktop.app.status_cli import status_rows
    from farnode_desktop.core.status import start_timeline_text

    assert start_timeline_text([]) == ""
    fresh = [{"phase": "prepare", "seconds": 0.0, "at_s": 0.0}, {"phase": "imports", "seconds": 3.77, "at_s": 3.8},
             {"phase": "dht_join", "seconds": 0.3, "at_s": 4.1}, {"phase": "announce", "seconds": 0.6, "at_s": 4.7}]
    assert start_timeline_text(fresh) == "online 4.7 s after the order; longest: imports 3.8 s"
    resumed = [{"phase": "process", "seconds": 0.1, "at_s": -20.0, "ahead": True},
               {"phase": "imports", "seconds": 3.3, "at_s": -16.6, "ahead": True},
               {"phase": "dht_join", "seconds": 0.3, "at_s": 0.5}, {"phase": "announce", "seconds": 0.13, "at_s": 0.75}]
    assert start_timeline_text(resumed) == ("online 0.8 s after the order; longest: dht_join 0.3 s (process, imports "
                                            "3.4 s done ahead by the standby)")
    assert start_timeline_text(fresh[:3]) == "in progress: dht_join done 4.1 s after the order"
    rows = dict(status_rows({"start_timeline": resumed}))
    assert rows["Last start"].startswith("online 0.8 s after the order")
    assert "Last start" not in dict(status_rows({}))
