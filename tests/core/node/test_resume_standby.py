"""A pause keeps a warm standby launcher (the real one, in the engine environment) and the resume runs on it: the
engine's imports were done during the pause. A real node on the local swarm's demo model, through the app's core.
"""

from __future__ import annotations

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.settings import Settings
from farnode_desktop.engine import protocol as P
from tests.support.ports import port_is_free
from tests.support.processes import group_members
from tests.support.wait import wait_until

pytestmark = pytest.mark.engine

ONLINE_S = 180


def _phases(timeline: list[dict], *, ahead: bool) -> list[str]:
    return [p["phase"] for p in timeline if bool(p.get("ahead")) == ahead]


def test_a_pause_keeps_a_standby_that_the_resume_runs_on_and_a_stop_ends_it(engine_paths, bus, free_port):
    settings = Settings()
    settings.network.port = free_port
    node = NodeController(engine_paths, bus, settings=settings)
    node.demo_traffic = False
    sup = node.supervisor
    try:
        node.start()
        assert sup.wait_for({C.ONLINE, C.FAILED, C.HELD}, ONLINE_S).state == C.ONLINE, node.state
        first = sup.timeline
        assert _phases(first, ahead=False) == ["prepare", *P.PHASES], first
        served_by = sup.pid

        node.pause("a game started")
        assert node.state.state == C.PAUSED
        assert sup.has_standby
        standby = sup._standby.proc.pid
        # The standby holds nothing of a server: no DHT process, no p2pd, no handler, and the port is free.
        assert wait_until(lambda: [p.pid for p in group_members(standby)] == [standby], 10)
        assert port_is_free(free_port) and not group_members(served_by)
        # Its imports are done during the pause (they take seconds): wait until its log says it waits.
        assert wait_until(lambda: _standby_ready(standby), 120), "the standby did not finish its imports"

        node.resume()
        assert sup.wait_for({C.ONLINE, C.FAILED, C.HELD}, ONLINE_S).state == C.ONLINE, node.state
        assert sup.pid == standby and not sup.has_standby
        timeline = sup.timeline
        assert _phases(timeline, ahead=True) == [P.StartPhase.PROCESS, P.StartPhase.IMPORTS], timeline
        assert _phases(timeline, ahead=False) == ["prepare", *P.PHASES[2:]], timeline
        imports = next(p for p in timeline if p["phase"] == P.StartPhase.IMPORTS)
        load = next(p for p in timeline if p["phase"] == P.StartPhase.MODEL_LOAD)
        assert imports["at_s"] < 0  # finished before the resume was ordered
        assert load["seconds"] < imports["seconds"]  # the engine's late imports (peft) were among them

        node.pause("again")
        again = sup._standby.proc.pid
        final = node.stop()  # the user's stop while paused: no standby is kept
        assert final.state == C.STOPPED and not sup.has_standby
        assert wait_until(lambda: not group_members(again) and not group_members(standby), 10)
    finally:
        node.close()
    assert not sup.has_standby and port_is_free(free_port)
    assert "standby launcher (pid" in sup.log_path.read_text()


def _standby_ready(pid: int) -> bool:
    """Whether the standby launcher waits for its start order: its main thread blocks reading the control pipe
    (fd 0's duplicate) after the imports, which shows as a sleeping process with no CPU time being added."""
    import psutil

    try:
        p = psutil.Process(pid)
        before = sum(p.cpu_times()[:2])
        import time

        time.sleep(0.5)
        return p.status() == psutil.STATUS_SLEEPING and sum(p.cpu_times()[:2]) - before < 0.01
    except psutil.Error:
        return False


def test_the_real_standby_exits_cleanly_when_its_control_pipe_closes(engine_paths, engine, bus):
    """What the app's death does to a waiting standby: end of file on its control pipe, before any start order.
    It exits by itself with code 0 and reports no failure (it had nothing to start)."""
    from farnode_desktop.core.node.supervisor import Supervisor

    sup = Supervisor(engine, bus, log_dir=engine_paths.log_dir, run_dir=engine_paths.run_dir)
    try:
        assert sup.keep_standby({})
        sb = sup._standby
        assert wait_until(lambda: _standby_ready(sb.proc.pid), 120), "the standby did not finish its imports"
        sb.proc.stdin.close()
        assert sb.proc.wait(20) == P.ExitCode.OK
        events = list(P.iter_events(sb.event_source))
        assert [e.phase for e in events if isinstance(e, P.Phase)] == [P.StartPhase.PROCESS, P.StartPhase.IMPORTS]
        assert all(e.ahead for e in events if isinstance(e, P.Phase))
        assert not any(isinstance(e, P.Failed | P.Hello) for e in events), events
        assert not group_members(sb.proc.pid)
    finally:
        sup.close()
