"""Windows: idle time (GetLastInputInfo), the running Steam game
(``HKCU\\Software\\Valve\\Steam\\RunningAppID``) and start at login (the HKCU ``Run`` key).

Importable everywhere: ``ctypes.windll`` and ``winreg`` are only touched inside the methods, and the
parsing and command-line logic lives in plain functions that the tests run on any system.
"""

from __future__ import annotations

import ctypes
import subprocess
from typing import Any

from farnode_desktop import APP_NAME
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.policies.platform.base import (
    NOT_AVAILABLE,
    Autostart,
    IdleReading,
)

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
STARTUP_APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
STEAM_KEY = r"Software\Valve\Steam"
RUN_VALUE = APP_NAME

REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD = 1, 2, 3, 4  # winreg's constants, usable off Windows


def idle_ms_from_ticks(tick_now: int, last_input_tick: int) -> int:
    """Milliseconds since the last input from GetTickCount() and LASTINPUTINFO.dwTime (both 32-bit
    counters that wrap every 49.7 days)."""
    return (tick_now - last_input_tick) & 0xFFFFFFFF


def parse_running_app_id(value: Any, reg_type: int) -> str | None:
    """Steam's ``RunningAppID`` value: a DWORD, 0 when no game runs."""
    if reg_type == REG_DWORD and isinstance(value, int) and value > 0:
        return str(value)
    if reg_type in (REG_SZ, REG_EXPAND_SZ) and isinstance(value, str) and value.strip().isdigit():
        return str(int(value)) if int(value) > 0 else None
    return None


def run_command_line(command: list[str]) -> str:
    """The ``Run`` value for ``command`` (quoted the way CreateProcess parses it)."""
    for a in command:
        if not a or any(c in "\n\r\0" for c in a):
            raise FarNodeError(f"The program path {a!r} cannot be written into the Run key.",
                               title="Start at login is not possible")
    return subprocess.list2cmdline(command)


def startup_approved(data: Any) -> bool:
    """Whether Windows' "Startup apps" settings leave the entry on: a missing value is on; otherwise the
    first byte is even (02, 06) when on and odd (03, 07) when the user switched it off."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        return True
    return data[0] % 2 == 0


class WindowsIdleTime:
    def idle_seconds(self) -> IdleReading:
        class LASTINPUTINFO(ctypes.Structure):
            _fields_ = [("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint)]

        try:
            user32, kernel32 = ctypes.windll.user32, ctypes.windll.kernel32  # type: ignore[attr-defined]
            info = LASTINPUTINFO(ctypes.sizeof(LASTINPUTINFO), 0)
            if not user32.GetLastInputInfo(ctypes.byref(info)):
                return IdleReading(None, f"idle time is {NOT_AVAILABLE}: GetLastInputInfo failed")
            kernel32.GetTickCount.restype = ctypes.c_uint
            return IdleReading(idle_ms_from_ticks(kernel32.GetTickCount(), info.dwTime) / 1000.0)
        except (AttributeError, OSError) as exc:
            return IdleReading(None, f"idle time is {NOT_AVAILABLE} ({exc})")


class WindowsSteam:
    def running_game(self) -> str | None:
        try:
            import winreg

            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, STEAM_KEY) as key:
                value, reg_type = winreg.QueryValueEx(key, "RunningAppID")
        except (ImportError, OSError):  # no Steam, or not Windows
            return None
        return parse_running_app_id(value, reg_type)


class WindowsRunKey(Autostart):
    """``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run`` value ``FarNode Desktop``."""

    @property
    def location(self) -> str:
        return f"HKEY_CURRENT_USER\\{RUN_KEY}\\{RUN_VALUE}"

    def _read(self, key_path: str) -> tuple[Any, int] | None:
        try:
            import winreg

            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key_path) as key:
                return winreg.QueryValueEx(key, RUN_VALUE)
        except (ImportError, OSError):
            return None

    def is_enabled(self) -> bool:
        value = self._read(RUN_KEY)
        if value is None or not isinstance(value[0], str) or not value[0].strip():
            return False
        approved = self._read(STARTUP_APPROVED_KEY)
        return startup_approved(None if approved is None else approved[0])

    def command(self) -> list[str] | None:
        value = self._read(RUN_KEY)
        if value is None or not isinstance(value[0], str):
            return None
        return split_command_line(value[0])

    def enable(self, command: list[str]) -> None:
        line = run_command_line(command)
        try:
            import winreg

            with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                winreg.SetValueEx(key, RUN_VALUE, 0, winreg.REG_SZ, line)
            try:  # a "switched off" mark from the Startup apps settings would keep it off
                with winreg.OpenKey(winreg.HKEY_CURRENT_USER, STARTUP_APPROVED_KEY, 0,
                                    winreg.KEY_SET_VALUE) as key:
                    winreg.DeleteValue(key, RUN_VALUE)
            except OSError:
                pass
        except (ImportError, OSError) as exc:
            raise FarNodeError(f"The start-at-login entry could not be written to the registry ({exc}).",
                               title="Start at login is not possible") from exc

    def disable(self) -> None:
        try:
            import winreg

            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, RUN_VALUE)
        except FileNotFoundError:
            return
        except (ImportError, OSError) as exc:
            raise FarNodeError(f"The start-at-login entry could not be removed from the registry ({exc}).",
                               title="Start at login") from exc


def split_command_line(line: str) -> list[str]:
    """Split a Windows command line the way the C runtime does (the inverse of ``list2cmdline``)."""
    args: list[str] = []
    cur: list[str] = []
    in_arg = in_quotes = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            j = i
            while j < len(line) and line[j] == "\\":
                j += 1
            n = j - i
            if j < len(line) and line[j] == '"':
                cur.append("\\" * (n // 2))
                if n % 2:
                    cur.append('"')
                    j += 1
                i, in_arg = j, True
                continue
            cur.append("\\" * n)
            i, in_arg = j, True
            continue
        if c == '"':
            in_quotes, in_arg = not in_quotes, True
        elif c in " \t" and not in_quotes:
            if in_arg:
                args.append("".join(cur))
                cur, in_arg = [], False
        else:
            cur.append(c)
            in_arg = True
        i += 1
    if in_arg:
        args.append("".join(cur))
    return args
