"""Table-driven tests of the policy rules with a virtual clock.

Each scenario is a list of steps: advance the clock, optionally do a manual action, tick with an
observation, and check run / changed / reason codes (and, where given, drain_s, pending, earliest change).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from farnode_desktop.core import schedule
from farnode_desktop.core.gpu.inventory import GpuProcess
from farnode_desktop.core.policies import rules as P
from farnode_desktop.core.policies.rules import Observation, PolicyRules
from farnode_desktop.core.settings import PolicySettings
from tests.core.policies.vclock import VirtualClock, at, local_time

GAME = GpuProcess(4242, "Cyberpunk2077.exe", 6144.0, 97.0)
BROWSER = GpuProcess(777, "firefox", 300.0, 5.0)
COMPOSITOR = GpuProcess(100, "Xorg", 1500.0, 40.0)  # big, but on the ignore list

# Every policy off and no minimum times: each scenario turns on what it tests.
OFF = PolicySettings(pause_for_gpu_programs=False, pause_for_steam_games=False, temperature_pause=False,
                     min_run_s=0, min_pause_s=0)


@dataclass
class S:
    dt: float  # seconds after the previous step
    run: bool
    changed: bool = False
    codes: tuple[str, ...] = ()
    obs: dict[str, Any] = field(default_factory=dict)
    do: tuple | None = None  # ("pause", seconds | None) | ("resume",) | ("settings", {...})
    drain: float | None = None
    pending: bool | None = None
    earliest_in: float | None = None  # earliest_change_at - now
    text: str | None = None  # a substring of the joined reasons


def play(settings: PolicySettings, steps: list[S], start: float | None = None) -> list[P.Decision]:
    clock = VirtualClock() if start is None else VirtualClock(start)
    rules = PolicyRules(settings, clock=clock, local_time=local_time)
    out = []
    for i, st in enumerate(steps):
        clock.advance(st.dt)
        if st.do is not None:
            if st.do[0] == "pause":
                rules.manual_pause(st.do[1])
            elif st.do[0] == "resume":
                rules.manual_resume()
            elif st.do[0] == "settings":
                rules.update_settings(replace(rules.settings, **st.do[1]))
        d = rules.tick(Observation(now=clock(), **st.obs))
        where = f"step {i} ({st}) -> {d}"
        assert d.run is st.run, where
        assert d.changed is st.changed, where
        assert set(d.codes) == set(st.codes), where
        assert d.reasons and all(isinstance(r, str) and r for r in d.reasons), where
        if st.drain is not None:
            assert d.drain_s == st.drain, where
        if st.pending is not None:
            assert d.pending is st.pending, where
        if st.earliest_in is not None:
            assert d.earliest_change_at - clock() == pytest.approx(st.earliest_in), where
        if st.text is not None:
            assert st.text in " | ".join(d.reasons), where
        out.append(d)
    return out


def on(**kw) -> PolicySettings:
    return replace(OFF, **kw)


SCENARIOS: dict[str, tuple[PolicySettings, list[S]]] = {
    # ---- each policy alone ----------------------------------------------------------------------------
    "nothing on: always runs": (OFF, [
        S(0, True, obs=dict(gpu_processes=(GAME,), steam_game="570", gpu_temp_c=99, idle_s=0)),
    ]),
    "gpu program by memory": (on(pause_for_gpu_programs=True, gpu_program_min_util_pct=0), [
        S(0, True, obs=dict(gpu_processes=(BROWSER,))),
        S(1, False, True, (P.GPU_PROGRAM,), obs=dict(gpu_processes=(BROWSER, GAME)), drain=20.0,
          text="Cyberpunk2077.exe (pid 4242) is using the GPU (6.0 GiB"),
        S(1, True, True, obs=dict(gpu_processes=(BROWSER,)), text="another program using the GPU"),
    ]),
    "gpu program by utilisation, memory unknown (Windows WDDM)": (on(pause_for_gpu_programs=True), [
        S(0, True, obs=dict(gpu_processes=(GpuProcess(1, "game", None, 29.0),))),
        S(1, False, True, (P.GPU_PROGRAM,), obs=dict(gpu_processes=(GpuProcess(1, "game", None, 30.0),))),
        S(1, True, True, obs=dict(gpu_processes=(GpuProcess(1, "game", None, None),))),
    ]),
    "gpu program: ignored names and small users never pause": (on(pause_for_gpu_programs=True), [
        S(0, True, obs=dict(gpu_processes=(COMPOSITOR, BROWSER, GpuProcess(5, "x", 1023.0, 29.9)))),
    ]),
    "gpu program: off": (OFF, [S(0, True, obs=dict(gpu_processes=(GAME,)))]),
    "listed program": (on(pause_for_programs=True, programs=["eldenring.exe"]), [
        S(0, False, True, (P.LISTED_PROGRAM,), obs=dict(running_programs=("eldenring.exe",)),
          text="eldenring.exe is running"),
        S(1, True, True),
    ]),
    "steam game": (on(pause_for_steam_games=True), [
        S(0, True, obs=dict(steam_game=None)),
        S(1, False, True, (P.STEAM_GAME,), obs=dict(steam_game="1091500"), text="1091500"),
        S(1, True, True, obs=dict(steam_game="")),
    ]),
    "idle only": (on(idle_only=True, idle_minutes=10), [
        S(0, False, True, (P.NOT_IDLE,), obs=dict(idle_s=30.0), text="runs after 10 min idle"),
        S(1, False, False, (P.NOT_IDLE,), obs=dict(idle_s=599.0)),
        S(1, True, True, obs=dict(idle_s=600.0)),
        S(1, False, True, (P.NOT_IDLE,), obs=dict(idle_s=0.5)),
    ]),
    "idle only, idle time not available": (on(idle_only=True), [
        S(0, False, True, (P.NOT_IDLE,),
          obs=dict(idle_s=None, idle_unavailable_reason="idle time is not available on this system (Wayland)"),
          text="not available on this system (Wayland); turn it off"),
    ]),
    "schedule: inside and outside a daytime window": (on(schedule_enabled=True, schedule=["mon 12:30-13:00"]), [
        S(0, False, True, (P.SCHEDULE,), text="Outside the schedule (mon 12:30-13:00)"),  # Mon 12:00
        S(29 * 60 + 59, False, codes=(P.SCHEDULE,)),  # 12:29:59
        S(1, True, True),  # 12:30:00
        S(29 * 60 + 59, True),  # 12:59:59
        S(1, False, True, (P.SCHEDULE,)),  # 13:00
    ]),
    "temperature hysteresis": (on(temperature_pause=True, temperature_high_c=85, temperature_low_c=75), [
        S(0, True, obs=dict(gpu_temp_c=84.9)),
        S(1, False, True, (P.TEMPERATURE,), obs=dict(gpu_temp_c=85.0), drain=0.0,
          text="resumes below 75 °C"),
        S(1, False, False, (P.TEMPERATURE,), obs=dict(gpu_temp_c=80.0)),
        S(1, False, False, (P.TEMPERATURE,), obs=dict(gpu_temp_c=75.0)),
        S(1, False, False, (P.TEMPERATURE,), obs=dict(gpu_temp_c=None), text="unknown"),
        S(1, True, True, obs=dict(gpu_temp_c=74.9)),
        S(1, True, False, obs=dict(gpu_temp_c=84.0)),
        S(1, True, False, obs=dict(gpu_temp_c=None)),  # unknown while cool: stays cool
    ]),
    "profit: earnings below the electricity cost": (on(profit_pause=True, electricity_price_per_kwh=0.5), [
        # 200 W at 0.5/kWh costs 0.1/h.
        S(0, True, obs=dict(power_w=200.0, earnings_per_hour=0.1)),
        S(1, False, True, (P.UNPROFITABLE,), obs=dict(power_w=200.0, earnings_per_hour=0.09),
          text="below the electricity cost 0.1/h (200 W)"),
        # While paused the GPU idles at 20 W: the rules keep judging by the running draw (200 W).
        S(1, False, False, (P.UNPROFITABLE,), obs=dict(power_w=20.0, earnings_per_hour=0.09)),
        S(1, True, True, obs=dict(power_w=20.0, earnings_per_hour=0.11)),
        # A price from the observation (e.g. a time-of-use tariff) overrides the settings' price.
        S(1, False, True, (P.UNPROFITABLE,),
          obs=dict(power_w=200.0, earnings_per_hour=0.11, electricity_price_per_kwh=0.6)),
    ]),
    "profit: no figures, no pause": (on(profit_pause=True, electricity_price_per_kwh=10.0), [
        S(0, True, obs=dict(power_w=None, earnings_per_hour=0.0)),
        S(1, True, obs=dict(power_w=300.0, earnings_per_hour=None)),
    ]),
    "manual pause for 15 min": (OFF, [
        S(0, True),
        S(0, False, True, (P.MANUAL,), do=("pause", 900.0), drain=20.0, text="Paused by you until 12:15"),
        S(899, False, False, (P.MANUAL,)),
        S(1, True, True, text="your pause no longer holds"),  # 15 min after the pause
    ]),
    "manual pause until resumed": (OFF, [
        S(0, False, True, (P.MANUAL,), do=("pause", None), text="until you resume"),
        S(7 * 86400, False, False, (P.MANUAL,)),
        S(1, True, True, do=("resume",), text="Resumed by you"),
    ]),
    # ---- combinations ---------------------------------------------------------------------------------
    "game and heat together, each reason listed": (on(pause_for_gpu_programs=True, temperature_pause=True), [
        S(0, False, True, (P.GPU_PROGRAM, P.TEMPERATURE), obs=dict(gpu_processes=(GAME,), gpu_temp_c=90),
          drain=0.0),
        S(1, False, False, (P.TEMPERATURE,), obs=dict(gpu_temp_c=80)),  # game gone, still hot
        S(1, False, False, (P.GPU_PROGRAM,), obs=dict(gpu_processes=(GAME,), gpu_temp_c=60)),
        S(1, True, True, obs=dict(gpu_temp_c=60)),
    ]),
    "idle only within a schedule": (on(idle_only=True, idle_minutes=5, schedule_enabled=True,
                                       schedule=["mon 12:00-13:00"]), [
        S(0, True, obs=dict(idle_s=300.0)),
        S(1, False, True, (P.NOT_IDLE,), obs=dict(idle_s=1.0)),
        S(3600, False, False, (P.NOT_IDLE, P.SCHEDULE), obs=dict(idle_s=10.0)),
        S(1, False, False, (P.SCHEDULE,), obs=dict(idle_s=4000.0)),
    ]),
    "manual pause overrides the automatic resume": (on(pause_for_steam_games=True, min_pause_s=120), [
        S(0, False, True, (P.STEAM_GAME,), obs=dict(steam_game="570")),
        S(10, False, False, (P.STEAM_GAME, P.MANUAL), obs=dict(steam_game="570"), do=("pause", None)),
        S(600, False, False, (P.MANUAL,), obs=dict(steam_game=None)),  # game over: still paused by you
        S(1, True, True, do=("resume",), text="Resumed by you"),
    ]),
    "manual resume clears only the manual pause": (on(pause_for_steam_games=True), [
        S(0, False, True, (P.MANUAL,), do=("pause", 3600.0)),
        S(5, False, False, (P.MANUAL, P.STEAM_GAME), obs=dict(steam_game="570")),
        S(5, False, False, (P.STEAM_GAME,), obs=dict(steam_game="570"), do=("resume",)),
        S(5, True, True),
    ]),
    # ---- minimum run and pause times ------------------------------------------------------------------
    "minimum run time holds a pause off": (on(pause_for_steam_games=True, min_run_s=60, min_pause_s=120), [
        S(0, False, True, (P.STEAM_GAME,), obs=dict(steam_game="570")),  # no hold at startup
        S(120, True, True, earliest_in=60),
        S(10, True, False, (P.STEAM_GAME,), obs=dict(steam_game="570"), pending=True, earliest_in=50,
          text="Pausing at 12:03:00 (minimum run time)"),
        S(49, True, False, (P.STEAM_GAME,), obs=dict(steam_game="570"), pending=True, earliest_in=1),
        S(1, False, True, (P.STEAM_GAME,), obs=dict(steam_game="570"), pending=False, earliest_in=120),
    ]),
    "no hold at startup: a game already running pauses at once": (
        on(pause_for_steam_games=True, min_run_s=600), [
            S(0, False, True, (P.STEAM_GAME,), obs=dict(steam_game="570")),
        ]),
    "a timed manual pause that ends within the minimum pause time waits for it": (on(min_pause_s=120), [
        S(0, False, True, (P.MANUAL,), do=("pause", 60.0)),
        S(60, False, False, pending=True, earliest_in=60),
        S(60, True, True),
    ]),
    "minimum pause time holds a resume off": (on(pause_for_steam_games=True, min_pause_s=120), [
        S(0, False, True, (P.STEAM_GAME,), obs=dict(steam_game="570")),
        S(5, False, False, pending=True, earliest_in=115, text="Resuming at 12:02:00 (minimum pause time)"),
        S(114, False, False, pending=True),
        S(1, True, True),
    ]),
    "a condition that clears within the hold causes no change": (on(pause_for_steam_games=True, min_run_s=60), [
        S(0, False, True, (P.MANUAL,), do=("pause", 1.0)),
        S(1, True, True, earliest_in=60),
        S(10, True, False, (P.STEAM_GAME,), obs=dict(steam_game="570"), pending=True),
        S(10, True, False, pending=False),
        S(100, True, False),
    ]),
    "temperature pauses at once, resumes after the minimum pause": (
        on(temperature_pause=True, min_run_s=600, min_pause_s=120), [
            S(0, False, True, (P.MANUAL,), do=("pause", 120.0)),
            S(120, True, True, obs=dict(gpu_temp_c=50)),
            S(1, False, True, (P.TEMPERATURE,), obs=dict(gpu_temp_c=90)),  # within min_run: safety acts
            S(10, False, False, obs=dict(gpu_temp_c=60), pending=True),
            S(110, True, True, obs=dict(gpu_temp_c=60)),
        ]),
    "manual pause and resume ignore the minimum times": (on(min_run_s=600, min_pause_s=600), [
        S(0, False, True, (P.MANUAL,), do=("pause", None)),
        S(1, True, True, do=("resume",)),
        S(1, False, True, (P.MANUAL,), do=("pause", 900.0)),
    ]),
    "a manual resume does not hasten a pending automatic pause": (
        on(pause_for_steam_games=True, min_run_s=60), [
            S(0, False, True, (P.MANUAL,), do=("pause", 1.0)),
            S(1, True, True),
            S(1, True, False, (P.STEAM_GAME,), obs=dict(steam_game="570"), do=("resume",), pending=True),
        ]),
    "a settings change acts at once": (on(idle_only=True, min_pause_s=3600), [
        S(0, False, True, (P.NOT_IDLE,), obs=dict(idle_s=0.0)),
        S(5, True, True, obs=dict(idle_s=0.0), do=("settings", {"idle_only": False})),
    ]),
    "saving unchanged settings does not lift a hold": (on(idle_only=True, min_pause_s=3600), [
        S(0, False, True, (P.NOT_IDLE,), obs=dict(idle_s=0.0)),
        S(5, False, False, obs=dict(idle_s=9999.0), do=("settings", {}), pending=True, earliest_in=3595),
    ]),
    "earliest change of a manual pause is its end": (on(min_pause_s=60), [
        S(0, False, True, (P.MANUAL,), do=("pause", 900.0), earliest_in=900),
        S(100, False, False, (P.MANUAL,), earliest_in=800),
        S(0, False, False, (P.MANUAL,), do=("pause", None), earliest_in=math.inf),
    ]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name):
    settings, steps = SCENARIOS[name]
    assert settings.validate() == []
    play(settings, steps)


# ---- schedule windows -----------------------------------------------------------------------------------

WINDOW_CASES = [
    # window, (weekday, time), inside?
    ("fri 22:00-02:00", (4, "21:59"), False),
    ("fri 22:00-02:00", (4, "22:00"), True),
    ("fri 22:00-02:00", (4, "23:59"), True),
    ("fri 22:00-02:00", (5, "00:00"), True),  # crosses midnight into Saturday
    ("fri 22:00-02:00", (5, "01:59"), True),
    ("fri 22:00-02:00", (5, "02:00"), False),
    ("fri 22:00-02:00", (3, "23:00"), False),
    ("sun 23:00-01:00", (6, "23:30"), True),
    ("sun 23:00-01:00", (0, "00:30"), True),  # the week wraps: Monday morning
    ("sun 23:00-01:00", (0, "01:00"), False),
    ("sun 23:00-01:00", (6, "00:30"), False),
    ("fri-mon 09:00-10:00", (0, "09:30"), True),  # a day range that wraps over the week's end
    ("fri-mon 09:00-10:00", (6, "09:30"), True),
    ("fri-mon 09:00-10:00", (1, "09:30"), False),
    ("mon-fri 22:00-07:00", (0, "06:59"), False),  # Monday morning belongs to Sunday night: not listed
    ("mon-fri 22:00-07:00", (5, "06:59"), True),  # Friday night's window runs into Saturday
    ("weekends 00:00-24:00", (5, "00:00"), True),
    ("weekends 00:00-24:00", (6, "23:59"), True),
    ("weekends 00:00-24:00", (0, "00:00"), False),
    ("daily 12:00-12:01", (3, "12:00"), True),
    ("Sat,SUN 08:00-09:00", (6, "08:15"), True),
    ("Saturday 08:00-09:00", (5, "08:15"), True),
]


@pytest.mark.parametrize("window,when,inside", WINDOW_CASES)
def test_schedule_window(window, when, inside):
    t = at(*when)
    assert schedule.in_windows(schedule.parse_window(window), schedule.minute_of_week(local_time(t))) is inside
    d = play(on(schedule_enabled=True, schedule=[window]),
             [S(0, inside, changed=not inside, codes=() if inside else (P.SCHEDULE,))], start=t)
    assert d[0].run is inside


def test_schedule_runs_across_week_wrap_with_a_ticking_clock():
    """Tick every minute from Sunday 22:58 to Monday 01:02 local time."""
    rules = PolicyRules(on(schedule_enabled=True, schedule=["sun 23:00-01:00"]), local_time=local_time)
    runs = []
    t = at(6, "22:58")
    while t <= at(6, "22:58") + 124 * 60:
        runs.append((local_time(t).strftime("%a %H:%M"), rules.tick(Observation(now=t)).run))
        t += 60
    changes = [(w, r) for (w, r), (_, prev) in zip(runs[1:], runs[:-1], strict=True) if r != prev]
    assert runs[0] == ("Sun 22:58", False)
    assert changes == [("Sun 23:00", True), ("Mon 01:00", False)]


def test_schedule_uses_the_injected_local_time():
    """The same instant is inside the window in UTC+2 and outside it in UTC."""
    from datetime import datetime, timezone

    t = at(0, "12:30")  # 10:30 UTC
    s = on(schedule_enabled=True, schedule=["mon 12:00-13:00"])
    assert PolicyRules(s, local_time=local_time).tick(Observation(now=t)).run is True
    utc = PolicyRules(s, local_time=lambda x: datetime.fromtimestamp(x, timezone.utc))
    assert utc.tick(Observation(now=t)).run is False


@pytest.mark.parametrize("text,needle", [
    ("", "is not of the form"),
    ("mon", "is not of the form"),
    ("mon 22-07", "is not of the form"),
    ("mun 22:00-07:00", "'mun' is not a day"),
    ("mon 25:00-07:00", "is not a time of day"),
    ("mon 10:60-11:00", "is not a time of day"),
    ("mon 24:30-11:00", "is not a time of day"),
    ("mon 10:00-10:00", "same time"),
    ("mon 24:00-02:00", "starts at 24:00"),
    (7, "is not text"),
])
def test_bad_schedule_windows(text, needle):
    with pytest.raises(schedule.ScheduleError, match=needle):
        schedule.parse_window(text)
    problems = replace(OFF, schedule_enabled=True, schedule=[text]).validate()
    assert any(needle in p for p in problems), problems


# ---- settings ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change,needle", [
    (dict(gpu_program_min_mem_mib=-1), "gpu_program_min_mem_mib"),
    (dict(gpu_program_min_util_pct=101.0), "gpu_program_min_util_pct"),
    (dict(gpu_program_min_util_pct=math.nan), "gpu_program_min_util_pct"),
    (dict(gpu_program_min_mem_mib=0, gpu_program_min_util_pct=0.0), "threshold above 0"),
    (dict(pause_for_programs=True, programs=[" "]), "policies.programs is empty"),
    (dict(idle_minutes=0.0), "idle_minutes"),
    (dict(schedule_enabled=True, schedule=[]), "schedule is empty"),
    (dict(temperature_low_c=85.0, temperature_high_c=85.0), "resume temperature must be below"),
    (dict(temperature_high_c=math.inf), "resume temperature must be below"),
    (dict(electricity_price_per_kwh=-0.1), "electricity_price_per_kwh"),
    (dict(min_run_s=-1.0), "min_run_s"),
    (dict(min_pause_s=math.nan), "min_pause_s"),
    (dict(drain_s=601.0), "drain_s"),
])
def test_policy_settings_validation(change, needle):
    assert PolicySettings().validate() == []
    problems = replace(PolicySettings(), **change).validate()
    assert any(needle in p for p in problems), problems


def test_policy_settings_round_trip_and_bad_section(app_paths):
    import json

    from farnode_desktop.core.errors import FarNodeError
    from farnode_desktop.core.settings import Settings, SettingsStore

    store = SettingsStore(app_paths.settings_file)
    s = Settings()
    assert s.policies.start_at_login is False
    s.policies = replace(s.policies, idle_only=True, idle_minutes=7, schedule=["weekends 00:00-24:00"],
                         programs=["eldenring.exe"], start_at_login=True)
    s.network.port = 4000
    store.save(s)
    assert store.load() == s and store.notes == []

    raw = json.loads(app_paths.settings_file.read_text())
    raw["policies"]["schedule"] = ["someday 10:00-11:00"]
    app_paths.settings_file.write_text(json.dumps(raw))
    with pytest.raises(FarNodeError, match="'someday' is not a day"):  # refused, not reset to defaults
        store.load()
    assert json.loads(app_paths.settings_file.read_text())["policies"]["schedule"] == ["someday 10:00-11:00"]


def test_rules_reject_bad_manual_durations(clock):
    rules = PolicyRules(OFF, clock=clock, local_time=local_time)
    for bad in (0, -5, math.nan, math.inf):
        with pytest.raises(ValueError):
            rules.manual_pause(bad)
    assert rules.manual_until is None
    rules.manual_pause(60)
    assert rules.manual_until == clock() + 60


@pytest.mark.parametrize("running,wanted,found", [
    (["EldenRing.exe", "bash"], ["eldenring.exe"], ("eldenring.exe",)),
    (["eldenring"], ["C:\\Games\\ELDEN RING\\Game\\eldenring.exe"], ("C:\\Games\\ELDEN RING\\Game\\eldenring.exe",)),
    (["/usr/bin/blender"], ["blender"], ("blender",)),
    (["blender-thumbnailer"], ["blender"], ()),
    (["x"], ["", "  "], ()),
])
def test_match_programs(running, wanted, found):
    assert P.match_programs(running, wanted) == found
