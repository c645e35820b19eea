"""Idle time under a real Xvfb, Steam games among real processes, process names,
and the pure parts of the Windows and macOS readers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from farnode_desktop.core.policies import platform as plat
from farnode_desktop.core.policies.platform.base import NOT_AVAILABLE
from farnode_desktop.core.policies.platform.linux import (
    ProcSteamDetector,
    steam_app_from_cmdline,
    steam_app_from_environ,
)
from farnode_desktop.core.policies.platform.macos import parse_ioreg_idle
from farnode_desktop.core.policies.platform.process_names import running_process_names
from farnode_desktop.core.policies.platform.windows import (
    REG_BINARY,
    REG_DWORD,
    REG_SZ,
    idle_ms_from_ticks,
    parse_running_app_id,
)
from farnode_desktop.core.policies.platform.x11 import X11IdleTime
from farnode_desktop.core.policies.rules import match_programs
from tests.support.display import free_display as _free_display

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and X11 only")


def _x(display: str, *args: str) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=10,
                         env=dict(os.environ, DISPLAY=display))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@linux_only
def test_x11_idle_time_grows_and_resets_on_input(xvfb):
    if not shutil.which("xdotool"):
        pytest.skip("xdotool is not installed (scripts/system-deps.sh installs it): cannot move the pointer")
    idle = X11IdleTime(xvfb)
    _x(xvfb, "xdotool", "mousemove", "5", "5")
    first = idle.idle_seconds()
    assert first.seconds is not None and first.reason == "" and first.seconds < 5
    time.sleep(1.3)
    later = idle.idle_seconds().seconds
    assert later >= first.seconds + 1.0
    _x(xvfb, "xdotool", "mousemove", "200", "150")
    assert idle.idle_seconds().seconds < later - 0.9


def test_x11_unavailable_reasons(monkeypatch):
    r = X11IdleTime(f":{_free_display()}").idle_seconds()
    assert r.seconds is None and NOT_AVAILABLE in r.reason and "cannot be opened" in r.reason
    monkeypatch.delenv("DISPLAY", raising=False)
    r = X11IdleTime().idle_seconds()
    assert r.seconds is None and "there is no X display" in r.reason


def test_wayland_session_says_not_available(monkeypatch):
    if sys.platform in ("win32", "darwin"):
        pytest.skip("Linux session types only")
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")
    r = plat.idle_time_provider().idle_seconds()
    assert r.seconds is None and NOT_AVAILABLE in r.reason and "Wayland" in r.reason


# ---- Steam on Linux --------------------------------------------------------------------------------------

@pytest.mark.parametrize("env,app", [
    (b"HOME=/home/a\0SteamAppId=1091500\0PATH=/usr/bin\0", "1091500"),
    (b"SteamGameId=570\0", "570"),
    (b"SteamAppId=0\0", None),  # the Steam client itself
    (b"SteamAppId=\0", None),
    (b"XSteamAppId=5\0", None),
    (b"", None),
])
def test_steam_from_environ(env, app):
    assert steam_app_from_environ(env) == app


@pytest.mark.parametrize("args,app", [
    (["/home/a/.steam/ubuntu12_32/reaper", "SteamLaunch", "AppId=1245620", "--", "proton", "run"], "1245620"),
    (["reaper", "AppId=1245620"], None),
    (["reaper", "SteamLaunch", "AppId=abc"], None),
    ([], None),
])
def test_steam_from_cmdline(args, app):
    assert steam_app_from_cmdline(args) == app


@linux_only
def test_steam_game_found_among_real_processes():
    env = {k: v for k, v in os.environ.items() if not k.startswith("Steam")}
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    assert ProcSteamDetector(min_interval_s=0).scan() is None
    game = subprocess.Popen(sleeper, env=dict(env, SteamAppId="4000"))
    try:
        deadline = time.monotonic() + 10
        while ProcSteamDetector(min_interval_s=0).scan() != "4000" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ProcSteamDetector(min_interval_s=0).scan() == "4000"
        # The node's own processes are left out.
        assert ProcSteamDetector(min_interval_s=0, exclude_pids=lambda: [game.pid]).scan() is None
    finally:
        game.kill()
        game.wait()
    reaper = subprocess.Popen(sleeper + ["reaper", "SteamLaunch", "AppId=570", "--", "game"], env=env)
    try:
        deadline = time.monotonic() + 10
        while ProcSteamDetector(min_interval_s=0).scan() != "570" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ProcSteamDetector(min_interval_s=0).scan() == "570"
    finally:
        reaper.kill()
        reaper.wait()
    assert ProcSteamDetector(min_interval_s=0).scan() is None


@linux_only
def test_a_scan_puts_no_process_id_into_pythons_interned_strings(monkeypatch):
    """pathlib interns every part of a path: a scan that built ``Path("/proc") / pid`` for each of some
    hundreds of processes, every 15 s, put each pid into Python's table of interned strings and took it out
    again, and the table, grown by those dummies, was rebuilt at twice its size (1.9 -> 3.8 MB) about 80
    minutes into the window's soak run. A scan by plain string paths interns nothing."""
    interned: list[str] = []
    real = sys.intern
    monkeypatch.setattr(sys, "intern", lambda s: (interned.append(s), real(s))[1])
    ProcSteamDetector(min_interval_s=0).scan()
    pids = {e.name for e in os.scandir("/proc") if e.name.isdigit()}
    assert len(pids) > 1 and not pids & set(interned)


def test_steam_scan_is_reused_within_the_interval(tmp_path):
    """A fake /proc tree checks only the caching: a scan is reused for min_interval_s."""
    now = [0.0]
    (tmp_path / "99999").mkdir()
    (tmp_path / "99999" / "cmdline").write_bytes(b"game\0")
    (tmp_path / "99999" / "environ").write_bytes(b"SteamAppId=10\0")
    det = ProcSteamDetector(tmp_path, min_interval_s=5, clock=lambda: now[0])
    assert det.running_game() == "10"
    (tmp_path / "99999" / "environ").write_bytes(b"")
    now[0] = 4.9
    assert det.running_game() == "10"
    now[0] = 5.0
    assert det.running_game() is None
    assert ProcSteamDetector(tmp_path / "missing").scan() is None


# ---- process names ---------------------------------------------------------------------------------------

def test_running_process_names_sees_a_real_program(tmp_path):
    exe = tmp_path / "MyGame.exe"
    shutil.copy(sys.executable, exe)
    proc = subprocess.Popen([str(exe), "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        while not match_programs(running_process_names(), ["mygame.exe"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert match_programs(running_process_names(), ["C:\\Games\\MyGame.exe", "other"]) == (
            "C:\\Games\\MyGame.exe",)
        assert not match_programs(running_process_names(exclude_pids=[proc.pid]), ["mygame"])
    finally:
        proc.kill()
        proc.wait()


# ---- Windows and macOS: the pure parts -------------------------------------------------------------------

@pytest.mark.parametrize("now,last,ms", [
    (10_000, 4_000, 6_000),
    (500, 0xFFFFFF00, 756),  # GetTickCount wrapped after 49.7 days
    (7, 7, 0),
])
def test_windows_idle_from_ticks(now, last, ms):
    assert idle_ms_from_ticks(now, last) == ms


@pytest.mark.parametrize("value,kind,app", [
    (1091500, REG_DWORD, "1091500"),
    (0, REG_DWORD, None),
    ("570", REG_SZ, "570"),
    ("0", REG_SZ, None),
    ("", REG_SZ, None),
    (b"\x01", REG_BINARY, None),
    (None, REG_DWORD, None),
])
def test_windows_steam_running_app_id(value, kind, app):
    assert parse_running_app_id(value, kind) == app


IOREG = """+-o IOHIDSystem  <class IOHIDSystem, id 0x100000478, registered, matched, active, busy 0>
    {
      "IOClass" = "IOHIDSystem"
      "HIDIdleTime" = 12345678901
      "HIDParameters" = {"HIDIdleTime"=1}
    }
"""


@pytest.mark.parametrize("text,seconds", [(IOREG, 12.345678901), ("", None), ('"HIDIdleTime" = -1', None)])
def test_macos_ioreg_idle(text, seconds):
    got = parse_ioreg_idle(text)
    assert got == (None if seconds is None else pytest.approx(seconds))
