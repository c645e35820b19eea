"""OS-specific parts behind one interface each: idle time, the running Steam game, start at login, and the
command that starts the app.

``idle_time_provider()`` & co. pick the implementation for this system; where there is none they return
one whose readings say "not available on this system" and why.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from farnode_desktop.core.host import current_platform
from farnode_desktop.core.policies.platform.base import (
    NOT_AVAILABLE,
    Autostart,
    IdleReading,
    IdleTimeProvider,
    NoSteam,
    SteamDetector,
    UnavailableIdle,
)

__all__ = [
    "NOT_AVAILABLE", "Autostart", "IdleReading", "IdleTimeProvider",
    "SteamDetector", "apply_start_at_login", "autostart", "idle_time_provider",
    "launch_command",
    "steam_detector",
]


def _wayland_only() -> bool:
    return os.environ.get("XDG_SESSION_TYPE", "").lower() == "wayland" or (
        bool(os.environ.get("WAYLAND_DISPLAY")) and not os.environ.get("DISPLAY"))


def idle_time_provider() -> IdleTimeProvider:
    if sys.platform == "win32":
        from farnode_desktop.core.policies.platform.windows import WindowsIdleTime

        return WindowsIdleTime()
    if sys.platform == "darwin":
        from farnode_desktop.core.policies.platform.macos import MacIdleTime

        return MacIdleTime()
    if _wayland_only():
        return UnavailableIdle(f"idle time is {NOT_AVAILABLE}: a Wayland session does not tell apps when "
                               "you last used the keyboard or mouse")
    from farnode_desktop.core.policies.platform.x11 import X11IdleTime

    return X11IdleTime()


def steam_detector(exclude_pids: Callable[[], Iterable[int]] = tuple) -> SteamDetector:
    """The running-Steam-game detector; ``exclude_pids`` gives the node's own processes (never a game)."""
    if sys.platform == "win32":
        from farnode_desktop.core.policies.platform.windows import WindowsSteam

        return WindowsSteam()
    if sys.platform.startswith("linux"):
        from farnode_desktop.core.policies.platform.linux import ProcSteamDetector

        return ProcSteamDetector(exclude_pids=exclude_pids)
    return NoSteam()


def autostart() -> Autostart:
    if sys.platform == "win32":
        from farnode_desktop.core.policies.platform.windows import WindowsRunKey

        return WindowsRunKey()
    if sys.platform == "darwin":
        from farnode_desktop.core.policies.platform.macos import MacLaunchAgent

        return MacLaunchAgent()
    from farnode_desktop.core.policies.platform.linux import XdgAutostart

    return XdgAutostart()


def launch_command(minimized: bool, *, executable: str | None = None, frozen: bool | None = None,
                   platform: str | None = None) -> list[str]:
    """The command that opens the app's window (``gui``), started in the tray with ``minimized``.

    A frozen build runs its own executable; otherwise this Python runs ``-m farnode_desktop`` (on
    Windows through ``pythonw.exe`` when it is there, so no console window opens at login).
    """
    exe = executable or sys.executable
    frozen = getattr(sys, "frozen", False) if frozen is None else frozen
    platform = platform or current_platform()
    if frozen:
        cmd = [exe, "gui"]
    else:
        if platform == "win32" and Path(exe).name.lower() == "python.exe":
            windowed = Path(exe).with_name("pythonw.exe")
            if windowed.exists():
                exe = str(windowed)
        cmd = [exe, "-m", "farnode_desktop", "gui"]
    return cmd + (["--minimized"] if minimized else [])


def apply_start_at_login(enabled: bool, minimized: bool, entry: Autostart | None = None) -> Autostart:
    """Make the login entry match the settings (``PolicySettings.start_at_login``/``start_minimized``)."""
    entry = entry or autostart()
    if enabled:
        entry.enable(launch_command(minimized))
    else:
        entry.disable()
    return entry
