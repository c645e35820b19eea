"""Linux: Steam games from /proc, and start at login through an XDG autostart entry."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from farnode_desktop import APP_ID, APP_NAME
from farnode_desktop.core.atomic import atomic_write_text
from farnode_desktop.core.errors import FarNodeError, user_facing_os_errors
from farnode_desktop.core.policies.platform.base import Autostart

# ---------------------------------------------------------------------------------------------------------
# Steam: a game started by Steam has SteamAppId/SteamGameId in its environment; Proton and the Steam Linux
# Runtime start it under ``reaper SteamLaunch AppId=<id> -- ...``.

_ENV_KEYS = (b"SteamAppId=", b"SteamGameId=")


def steam_app_from_environ(data: bytes) -> str | None:
    """The Steam app id in a NUL-separated environment block (``/proc/<pid>/environ``), or None."""
    for key in _ENV_KEYS:
        for entry in data.split(b"\0"):
            if entry.startswith(key):
                value = entry[len(key):].decode("ascii", "replace").strip()
                if value.isdigit() and int(value) > 0:
                    return str(int(value))
    return None


def steam_app_from_cmdline(args: list[str]) -> str | None:
    """The app id of ``reaper SteamLaunch AppId=<id> ...`` (Steam's launcher), or None."""
    if "SteamLaunch" not in args:
        return None
    for a in args:
        if a.startswith("AppId="):
            value = a[len("AppId="):]
            if value.isdigit() and int(value) > 0:
                return str(int(value))
    return None


def _read(path: str) -> bytes:
    """A file's bytes, by a plain string path. Not ``Path(...) / pid``: pathlib interns every part of a path
    (``sys.intern``), and a scan that names each of some hundreds of processes, every 15 s, put each pid into
    Python's table of interned strings and took it out again; the table grows by its dummies until it is
    rebuilt, and in the window (more interned names than the headless node) rebuilt at twice its size, 1.9 ->
    3.8 MB, after about 80 minutes of a soak run."""
    with open(path, "rb") as f:
        return f.read()


class ProcSteamDetector:
    """Finds a running Steam game among the user's processes in ``proc`` (default ``/proc``).

    A scan reads every process's cmdline and environment (a few ms); results are reused for
    ``min_interval_s`` seconds. Processes of other users cannot be read and are skipped.
    """

    def __init__(self, proc: Path = Path("/proc"), *, min_interval_s: float = 15.0,
                 exclude_pids: Callable[[], Iterable[int]] = tuple, clock: Callable[[], float] = time.monotonic):
        self._proc = Path(proc)
        self._min_interval_s = min_interval_s
        self._exclude = exclude_pids
        self._clock = clock
        self._cached: tuple[float, str | None] | None = None

    def running_game(self) -> str | None:
        now = self._clock()
        if self._cached is not None and now - self._cached[0] < self._min_interval_s:
            return self._cached[1]
        found = self.scan()
        self._cached = (now, found)
        return found

    def scan(self) -> str | None:
        skip = {os.getpid(), *self._exclude()}
        try:
            entries = list(os.scandir(self._proc))
        except OSError:
            return None
        for e in entries:
            if not e.name.isdigit() or int(e.name) in skip:
                continue
            try:
                raw = _read(f"{e.path}/cmdline")
                app = steam_app_from_cmdline([a.decode("utf-8", "replace") for a in raw.split(b"\0") if a])
                if app is None:
                    app = steam_app_from_environ(_read(f"{e.path}/environ"))
            except OSError:  # gone, or another user's process
                continue
            if app is not None:
                return app
        return None


# ---------------------------------------------------------------------------------------------------------
# XDG autostart (https://specifications.freedesktop.org/autostart-spec/)

_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def desktop_exec_quote(args: list[str]) -> str:
    """Quote ``args`` for the ``Exec`` key of a .desktop file (Desktop Entry spec, "The Exec key").

    An argument with a reserved character is put in double quotes with ``"`$\\`` escaped by a backslash;
    ``%`` becomes ``%%``; then the value is escaped as a desktop-entry string (``\\`` -> ``\\\\``).
    """
    out = []
    for a in args:
        if not a or any(c in "\n\r\0" for c in a):
            raise FarNodeError(f"The program path {a!r} cannot be written into an autostart entry.",
                               title="Start at login is not possible")
        a = a.replace("%", "%%")
        if any(c in _RESERVED for c in a):
            a = '"' + "".join("\\" + c if c in '"`$\\' else c for c in a) + '"'
        out.append(a)
    return " ".join(out).replace("\\", "\\\\")


def desktop_exec_split(value: str) -> list[str]:
    """The inverse of :func:`desktop_exec_quote` (for an entry this app or a person wrote)."""
    # 1. desktop-entry string escapes
    s, i, unesc = value, 0, []
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            unesc.append({"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            unesc.append(s[i])
            i += 1
    s = "".join(unesc)
    # 2. Exec quoting
    args: list[str] = []
    cur: list[str] | None = None
    i = 0
    while i < len(s):
        c = s[i]
        if c == '"':
            cur = cur if cur is not None else []
            i += 1
            while i < len(s) and s[i] != '"':
                if s[i] == "\\" and i + 1 < len(s):
                    i += 1
                cur.append(s[i])
                i += 1
            i += 1
        elif c in " \t":
            if cur is not None:
                args.append("".join(cur))
                cur = None
            i += 1
        else:
            cur = (cur if cur is not None else []) + [c]
            i += 1
    if cur is not None:
        args.append("".join(cur))
    return [a.replace("%%", "%") for a in args]


def _desktop_entry(path: Path) -> dict[str, str] | None:
    """The keys of the ``[Desktop Entry]`` group, or None when the file is missing or unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    keys: dict[str, str] = {}
    group = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
        elif group == "Desktop Entry" and "=" in line:
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), v.strip())
    return keys


class XdgAutostart(Autostart):
    """``$XDG_CONFIG_HOME/autostart/farnode-desktop.desktop`` (``~/.config`` when the variable is unset).

    The folder is looked up at each call. An entry counts as enabled when it exists, has an Exec line and
    is not switched off by ``Hidden=true`` or ``X-GNOME-Autostart-enabled=false`` (how desktop settings
    disable an entry without deleting it).
    """

    def __init__(self, config_home: Path | None = None):
        self._config_home = config_home

    @property
    def path(self) -> Path:
        base = self._config_home
        if base is None:
            env = os.environ.get("XDG_CONFIG_HOME", "")
            base = Path(env) if env and os.path.isabs(env) else Path.home() / ".config"
        return base / "autostart" / f"{APP_ID}.desktop"

    @property
    def location(self) -> str:
        return str(self.path)

    def is_enabled(self) -> bool:
        keys = _desktop_entry(self.path)
        if not keys or not keys.get("Exec"):
            return False
        return (keys.get("Hidden", "false").lower() != "true"
                and keys.get("X-GNOME-Autostart-enabled", "true").lower() != "false")

    def command(self) -> list[str] | None:
        keys = _desktop_entry(self.path)
        if not keys or not keys.get("Exec"):
            return None
        return desktop_exec_split(keys["Exec"])

    def enable(self, command: list[str]) -> None:
        text = "\n".join([
            "[Desktop Entry]",
            "Type=Application",
            f"Name={APP_NAME}",
            "Comment=Lend your NVIDIA GPU to the FarMesh network",
            f"Exec={desktop_exec_quote(command)}",
            f"Icon={APP_ID}",
            "Terminal=false",
            "X-GNOME-Autostart-enabled=true",
            "",
        ])
        with user_facing_os_errors(f"writing the autostart entry {self.path}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, text, mode=0o644)

    def disable(self) -> None:
        with user_facing_os_errors(f"removing the autostart entry {self.path}"):
            self.path.unlink(missing_ok=True)
