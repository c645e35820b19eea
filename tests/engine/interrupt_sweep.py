"""The interrupt sweep of tests/engine/test_interrupts.py, run in a child process (python -m
tests.engine.interrupt_sweep always|launcher|storm): a lock an interrupt broke may be one of the standard
library's own (threading's thread registry) and hang every later thread start, so a broken run must not be the
test process. Prints one JSON object: how often the handler raised, and what was left broken."""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import signal
import sys
import threading
import time

from farnode_desktop.engine import interrupts
from farnode_desktop.engine.launcher import Launcher


def _operations():
    """Fresh objects, the calls FarMesh's start makes on them, and a check of what they must be afterwards."""
    ev, cond_q, mev = threading.Event(), queue.Queue(), mp.Event()
    worker = threading.Thread(target=time.sleep, args=(0.001,))

    def run():
        ev.set()
        ev.wait(0.01)
        ev.clear()
        ev.wait(0.0005)  # times out: Condition.wait, its lock released and restored
        cond_q.put(1)
        cond_q.get()
        try:
            cond_q.get(timeout=0.0005)
        except queue.Empty:
            pass
        mev.set()
        mev.wait(0.01)
        mev.clear()
        mev.wait(0.0005)
        worker.start()
        worker.join()

    def broken() -> list[str]:
        found = []
        if ev._cond._lock.locked():
            found.append("an Event's lock left held")
        if ev._cond._waiters:
            found.append("a waiter left on an Event's condition (a later notify wakes nobody)")
        if cond_q.mutex.locked():
            found.append("a Queue's lock left held")
        if cond_q.not_empty._waiters:
            found.append("a waiter left on a Queue's condition")
        if not mev._cond._lock.acquire(False):
            found.append("a multiprocessing Event's lock left held")
        else:
            mev._cond._lock.release()
        sleeping, woken = mev._cond._sleeping_count._semlock._get_value(), mev._cond._woken_count._semlock._get_value()
        if sleeping != woken:
            found.append("a multiprocessing Condition counting a sleeper that never wakes (its notify would hang)")
        if worker.ident is not None:
            worker.join(0.5)  # it sleeps 1 ms
            if worker.is_alive():
                found.append("a finished thread still taken for alive (its join hangs)")
        return found

    return run, broken


def _raise_at(position: int, handler) -> tuple[bool, list[str], list[str]]:
    """Run the operations with ``handler(frame)`` called before the position-th instruction executed inside the
    standard library's lock code. Returns (handler raised, exceptions other than the interrupt, broken)."""
    run, broken = _operations()
    seen, fired, raised = 0, False, False

    def tracer(frame, event, _arg):
        nonlocal seen, fired, raised
        if frame.f_code.co_filename not in interrupts.LOCK_MODULE_FILES:
            return None
        frame.f_trace_opcodes = True
        if event == "opcode" and not fired:
            if seen == position:
                fired = True
                try:
                    handler(frame)
                except KeyboardInterrupt:
                    raised = True
                    raise
            seen += 1
        return tracer

    errors = []
    sys.settrace(tracer)
    try:
        run()
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - what the interrupt turned into is the finding
        errors.append(repr(exc))
    finally:
        sys.settrace(None)
    return raised, errors, broken()


def _count_positions() -> int:
    positions = 0

    def tracer(frame, event, _arg):
        nonlocal positions
        if frame.f_code.co_filename not in interrupts.LOCK_MODULE_FILES:
            return None
        frame.f_trace_opcodes = True
        if event == "opcode":
            positions += 1
        return tracer

    run, _ = _operations()
    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    return positions


def _sweep(handler, enough=lambda problems: False) -> tuple[int, list[str]]:
    raised_at, problems = 0, []
    for position in range(_count_positions()):
        raised, errors, broken = _raise_at(position, handler)
        raised_at += raised
        problems += [f"at instruction {position}: {p}" for p in errors + broken]
        if enough(problems):
            break
    return raised_at, problems


def _always(_frame):
    raise KeyboardInterrupt


def _launchers_handler():
    """The handler the launcher installs, while the server starts (the phase where it interrupts)."""
    launcher = Launcher(None, {})
    launcher.in_engine = True

    def handler(frame):
        launcher.interrupted = False  # each run is one stop
        launcher.on_signal(signal.SIGINT, frame)

    return handler


def _held(problems):
    return any("left held" in p for p in problems)


def _other(problems):
    return any("RuntimeError" in p or "waiter" in p or "sleeper" in p for p in problems)


def storm(seconds: float = 2.0) -> tuple[int, list[str]]:
    """Real signals: another thread aims SIGINT at the main thread every 0.2 ms while it runs the
    operations; the launcher's handler decides."""
    launcher = Launcher(None, {})
    launcher.in_engine = True
    raised, armed = 0, False

    def handler(_signum, frame):
        if armed:  # only inside the operations: the harness's own code is not what is checked
            launcher.interrupted = False
            launcher.on_signal(signal.SIGINT, frame)

    main, stop = threading.main_thread().ident, threading.Event()

    def aim():
        while not stop.wait(0.0002):
            signal.pthread_kill(main, signal.SIGINT)

    signal.signal(signal.SIGINT, handler)
    problems = []
    aiming = threading.Thread(target=aim, daemon=True)
    aiming.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run, broken = _operations()
        try:
            armed = True
            run()
        except KeyboardInterrupt:
            raised += 1
        except Exception as exc:  # noqa: BLE001
            problems.append(repr(exc))
        finally:
            armed = False
        problems += broken()
    stop.set()
    return raised, problems


def main(mode: str) -> None:
    if mode == "always":  # stops once both kinds of damage are shown
        raised, problems = _sweep(_always, enough=lambda problems: _held(problems) and _other(problems))
    elif mode == "launcher":
        raised, problems = _sweep(_launchers_handler())
    else:
        raised, problems = storm()
    print(json.dumps({"raised": raised, "problems": problems}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
