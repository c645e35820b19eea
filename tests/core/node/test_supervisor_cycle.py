"""The supervisor's life cycle in seconds: start, crash, restart with back-off, hold, stop; with a real process
that speaks the launcher's protocol (fake_launcher.py) run through the native runtime, beside the tests with
the real engine (tests/engine). Also with the POSIX-only calls taken away, as on Windows."""

from __future__ import annotations

import os
import sys
import time

import psutil
import pytest

from farnode_desktop.core import process_tree
from farnode_desktop.core import snapshots as C
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.node.runtimes.base import NativeRuntime
from farnode_desktop.core.node.supervisor import RestartPolicy, Supervisor
from tests.support import REPO
from tests.support.processes import descendants, with_cmdline
from tests.support.wait import wait_until

FAKE = "tests.core.node.fake_launcher"


@pytest.fixture
def no_posix_groups(monkeypatch):
    """This OS as Windows shows it to the supervisor: no process groups (os.killpg, os.getpgid, os.setsid)."""
    for name in ("killpg", "getpgid", "setsid"):
        monkeypatch.delattr(os, name, raising=False)
    assert not process_tree.has_process_groups()


@pytest.fixture
def make_supervisor(app_paths):
    made: list[Supervisor] = []

    def make(**kw) -> tuple[Supervisor, list[C.NodeEvent]]:
        bus = EventBus()
        events: list[C.NodeEvent] = []
        bus.subscribe("node.event", lambda _t, e: events.append(e))
        sup = Supervisor(EngineEnv(app_paths, "cpu"), bus, log_dir=app_paths.log_dir, run_dir=app_paths.run_dir,
                         runtime=NativeRuntime(sys.executable, REPO), launcher=FAKE, **kw)
        made.append(sup)
        return sup, events

    yield make
    for sup in made:
        sup.close()


def _tree_pids(sup: Supervisor) -> set[int]:
    run = sup._run
    return {p.pid for p in run.tree.members()} if run else set()


def _alive(pids: set[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def test_start_online_stop(make_supervisor):
    sup, events = make_supervisor()
    sup.start({"model": "fake", "port": 0, "children": 2})
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE
    assert sup.peer.peer_id == "12D3KooWFake" and sup.stats().blocks == (0, 1)
    assert wait_until(lambda: sup.stats().inference_tokens == 7, 5)
    pids = _tree_pids(sup)
    assert len(pids) == 3  # the launcher and its two helpers
    assert sup.stop().state == C.STOPPED
    assert _alive(pids) == []
    assert [e.kind for e in events] == ["start", "online", "stop"]


def test_crashes_restart_with_back_off_then_hold(make_supervisor):
    sup, events = make_supervisor(policy=RestartPolicy(delays_s=(0.2, 0.4), max_crashes=3, window_s=60))
    seen: list[str] = []
    sup.bus.subscribe("node.state", lambda _t, s: seen.append(s.state))
    sup.start({"model": "fake", "port": 0, "crash_after_s": 0.2, "children": 1})
    assert sup.wait_for(C.HELD, 20).state == C.HELD, seen
    held = sup.state
    assert "crashed 3 times" in held.message and "Press Start" in held.message
    kinds = [e.kind for e in events]
    assert kinds.count("crash") == 3 and kinds.count("restart") == 2 and kinds[-1] == "hold"
    crash_delays = [e.message for e in events if e.kind == "crash"]
    assert all("exit code 1" in m for m in crash_delays)
    restarting = [s for s in seen if s == C.RESTARTING]
    assert len(restarting) == 2 and seen.count(C.ONLINE) == 3
    assert sup.pid is None
    # every crashed run's helpers were removed with it
    assert wait_until(lambda: not with_cmdline("time.sleep(600)", descendants()), 5)
    sup.reset_hold()
    assert sup.state.state == C.STOPPED


def test_a_start_failure_is_not_retried(make_supervisor):
    sup, events = make_supervisor(policy=RestartPolicy(delays_s=(0.1,), max_crashes=3, window_s=60))
    sup.start({"model": "fake", "port": 4321, "fail": "port_in_use"})
    st = sup.wait_for({C.FAILED, C.HELD}, 10)
    assert st.state == C.FAILED and st.category == "port_in_use" and "Port 4321 is already used" in st.message
    time.sleep(0.3)
    assert sup.state.state == C.FAILED and [e.kind for e in events] == ["start", "error"]


def test_start_exit_stop_cycle_without_posix_process_groups(make_supervisor, no_posix_groups):
    """Windows has no os.killpg/os.getpgid/os.setsid: the supervisor and the stop helper work all the same
    (a psutil process tree), through a start, a crash and its restart, and a stop."""
    sup, events = make_supervisor(policy=RestartPolicy(delays_s=(0.1,), max_crashes=3, window_s=60))
    sup.start({"model": "fake", "port": 0, "crash_after_s": 0.3, "children": 2})
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE
    first = _tree_pids(sup)
    assert len(first) == 3 and not sup._run.tree.grouped
    assert sup.wait_for(C.RESTARTING, 10).state == C.RESTARTING  # it crashed, leaving its helpers behind
    assert wait_until(lambda: _alive(first) == [], 5), _alive(first)  # ... which the stop helper removed
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE
    second = _tree_pids(sup)
    assert sup.stop().state == C.STOPPED
    assert _alive(second) == []
    assert [e.kind for e in events][:3] == ["start", "online", "crash"] and events[-1].kind == "stop"


def test_the_stop_helper_without_posix_process_groups(no_posix_groups, tmp_path):
    """A tree three deep, whose middle process dies first: the grandchild is still found and killed."""
    script = ("import subprocess, sys, time;"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
              "time.sleep(600)")
    proc, tree = process_tree.spawn([sys.executable, "-c", script])
    try:
        assert wait_until(lambda: len(tree.members()) == 2, 10)
        middle = [p for p in tree.members() if p.pid != proc.pid]
        assert len(middle) == 1
        proc.kill()
        proc.wait()
        assert [p.pid for p in tree.members()] == [middle[0].pid]  # orphaned, still part of the tree
        assert tree.kill() == 1
        assert not tree.alive()
    finally:
        proc.kill()
        proc.wait()
    done = process_tree.run([sys.executable, "-c", script], timeout=60, cancel=lambda: True)
    assert done.cancelled


@pytest.mark.parametrize("grouped", [True, False], ids=["process-groups", "no-process-groups"])
def test_a_tree_killed_while_it_starts_children_leaves_none(grouped, monkeypatch):
    """A process that keeps starting children is killed mid-way, five times: not one child outlives it. Without
    process groups a child forked between the scan and the kill of its parent was re-parented and missed (it
    kept run()'s output pipe open, and a cancelled pip or probe waited for ever: CI, 2 cores); the stop helper
    now suspends the tree, scanning until no new member appears, before it kills it."""
    if not grouped:
        for name in ("killpg", "getpgid", "setsid"):
            monkeypatch.delattr(os, name, raising=False)
    for _ in range(5):
        mark = f"farnode-test-{os.getpid()}-{time.monotonic_ns()}"
        script = ("import subprocess, sys, time\n"
                  "for _ in range(60):\n"
                  f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {mark!r}])\n"
                  "time.sleep(60)")
        proc, tree = process_tree.spawn([sys.executable, "-c", script])
        try:
            assert wait_until(lambda tree=tree: len(tree.members()) >= 4, 30)
            tree.kill()
            proc.wait(10)
            time.sleep(0.3)  # a child started in the last instant would be running by now
            left = with_cmdline(mark)
        finally:
            proc.kill()
            proc.wait()
        for p in left:
            p.kill()
        assert left == [], f"{len(left)} children outlived the kill of their tree"


def test_run_kills_the_whole_tree_when_cancelled():
    script = ("import subprocess, sys, time;"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
              "print('started', flush=True); time.sleep(600)")
    t0 = time.monotonic()
    flag = {"go": False}
    seen_tree: list[int] = []

    def cancel() -> bool:
        if not flag["go"]:
            kids = with_cmdline("time.sleep(600)", descendants())
            if len(kids) >= 2:
                seen_tree.extend(p.pid for p in kids)
                flag["go"] = True
        return flag["go"] or time.monotonic() - t0 > 30
    done = process_tree.run([sys.executable, "-c", script], timeout=60, cancel=cancel)
    assert done.cancelled and b"started" in done.output
    assert len(seen_tree) == 2 and _alive(set(seen_tree)) == []
    timed = process_tree.run([sys.executable, "-c", "import time; time.sleep(600)"], timeout=0.3)
    assert timed.timed_out and timed.returncode == 124
    assert process_tree.run(["/nonexistent/program"], timeout=5).returncode == 127


def test_the_wallet_binding_is_signed_for_the_reported_peer_and_handed_over(make_supervisor):
    """The supervisor asks for the binding of the peer id the launcher reported and writes it on the control
    pipe; the launcher's side parses it (the engine's own channel) and reports it announced. A restart after a
    crash signs again for the new run; without a wallet (None) nothing is sent."""
    sup, _events = make_supervisor(policy=RestartPolicy(delays_s=(0.1,)))
    asked: list[str] = []

    def signer(peer_id: str) -> tuple[str, str]:
        asked.append(peer_id)
        return f"FarMesh node binding\nPeer ID: {peer_id}\nChain ID: 31337", f"0xsig{len(asked)}"

    sup.start({"model": "fake", "port": 0, "crash_after_s": 1.5}, binding=signer)
    assert wait_until(lambda: sup.binding is not None and sup.binding.stored, 10), sup.binding
    assert asked == ["12D3KooWFake"]
    assert "fake launcher: binding for 12D3KooWFake signed 0xsig1" in sup.log_path.read_text()
    assert wait_until(lambda: len(asked) == 2 and sup.binding is not None and sup.binding.stored, 15), asked
    assert sup.stop().state == C.STOPPED

    sup.start({"model": "fake", "port": 0}, binding=lambda _peer: None)
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE
    time.sleep(0.5)
    assert sup.binding is None
    assert sup.stop().state == C.STOPPED


def test_a_binding_that_cannot_be_signed_is_reported_and_the_node_serves_on(make_supervisor):
    sup, _events = make_supervisor()

    def signer(_peer_id: str) -> tuple[str, str]:
        raise RuntimeError("the keyring is locked")

    sup.start({"model": "fake", "port": 0}, binding=signer)
    assert wait_until(lambda: sup.binding is not None, 10)
    assert not sup.binding.stored and "the keyring is locked" in sup.binding.error
    # the binding is asked for when the server reports its peer id, which comes before it is online
    assert sup.wait_for(C.ONLINE, 10).state == C.ONLINE
    assert sup.stop().state == C.STOPPED
