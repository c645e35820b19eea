"""Ticks the policy rules once a second on its own thread and tells the supervisor to pause or resume.

Each tick gathers an :class:`~farnode_desktop.core.policies.rules.Observation` from injected providers (only
those the enabled policies need), asks the rules, and on a change calls

- ``pause(reason: str, drain_s: float)``: leave the network; ``drain_s`` is how long open inference
  sessions may still finish first (0: at once, e.g. the GPU is too hot);
- ``resume(reason: str)``: join the network again (only for nodes the user has started),

then publishes ``node.event`` :class:`~farnode_desktop.core.snapshots.NodeEvent` (kind ``pause`` /
``resume``, message = the reasons, data = codes, drain_s, earliest_change_at). Whenever the decision or
its reasons change it also publishes ``policy.decision`` with the :class:`Decision` (tray tooltip,
dashboard). The callbacks run on the runner's thread: they should hand the work over and return; a slow
callback only delays the next tick. GPU temperature and power come from the ``gpu.telemetry`` topic.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from farnode_desktop.core import topics as T
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.gpu.inventory import GpuProcess
from farnode_desktop.core.policies.platform.base import IdleTimeProvider, SteamDetector
from farnode_desktop.core.policies.rules import (
    Decision,
    Observation,
    PolicyRules,
    match_programs,
)
from farnode_desktop.core.snapshots import GpuTelemetry, NodeEvent

log = logging.getLogger(__name__)

DECISION_TOPIC = T.POLICY_DECISION
TELEMETRY_TOPIC = T.GPU_TELEMETRY
EVENT_TOPIC = T.NODE_EVENT

PauseCallback = Callable[[str, float], None]
ResumeCallback = Callable[[str], None]


def _no_pids() -> tuple[int, ...]:
    return ()


@dataclass
class PolicyInputs:
    """Where the observations come from. A provider left as None reads as "not available"."""

    idle: IdleTimeProvider | None = None
    # Processes on the GPUs (from the GPU module); the runner leaves out ``own_pids``.
    gpu_processes: Callable[[], Iterable[GpuProcess]] | None = None
    own_pids: Callable[[], Iterable[int]] = _no_pids  # the node's own processes (from the supervisor)
    process_names: Callable[[], Iterable[str]] | None = None  # names of running processes
    steam: SteamDetector | None = None
    earnings_per_hour: Callable[[], float | None] | None = None  # what running would earn per hour
    contributing_gpus: Callable[[], Iterable[str]] | None = None  # GPU UUIDs; None: every GPU
    process_names_interval_s: float = 3.0  # the process list is read at most this often
    telemetry_max_age_s: float = 10.0  # older GPU samples count as "not available"

    @classmethod
    def for_this_system(cls, *, gpu_processes: Callable[[], Iterable[GpuProcess]] | None = None,
                        own_pids: Callable[[], Iterable[int]] = _no_pids,
                        earnings_per_hour: Callable[[], float | None] | None = None,
                        contributing_gpus: Callable[[], Iterable[str]] | None = None) -> PolicyInputs:
        """This OS's idle time, process list and Steam detection, plus the app's own providers."""
        from farnode_desktop.core.policies import platform
        from farnode_desktop.core.policies.platform.process_names import running_process_names

        return cls(idle=platform.idle_time_provider(), gpu_processes=gpu_processes, own_pids=own_pids,
                   process_names=lambda: running_process_names(own_pids()),
                   steam=platform.steam_detector(exclude_pids=own_pids),
                   earnings_per_hour=earnings_per_hour, contributing_gpus=contributing_gpus)


class PolicyRunner:
    """Owns the rules; every method is thread-safe. ``clock`` gives epoch seconds."""

    def __init__(self, rules: PolicyRules, bus: EventBus, *, pause: PauseCallback, resume: ResumeCallback,
                 inputs: PolicyInputs | None = None, clock: Callable[[], float] = time.time,
                 interval_s: float = 1.0, node_id: str = "main"):
        self._rules = rules
        self._bus = bus
        self._pause_cb, self._resume_cb = pause, resume
        self._inputs = inputs or PolicyInputs()
        self._clock = clock
        self._interval_s = interval_s
        self._node_id = node_id
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._telemetry: tuple[GpuTelemetry, ...] = ()
        self._names: tuple[float, tuple[str, ...]] | None = None
        self._last: Decision | None = None
        self._failed: set[str] = set()  # providers that failed (logged once until they work again)
        self._sub = bus.subscribe(TELEMETRY_TOPIC, self._on_telemetry)

    # -- control ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="farnode-policies", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and leave the bus; the runner cannot be started again."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self._sub.close()

    def manual_pause(self, duration_s: float | None) -> None:
        """Pause for ``duration_s`` seconds or, with None, until :meth:`manual_resume`; acts at once."""
        with self._lock:
            self._rules.manual_pause(duration_s)
        self._wake.set()

    def manual_resume(self) -> None:
        with self._lock:
            self._rules.manual_resume()
        self._wake.set()

    def update_settings(self, settings: Any) -> None:
        """New :class:`PolicySettings` (already validated); they act at the next tick, without a hold."""
        with self._lock:
            self._rules.update_settings(settings)
        self._wake.set()

    @property
    def last_decision(self) -> Decision | None:
        return self._last

    # -- the loop -----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick_once()
            except Exception:  # a bug in a tick must not end the policies for the session
                log.exception("policy tick failed")
            self._wake.wait(self._interval_s)
            self._wake.clear()

    def tick_once(self) -> Decision:
        """Observe, decide, and act on a change (the thread calls this; tests may call it directly)."""
        obs = self.observe()  # outside the lock: a slow provider never blocks a manual action
        with self._lock:
            d = self._rules.tick(obs)
            prev, self._last = self._last, d
        if d.changed:
            self._act(d)
        if prev is None or (prev.run, prev.reasons, prev.pending) != (d.run, d.reasons, d.pending):
            self._bus.publish(DECISION_TOPIC, d)
        return d

    def _act(self, d: Decision) -> None:
        message = "; ".join(d.reasons)
        try:
            if d.run:
                self._resume_cb(message)
            else:
                self._pause_cb(message, d.drain_s)
        except Exception as exc:
            log.exception("the supervisor's %s callback failed", "resume" if d.run else "pause")
            self._bus.publish(EVENT_TOPIC, NodeEvent(
                time=d.time, node_id=self._node_id, kind="error",
                message=f"Could not {'resume' if d.run else 'pause'} the node: {exc}"))
        self._bus.publish(EVENT_TOPIC, NodeEvent(
            time=d.time, node_id=self._node_id, kind="resume" if d.run else "pause",
            message=message if d.run else f"Paused: {message}",
            data={"reasons": list(d.reasons), "codes": list(d.codes), "drain_s": d.drain_s,
                  "earliest_change_at": None if math.isinf(d.earliest_change_at) else d.earliest_change_at}))

    # -- observations -------------------------------------------------------------------------------------
    def _on_telemetry(self, _topic: str, payload: Any) -> None:
        if isinstance(payload, (tuple, list)):
            self._telemetry = tuple(t for t in payload if isinstance(t, GpuTelemetry))

    def _call(self, name: str, fn: Callable[[], Any]) -> Any:
        """Call a provider; a failure reads as None and is logged once (until it works again)."""
        try:
            value = fn()
        except Exception:
            if name not in self._failed:
                self._failed.add(name)
                log.exception("policy input %s failed; it counts as not available", name)
            return None
        self._failed.discard(name)
        return value

    def observe(self) -> Observation:
        s, inp, now = self._rules.settings, self._inputs, self._clock()
        idle_s, idle_reason = None, ""
        if s.idle_only:
            reading = self._call("idle", inp.idle.idle_seconds) if inp.idle else None
            if reading is None:
                idle_reason = "idle time is not available on this system"
            else:
                idle_s, idle_reason = reading.seconds, reading.reason

        procs: tuple[GpuProcess, ...] = ()
        if s.pause_for_gpu_programs and inp.gpu_processes is not None:
            own = set(self._call("own_pids", inp.own_pids) or ())
            listed = self._call("gpu_processes", inp.gpu_processes) or ()
            procs = tuple(p for p in listed if p.pid not in own)

        programs: tuple[str, ...] = ()
        if s.pause_for_programs and inp.process_names is not None and s.programs:
            last = self._names
            if last is None or not (0 <= now - last[0] < inp.process_names_interval_s):
                names = self._call("process_names", inp.process_names)
                self._names = (now, tuple(names or ()))
            programs = match_programs(self._names[1], s.programs)

        steam = None
        if s.pause_for_steam_games and inp.steam is not None:
            steam = self._call("steam", inp.steam.running_game)

        temp = power = None
        uuids = None
        if inp.contributing_gpus is not None:
            uuids = set(self._call("contributing_gpus", inp.contributing_gpus) or ())
        fresh = [t for t in self._telemetry if not t.lost and now - t.time <= inp.telemetry_max_age_s
                 and (uuids is None or not uuids or t.uuid in uuids)]
        temps = [t.temperature_c for t in fresh if t.temperature_c is not None]
        powers = [t.power_w for t in fresh if t.power_w is not None]
        temp = max(temps) if temps else None
        power = sum(powers) if powers else None

        earnings = None
        if s.profit_pause and inp.earnings_per_hour is not None:
            earnings = self._call("earnings_per_hour", inp.earnings_per_hour)

        return Observation(now=now, idle_s=idle_s, idle_unavailable_reason=idle_reason, gpu_processes=procs,
                           running_programs=programs, steam_game=steam, gpu_temp_c=temp, power_w=power,
                           earnings_per_hour=earnings)
