"""Fixtures and helpers for tests of the app's two faces (the window and the headless node), each run as
a user runs it: ``farnode-desktop gui`` or ``farnode-desktop node`` in its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from farnode_desktop.core.paths import AppPaths
from tests.support import REPO
from tests.support.wait import scaled

SHIM = REPO / "tests" / "support" / "pynvml_shim"


@pytest.fixture
def home(tmp_path) -> Path:
    """A data folder (FARNODE_HOME) for app processes; not set in this process's environment."""
    h = tmp_path / "home"
    (h / "config").mkdir(parents=True)
    return h


def paths_of(home: Path) -> AppPaths:
    return AppPaths(home / "config", home / "data", home / "logs", home / "cache")


def write_settings(home: Path, settings: dict, *, contributing: bool = True) -> None:
    """The settings file (so no first-run wizard), and for the window: start the node on launch."""
    (home / "config" / "settings.json").write_text(json.dumps(settings))
    (home / "config" / "gui-state.json").write_text(json.dumps({"contributing": contributing}))


def app_env(home: Path, engine_root: Path, *, fake_nvml: Path | None = None) -> dict:  # noqa: F811
    env = dict(os.environ, FARNODE_HOME=str(home), FARNODE_ENGINE_ROOT=str(engine_root),
               XDG_CONFIG_HOME=str(home / "xdg"), PYTHONUNBUFFERED="1")
    path = [str(REPO)]
    if fake_nvml is not None:
        path.insert(0, str(SHIM))
        env["FARNODE_TEST_FAKE_NVML"] = str(fake_nvml)
    env["PYTHONPATH"] = os.pathsep.join(path + [p for p in [env.get("PYTHONPATH")] if p])
    return env


class Face:
    """One launch of the app: ``farnode-desktop node --json`` (headless) or ``farnode-desktop gui`` (window,
    on Qt's offscreen platform unless ``display`` is given). ``state()`` and ``message()`` read the node's
    state from the JSON Lines (headless) or the window's test hook file."""

    def __init__(self, face: str, home: Path, env: dict, *, display: str | None = None,
                 extra: tuple[str, ...] = (), wrap: tuple[str, ...] = ()) -> None:
        self.face = face
        self.home = home
        self.lines: list[dict] = []
        self.bad_lines: list[str] = []
        self.hook = home / f"hook-{time.monotonic_ns()}.json"
        self.stderr_path = home / f"{face}-{time.monotonic_ns()}.err"
        env = dict(env)
        if face == "headless":
            argv = [sys.executable, "-m", "farnode_desktop", "node", "--json", *extra]
        else:
            argv = [sys.executable, "-m", "farnode_desktop", "gui", *extra]
            env["FARNODE_TEST_STATE_FILE"] = str(self.hook)
            if display:
                env["DISPLAY"], env["QT_QPA_PLATFORM"] = display, "xcb"
            else:
                env["QT_QPA_PLATFORM"] = "offscreen"
        argv = [*wrap, *argv]  # e.g. prlimit: limits the app, and the engine it starts inherits them
        self._err = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=self._err,
                                     text=True)
        self.stdout: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.stdout.append(raw)
            if self.face != "headless":
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                self.bad_lines.append(raw)
                continue
            if isinstance(obj, dict) and raw.endswith("\n"):
                self.lines.append(obj)
            else:
                self.bad_lines.append(raw)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def hook_state(self) -> dict:
        try:
            return json.loads(self.hook.read_text())
        except (OSError, ValueError):
            return {}

    def _last_state(self) -> dict:
        for obj in reversed(self.lines):
            if obj.get("topic") == "node.state" and obj.get("node_id") == "main":
                return obj
        return {}

    def state(self) -> str:
        return (self._last_state() if self.face == "headless" else self.hook_state()).get("state", "")

    def message(self) -> str:
        return (self._last_state() if self.face == "headless" else self.hook_state()).get("message", "")

    def requests(self) -> int:
        if self.face != "headless":
            return int(self.hook_state().get("requests") or 0)
        for obj in reversed(self.lines):
            if obj.get("topic") == "node.stats" and obj.get("node_id") == "main":
                return int(obj["requests"])
        return 0

    def events(self, kind: str) -> list[dict]:
        return [o for o in self.lines if o.get("topic") == "node.event" and o.get("kind") == kind]

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text()

    def wait_state(self, state: str, timeout: float) -> None:
        timeout = scaled(timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.state() == state:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.face}: not {state} after {timeout} s (state {self.state()!r}, "
                             f"exit {self.proc.poll()}):\n{self.stderr()[-3000:]}")

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.proc.wait(scaled(timeout))
        finally:
            self._reader.join(5)
            self._err.close()
            if not self._reader.is_alive():
                self.proc.stdout.close()
        return code

    def stop(self, timeout: float = 90) -> int:
        """Ctrl-C (headless) or SIGTERM (window, as a session logout does); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if self.face == "headless" else signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        self._err.close()
        if not self._reader.is_alive():
            self.proc.stdout.close()
