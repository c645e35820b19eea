"""The policy runner: observations from providers and telemetry, supervisor callbacks, events on the bus."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.gpu.inventory import GpuProcess
from farnode_desktop.core.policies import rules as P
from farnode_desktop.core.policies.platform.base import IdleReading
from farnode_desktop.core.policies.platform.linux import ProcSteamDetector
from farnode_desktop.core.policies.rules import PolicyRules
from farnode_desktop.core.policies.runner import DECISION_TOPIC, PolicyInputs, PolicyRunner
from farnode_desktop.core.settings import PolicySettings
from farnode_desktop.core.snapshots import GpuTelemetry, NodeEvent
from tests.core.policies.vclock import VirtualClock, local_time

QUIET = PolicySettings(pause_for_gpu_programs=False, pause_for_steam_games=False, temperature_pause=False,
                       min_run_s=0, min_pause_s=0, drain_s=15)


class Supervisor:
    """Records the calls the runner makes (the shape the real supervisor offers)."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple] = []
        self.fail = fail
        self.changed = threading.Event()

    def pause(self, reason: str, drain_s: float) -> None:
        self.calls.append(("pause", reason, drain_s))
        self.changed.set()
        if self.fail:
            raise RuntimeError("the server did not answer")

    def resume(self, reason: str) -> None:
        self.calls.append(("resume", reason))
        self.changed.set()


class Recorder:
    def __init__(self, bus: EventBus):
        self.events: list[NodeEvent] = []
        self.decisions: list[P.Decision] = []
        bus.subscribe("node.event", lambda _t, e: self.events.append(e))
        bus.subscribe(DECISION_TOPIC, lambda _t, d: self.decisions.append(d))


def make(settings: PolicySettings, inputs: PolicyInputs, clock=None, **kw):
    clock = clock or VirtualClock()
    bus, sup = EventBus(), Supervisor(kw.pop("fail", False))
    rec = Recorder(bus)
    rules = PolicyRules(settings, clock=clock, local_time=local_time)
    runner = PolicyRunner(rules, bus, pause=sup.pause, resume=sup.resume, inputs=inputs, clock=clock, **kw)
    return runner, sup, rec, bus, clock


def test_gpu_program_pauses_and_resumes_with_events():
    procs: list[GpuProcess] = []
    own = [111]
    runner, sup, rec, _bus, clock = make(
        replace(QUIET, pause_for_gpu_programs=True),
        PolicyInputs(gpu_processes=lambda: list(procs), own_pids=lambda: own))
    assert runner.tick_once().run and sup.calls == []
    procs.append(GpuProcess(111, "python3", 20000.0, 100.0))  # the node itself: never a reason
    assert runner.tick_once().run and sup.calls == []
    procs.append(GpuProcess(4242, "eldenring.exe", 5000.0, 90.0))
    clock.advance(1)
    d = runner.tick_once()
    assert not d.run and d.changed
    assert sup.calls == [("pause", "eldenring.exe (pid 4242) is using the GPU (4.9 GiB, 90 %)", 15.0)]
    ev = rec.events[-1]
    assert (ev.kind, ev.node_id, ev.time) == ("pause", "main", clock())
    assert ev.message.startswith("Paused: eldenring.exe") and ev.data["codes"] == [P.GPU_PROGRAM]
    assert ev.data["drain_s"] == 15.0
    clock.advance(1)
    runner.tick_once()  # unchanged: no new call, no new event
    assert len(sup.calls) == 1 and len(rec.events) == 1
    procs.pop()
    clock.advance(1)
    assert runner.tick_once().run
    assert sup.calls[-1][0] == "resume" and "another program using the GPU" in sup.calls[-1][1]
    assert [e.kind for e in rec.events] == ["pause", "resume"]
    assert [d.run for d in rec.decisions] == [True, False, True]  # published on change only


def test_temperature_from_telemetry_of_contributing_gpus_only():
    runner, sup, rec, bus, clock = make(replace(QUIET, temperature_pause=True),
                                        PolicyInputs(contributing_gpus=lambda: ["GPU-a"]))

    def sample(temp_a, temp_b, age=0.0, lost=False):
        bus.publish("gpu.telemetry", (
            GpuTelemetry(time=clock() - age, index=0, uuid="GPU-a", temperature_c=temp_a, power_w=150.0,
                         lost=lost),
            GpuTelemetry(time=clock() - age, index=1, uuid="GPU-b", temperature_c=temp_b, power_w=50.0)))

    sample(70, 99)  # the hot GPU does not contribute
    assert runner.observe().gpu_temp_c == 70 and runner.observe().power_w == 150.0
    assert runner.tick_once().run
    sample(90, 40)
    d = runner.tick_once()
    assert not d.run and sup.calls == [("pause", d.reasons[0], 0.0)]  # safety: no draining
    sample(60, 40, age=60)  # stale samples count as unknown: still hot
    assert runner.observe().gpu_temp_c is None and not runner.tick_once().run
    sample(60, 40, lost=True)
    assert runner.observe().gpu_temp_c is None
    sample(60, 40)
    assert runner.tick_once().run


def test_profit_uses_telemetry_power_and_the_earnings_estimate():
    earnings = [0.5]
    runner, sup, _rec, bus, clock = make(
        replace(QUIET, profit_pause=True, electricity_price_per_kwh=0.4),
        PolicyInputs(earnings_per_hour=lambda: earnings[0]))
    bus.publish("gpu.telemetry", (GpuTelemetry(time=clock(), index=0, uuid="GPU-a", power_w=300.0),))
    assert runner.tick_once().run  # cost 0.12/h
    earnings[0] = 0.1
    assert not runner.tick_once().run
    assert "below the electricity cost 0.12/h" in sup.calls[-1][1]


def test_listed_programs_are_read_at_most_every_interval():
    calls = []
    names = ["bash", "Blender"]

    def process_names():
        calls.append(1)
        return list(names)

    runner, sup, _rec, _bus, clock = make(
        replace(QUIET, pause_for_programs=True, programs=["blender.exe"]),
        PolicyInputs(process_names=process_names, process_names_interval_s=3))
    assert not runner.tick_once().run and len(calls) == 1
    names.remove("Blender")
    clock.advance(2.9)
    assert not runner.tick_once().run and len(calls) == 1
    clock.advance(0.1)
    assert runner.tick_once().run and len(calls) == 2


def test_idle_provider_reason_reaches_the_decision():
    class NoIdle:
        def idle_seconds(self):
            return IdleReading(None, "idle time is not available on this system: a Wayland session ...")

    runner, sup, *_ = make(replace(QUIET, idle_only=True), PolicyInputs(idle=NoIdle()))
    assert not runner.tick_once().run
    assert "a Wayland session" in sup.calls[0][1]
    runner2, sup2, *_ = make(replace(QUIET, idle_only=True), PolicyInputs())  # no provider at all
    assert not runner2.tick_once().run and "not available on this system" in sup2.calls[0][1]


def test_failures_are_contained(caplog):
    def broken():
        raise OSError("driver gone")

    runner, sup, rec, *_ = make(replace(QUIET, pause_for_gpu_programs=True, pause_for_steam_games=True),
                                PolicyInputs(gpu_processes=broken), fail=True)
    assert runner.tick_once().run  # a failing provider reads as "nothing"
    assert runner.tick_once().run
    assert sum("gpu_processes failed" in r.message for r in caplog.records) == 1  # logged once
    runner.manual_pause(None)
    d = runner.tick_once()
    assert not d.run and sup.calls[0][0] == "pause"
    assert [e.kind for e in rec.events] == ["error", "pause"]
    assert rec.events[1].data["earliest_change_at"] is None  # paused until resumed: no end
    assert "the server did not answer" in rec.events[0].message


def test_thread_acts_at_once_on_manual_actions():
    runner, sup, rec, *_ = make(replace(QUIET, min_run_s=3600, min_pause_s=3600), PolicyInputs(),
                                clock=time.time, interval_s=30)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while runner.last_decision is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner.last_decision.run
        runner.manual_pause(900)
        assert sup.changed.wait(5), "the manual pause did not wake the runner"
        assert sup.calls[-1][0] == "pause" and "Paused by you until" in sup.calls[-1][1]
        sup.changed.clear()
        runner.manual_resume()
        assert sup.changed.wait(5)
        assert sup.calls[-1] == ("resume", "Resumed by you")
        sup.changed.clear()
        runner.update_settings(replace(QUIET, idle_only=True, min_run_s=3600))
        assert sup.changed.wait(5) and sup.calls[-1][0] == "pause"
    finally:
        runner.stop()
    assert not any(t.name == "farnode-policies" for t in threading.enumerate())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_real_steam_game_pauses_and_resumes_the_node():
    """Real processes, the real detectors and the runner's own thread: a 'game' started under Steam's
    environment pauses the node within a second; after it exits the node resumes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("Steam")}
    runner, sup, rec, *_ = make(
        replace(QUIET, pause_for_steam_games=True),
        PolicyInputs(steam=ProcSteamDetector(min_interval_s=0)),
        clock=time.time, interval_s=0.05)
    runner.start()
    try:
        time.sleep(0.2)
        assert sup.calls == []
        game = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env=dict(env, SteamAppId="292030"))
        t0 = time.monotonic()
        assert sup.changed.wait(10)
        paused_after = time.monotonic() - t0
        assert sup.calls[0][0] == "pause" and "Steam game 292030 is running" in sup.calls[0][1]
        assert paused_after < 5
        sup.changed.clear()
        game.kill()
        game.wait()
        assert sup.changed.wait(10)
        assert sup.calls[-1][0] == "resume"
        assert [e.kind for e in rec.events] == ["pause", "resume"]
    finally:
        runner.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11")
def test_idle_only_with_the_real_x11_idle_time(xvfb):
    """Idle for 1.2 s (idle_minutes=0.02) lets the node run; moving the pointer pauses it again."""
    import shutil

    from farnode_desktop.core.policies.platform.x11 import X11IdleTime

    if not shutil.which("xdotool"):
        pytest.skip("xdotool is not installed (scripts/system-deps.sh installs it): cannot move the pointer")

    def move(x):
        subprocess.run(["xdotool", "mousemove", str(x), "10"], check=True, timeout=10,
                       env=dict(os.environ, DISPLAY=xvfb))

    move(1)
    runner, sup, rec, *_ = make(replace(QUIET, idle_only=True, idle_minutes=0.02),
                                PolicyInputs(idle=X11IdleTime(xvfb)), clock=time.time)
    d = runner.tick_once()
    assert not d.run and "You are using the computer" in d.reasons[0]
    deadline = time.monotonic() + 10
    while not runner.tick_once().run and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runner.last_decision.run and sup.calls[-1][0] == "resume"
    move(300)
    assert not runner.tick_once().run
    assert [c[0] for c in sup.calls] == ["pause", "resume", "pause"]


def test_inputs_for_this_system():
    own = [os.getpid() + 1]
    inputs = PolicyInputs.for_this_system(own_pids=lambda: own)
    runner, sup, *_ = make(replace(QUIET, pause_for_steam_games=True, pause_for_programs=True,
                                   programs=["no-such-program-xyz"]), inputs, clock=time.time)
    obs = runner.observe()
    assert obs.steam_game is None and obs.running_programs == ()
    assert runner.tick_once().run and sup.calls == []
