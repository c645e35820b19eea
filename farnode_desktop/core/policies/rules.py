"""When the node may contribute: pure policy rules, ticked once a second with an observation snapshot.

The rules decide *whether* the node should run; it never touches the node. The policy runner
(:mod:`farnode_desktop.core.policies.runner`) gathers the observations and calls the supervisor's
``pause``/``resume``; tests drive the rules directly with a virtual clock.

Policies (each on/off in :class:`~farnode_desktop.core.settings.PolicySettings`, all combinable; the node
runs only when none of them asks for a pause):

- **GPU programs**: another process uses the GPU above a memory (MiB) or utilisation (%) threshold.
- **Listed programs**: one of the executables the user listed is running.
- **Steam games**: a Steam game is running (where the platform exposes it).
- **Idle only**: the user has been idle for at least N minutes (no idle figure: paused, with the reason).
- **Schedule**: the local time is inside one of the weekly windows (``"mon-fri 22:00-07:00"``).
- **Temperature**: pause when the hottest contributing GPU reaches ``temperature_high_c``; stay paused until
  it is below ``temperature_low_c`` (hysteresis). Unknown temperature keeps the current hot/cool state.
- **Profit**: pause when the estimated earnings per hour are below power (W) / 1000 x price per kWh.
- **Manual**: paused by the user for a while or until resumed.

Anti-flapping: after a change to *running* the node keeps running at least ``min_run_s``; after a change to
*paused* it stays paused at least ``min_pause_s``. Exceptions, which act at the next tick: a manual pause, a
manual resume (it lifts the minimum pause time; other pause reasons still apply), a settings change, and the
temperature pause (safety). Resuming after a temperature pause still honours the minimum pause time.

Times are epoch seconds (``time.time()`` scale), durations seconds, temperatures °C, power W, memory MiB.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from farnode_desktop.core.gpu.inventory import GpuProcess
from farnode_desktop.core.schedule import in_windows, minute_of_week, parse_window

if TYPE_CHECKING:
    from farnode_desktop.core.settings import PolicySettings

# Machine-readable reason codes (Decision.codes, NodeEvent.data["codes"]).
MANUAL = "manual"
TEMPERATURE = "temperature"
GPU_PROGRAM = "gpu_program"
LISTED_PROGRAM = "listed_program"
STEAM_GAME = "steam_game"
NOT_IDLE = "not_idle"
SCHEDULE = "schedule"
UNPROFITABLE = "unprofitable"

_LABELS = {
    MANUAL: "your pause",
    TEMPERATURE: "the GPU temperature",
    GPU_PROGRAM: "another program using the GPU",
    LISTED_PROGRAM: "a program from your list",
    STEAM_GAME: "a Steam game",
    NOT_IDLE: "your activity",
    SCHEDULE: "the schedule",
    UNPROFITABLE: "the electricity cost",
}

Clock = Callable[[], float]
LocalTime = Callable[[float], datetime]


def system_local_time(t: float) -> datetime:
    """The system's local wall-clock time for epoch seconds ``t`` (tz-aware)."""
    return datetime.fromtimestamp(t).astimezone()


@dataclass(frozen=True)
class Observation:
    """Everything the policies look at, sampled once per tick. ``None`` means "not available"."""

    now: float  # epoch seconds
    idle_s: float | None = None  # seconds since the user's last keyboard/mouse input
    idle_unavailable_reason: str = ""  # why idle_s is None ("not available on this system ...")
    gpu_processes: tuple[GpuProcess, ...] = ()  # other processes on the contributing GPUs
    running_programs: tuple[str, ...] = ()  # the user-listed executables that are running, as listed
    steam_game: str | None = None  # running Steam game (app id or name)
    gpu_temp_c: float | None = None  # max over the contributing GPUs
    power_w: float | None = None  # power draw of the contributing GPUs now (W)
    earnings_per_hour: float | None = None  # what running would earn per hour, in the price's currency
    electricity_price_per_kwh: float | None = None  # None: the price from the settings


@dataclass(frozen=True)
class Decision:
    """The rules' answer for one tick."""

    time: float  # epoch seconds of the observation
    run: bool  # True: the node may contribute now
    reasons: tuple[str, ...]  # human-readable, for the tray tooltip, dashboard and events
    codes: tuple[str, ...]  # machine-readable reason codes of the pause reasons that apply (empty when free)
    changed: bool  # ``run`` differs from the previous decision
    # Epoch s before which ``run`` will not change by itself: the end of a minimum run/pause time or of a
    # manual pause (math.inf: paused until the user resumes); ``time`` when nothing holds it.
    earliest_change_at: float
    drain_s: float = 0.0  # on a change to paused: how long the node may finish open sessions (s)
    pending: bool = False  # the policies want the other state, but a minimum run/pause time holds this one


# ---------------------------------------------------------------------------------------------------------
# Helpers for the observation providers


def normalize_program_name(name: str) -> str:
    """``C:\\Games\\Foo.EXE`` -> ``foo``: base name, lower case, without a Windows executable suffix."""
    base = re.split(r"[\\/]", name.strip())[-1].lower()
    for suffix in (".exe", ".bat", ".cmd", ".com"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def match_programs(running_names: list[str] | tuple[str, ...] | set[str],
                   wanted: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The entries of ``wanted`` (as the user wrote them) that match a running process name."""
    running = {normalize_program_name(n) for n in running_names if n}
    return tuple(w for w in wanted if w.strip() and normalize_program_name(w) in running)


def _mib_text(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def _duration_text(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


# ---------------------------------------------------------------------------------------------------------
# The rules


class PolicyRules:
    """Decides run/pause from observations. Not thread-safe: one owner (the runner) calls it under a lock.

    ``clock`` gives "now" (epoch s) for the manual actions; :meth:`tick` uses the observation's ``now``.
    ``local_time`` maps epoch seconds to a tz-aware local datetime (schedules, clock times in messages).
    """

    def __init__(self, settings: PolicySettings, *, clock: Clock = time.time,
                 local_time: LocalTime = system_local_time):
        self._clock = clock
        self._local_time = local_time
        self._run = True  # what the supervisor was last told (it starts nodes without asking the policies)
        self._changed_at = -math.inf  # no minimum time holds the first decision
        self._hot = False
        self._manual_until: float | None = None  # math.inf: until resumed
        self._bypass_hold = False
        self._manual_resume = False
        self._running_power_w: float | None = None
        self._last_codes: tuple[str, ...] = ()
        self._windows: list[tuple[int, int]] = []
        self.update_settings(settings)
        self._bypass_hold = False

    # -- user actions -------------------------------------------------------------------------------------
    def update_settings(self, settings: PolicySettings) -> None:
        """Use new (validated) settings from the next tick on. A real change acts at once: no minimum time
        holds it. Saving unchanged settings changes nothing."""
        windows: list[tuple[int, int]] = []
        for w in settings.schedule:
            windows += parse_window(w)
        if settings != getattr(self, "settings", None):
            self._bypass_hold = True
        self.settings, self._windows = copy.deepcopy(settings), windows  # a copy: callers may mutate theirs
        if not settings.temperature_pause:
            self._hot = False

    def manual_pause(self, duration_s: float | None) -> None:
        """Pause now, for ``duration_s`` seconds or, with ``None``, until :meth:`manual_resume`."""
        if duration_s is not None and not (duration_s > 0 and math.isfinite(duration_s)):
            raise ValueError(f"a pause lasts a positive number of seconds, not {duration_s!r}")
        now = self._clock()
        self._manual_until = math.inf if duration_s is None else now + duration_s
        self._bypass_hold = True

    def manual_resume(self) -> None:
        """End a manual pause now and lift the minimum pause time; other pause reasons still apply.

        A manual resume never hastens a pause: it only acts towards running."""
        self._manual_until = None
        self._manual_resume = True

    @property
    def manual_until(self) -> float | None:
        """End of the manual pause (epoch s), ``math.inf`` until resumed, ``None`` when none."""
        return self._manual_until

    @property
    def running(self) -> bool:
        return self._run

    # -- the tick -----------------------------------------------------------------------------------------
    def _at(self, t: float, seconds: bool = False) -> str:
        return self._local_time(t).strftime("%H:%M:%S" if seconds else "%H:%M")

    def _pause_reasons(self, obs: Observation) -> list[tuple[str, str]]:
        s, now = self.settings, obs.now
        out: list[tuple[str, str]] = []
        if self._manual_until is not None and now >= self._manual_until:
            self._manual_until = None
        if self._manual_until is not None:
            out.append((MANUAL, "Paused by you until you resume" if math.isinf(self._manual_until)
                        else f"Paused by you until {self._at(self._manual_until)}"))

        if s.temperature_pause and obs.gpu_temp_c is not None:
            if obs.gpu_temp_c >= s.temperature_high_c:
                self._hot = True
            elif obs.gpu_temp_c < s.temperature_low_c:
                self._hot = False
        if self._hot:
            now_text = "unknown" if obs.gpu_temp_c is None else f"{obs.gpu_temp_c:.0f} °C"
            out.append((TEMPERATURE, f"GPU too hot ({now_text}, limit {s.temperature_high_c:.0f} °C); "
                                     f"resumes below {s.temperature_low_c:.0f} °C"))

        if s.pause_for_gpu_programs:
            ignore = {normalize_program_name(n) for n in s.gpu_program_ignore}
            for p in obs.gpu_processes:
                name = p.name or f"pid {p.pid}"  # None: the OS does not say (it exited, or not ours to see)
                if normalize_program_name(name) in ignore:
                    continue
                by_mem = (s.gpu_program_min_mem_mib > 0 and p.used_mib is not None
                          and p.used_mib >= s.gpu_program_min_mem_mib)
                by_util = (s.gpu_program_min_util_pct > 0 and p.util_pct is not None
                           and p.util_pct >= s.gpu_program_min_util_pct)
                if by_mem or by_util:
                    use = [x for x in (None if p.used_mib is None else _mib_text(p.used_mib),
                                       None if p.util_pct is None else f"{p.util_pct:.0f} %") if x]
                    out.append((GPU_PROGRAM, f"{name} (pid {p.pid}) is using the GPU ({', '.join(use)})"))

        if s.pause_for_programs:
            for name in obs.running_programs:
                out.append((LISTED_PROGRAM, f"{name} is running (on your list of programs)"))

        if s.pause_for_steam_games and obs.steam_game:
            out.append((STEAM_GAME, f"Steam game {obs.steam_game} is running"))

        if s.idle_only:
            need = s.idle_minutes * 60
            if obs.idle_s is None:
                why = obs.idle_unavailable_reason or "idle time is not available on this system"
                out.append((NOT_IDLE, f"'Run only when idle' is on, but {why}; turn it off to contribute"))
            elif obs.idle_s < need:
                out.append((NOT_IDLE, f"You are using the computer (idle {_duration_text(obs.idle_s)}, "
                                      f"runs after {_duration_text(need)} idle)"))

        if s.schedule_enabled:
            mow = minute_of_week(self._local_time(now))
            if not in_windows(self._windows, mow):
                out.append((SCHEDULE, "Outside the schedule (" + "; ".join(s.schedule) + ")"))

        if s.profit_pause:
            if self._run and obs.power_w is not None:
                self._running_power_w = obs.power_w
            power = obs.power_w if self._run else self._running_power_w
            price = (obs.electricity_price_per_kwh if obs.electricity_price_per_kwh is not None
                     else s.electricity_price_per_kwh)
            if power is not None and obs.earnings_per_hour is not None:
                cost = power / 1000.0 * price
                if obs.earnings_per_hour < cost:
                    out.append((UNPROFITABLE, f"Earnings {obs.earnings_per_hour:.4g}/h are below the "
                                              f"electricity cost {cost:.4g}/h ({power:.0f} W)"))
        return out

    def tick(self, obs: Observation) -> Decision:
        """Evaluate the policies for ``obs`` and return the decision (``changed`` when ``run`` flips)."""
        s, now = self.settings, obs.now
        reasons = self._pause_reasons(obs)
        codes = tuple(dict.fromkeys(c for c, _ in reasons))
        want_run = not reasons
        if want_run:
            immediate = self._bypass_hold or self._manual_resume
        else:
            immediate = self._bypass_hold or MANUAL in codes or TEMPERATURE in codes
        manual_resume = self._manual_resume
        self._bypass_hold = self._manual_resume = False
        prev_codes = self._last_codes
        if codes:
            self._last_codes = codes

        hold_until = self._changed_at + (s.min_run_s if self._run else s.min_pause_s)
        changed = pending = False
        if want_run != self._run:
            if immediate or now >= hold_until:
                changed = True
                self._run, self._changed_at = want_run, now
                hold_until = now + (s.min_run_s if want_run else s.min_pause_s)
            else:
                pending = True
        earliest = max(now, hold_until)
        if not self._run and MANUAL in codes and self._manual_until is not None:
            earliest = max(earliest, self._manual_until)  # math.inf: until the user resumes

        texts: list[str]
        if self._run and pending:  # the policies ask for a pause, the minimum run time holds it off
            texts = [f"Pausing at {self._at(hold_until, True)} (minimum run time): {t}" for _, t in reasons]
        elif self._run and changed:
            was = ", ".join(_LABELS[c] for c in prev_codes) or "no pause reason"
            texts = ["Resumed by you" if manual_resume and MANUAL in prev_codes
                     else f"Resumed: {was} no longer holds the node back"]
        elif self._run:
            texts = ["Contributing: no policy asks for a pause"]
        elif pending:  # paused; the policies would resume, the minimum pause time holds it off
            texts = [f"Resuming at {self._at(hold_until, True)} (minimum pause time)"]
        else:
            texts = [t for _, t in reasons]
        drain = 0.0
        if changed and not self._run:
            drain = 0.0 if TEMPERATURE in codes else s.drain_s
        return Decision(time=now, run=self._run, reasons=tuple(texts), codes=codes, changed=changed,
                        earliest_change_at=earliest, drain_s=drain, pending=pending)
