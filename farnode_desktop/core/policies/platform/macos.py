"""macOS: idle time from IOKit's ``HIDIdleTime`` (read through ``ioreg``) and start at login through a
LaunchAgent in ``~/Library/LaunchAgents``. Importable and testable anywhere."""

from __future__ import annotations

import plistlib
import re
import shutil
import subprocess
import xml.parsers.expat
from pathlib import Path

from farnode_desktop.core.atomic import atomic_write_bytes
from farnode_desktop.core.errors import user_facing_os_errors
from farnode_desktop.core.policies.platform.base import NOT_AVAILABLE, Autostart, IdleReading

LAUNCH_AGENT_LABEL = "org.farnode.desktop"
_IDLE_RE = re.compile(r'"HIDIdleTime"\s*=\s*(\d+)')


def parse_ioreg_idle(text: str) -> float | None:
    """Seconds since the last input from ``ioreg -c IOHIDSystem -d 4`` output (``HIDIdleTime`` is in ns)."""
    m = _IDLE_RE.search(text)
    return int(m.group(1)) / 1e9 if m else None


class MacIdleTime:
    def __init__(self, timeout_s: float = 2.0):
        self._timeout_s = timeout_s

    def idle_seconds(self) -> IdleReading:
        exe = shutil.which("ioreg") or "/usr/sbin/ioreg"
        try:
            out = subprocess.run([exe, "-c", "IOHIDSystem", "-d", "4"], capture_output=True, text=True,
                                 timeout=self._timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return IdleReading(None, f"idle time is {NOT_AVAILABLE} (ioreg: {exc})")
        seconds = parse_ioreg_idle(out.stdout) if out.returncode == 0 else None
        if seconds is None:
            return IdleReading(None, f"idle time is {NOT_AVAILABLE}: ioreg reports no HIDIdleTime")
        return IdleReading(seconds)


def launch_agent_plist(command: list[str]) -> bytes:
    """The LaunchAgent that runs ``command`` once at login, in the user's GUI session."""
    return plistlib.dumps({
        "Label": LAUNCH_AGENT_LABEL,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        "KeepAlive": False,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
    })


class MacLaunchAgent(Autostart):
    """``~/Library/LaunchAgents/org.farnode.desktop.plist``; launchd reads it at the next login.

    Enabled when the file exists, parses, has ProgramArguments and is not marked ``Disabled``.
    """

    def __init__(self, home: Path | None = None):
        self._home = home

    @property
    def path(self) -> Path:
        return (self._home or Path.home()) / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"

    @property
    def location(self) -> str:
        return str(self.path)

    def _load(self) -> dict | None:
        try:
            data = plistlib.loads(self.path.read_bytes())
        except (OSError, plistlib.InvalidFileException, ValueError, xml.parsers.expat.ExpatError):
            return None
        return data if isinstance(data, dict) else None

    def is_enabled(self) -> bool:
        data = self._load()
        return bool(data and data.get("ProgramArguments") and not data.get("Disabled", False))

    def command(self) -> list[str] | None:
        data = self._load()
        args = data.get("ProgramArguments") if data else None
        return [str(a) for a in args] if isinstance(args, list) and args else None

    def enable(self, command: list[str]) -> None:
        with user_facing_os_errors(f"writing the login item {self.path}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, launch_agent_plist(command), mode=0o644)

    def disable(self) -> None:
        with user_facing_os_errors(f"removing the login item {self.path}"):
            self.path.unlink(missing_ok=True)
