"""The OS-specific things the policies need, each behind one small interface.

Every reading says why it is missing: ``None`` plus a plain-language ``reason`` ("not available on this
system ...") instead of an exception, so the policies and the GUI can show it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Protocol

NOT_AVAILABLE = "not available on this system"


@dataclass(frozen=True)
class IdleReading:
    seconds: float | None  # seconds since the user's last keyboard or mouse input; None: unknown
    reason: str = ""  # why ``seconds`` is None


class IdleTimeProvider(Protocol):
    def idle_seconds(self) -> IdleReading: ...


class SteamDetector(Protocol):
    def running_game(self) -> str | None:
        """The Steam app id of a running game, or None (also when the platform does not expose it)."""
        ...


class UnavailableIdle:
    """Idle time on a system where it cannot be measured (e.g. Wayland, no display)."""

    def __init__(self, reason: str):
        self.reason = reason

    def idle_seconds(self) -> IdleReading:
        return IdleReading(None, self.reason)


class NoSteam:
    """Where no running Steam game can be detected."""

    def running_game(self) -> str | None:
        return None


class Autostart(abc.ABC):
    """Start the app at login. Every query reads the real state, so a removal outside the app is seen."""

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the entry lives (a file path or a registry key), for the settings page."""

    @abc.abstractmethod
    def is_enabled(self) -> bool: ...

    @abc.abstractmethod
    def command(self) -> list[str] | None:
        """The command the entry runs (None when there is none)."""

    @abc.abstractmethod
    def enable(self, command: list[str]) -> None:
        """Create or replace the entry (raises FarNodeError with what to do when it cannot)."""

    @abc.abstractmethod
    def disable(self) -> None:
        """Remove the entry; nothing happens when there is none."""

    def is_minimized(self) -> bool:
        cmd = self.command()
        return bool(cmd) and "--minimized" in cmd
