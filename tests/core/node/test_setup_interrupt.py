"""Ctrl-C during the engine set-up of a fresh environment: uv stops at once, nothing of the set-up is left
running, and the next start continues where the first one stopped.

The app is the real ``farnode-desktop node`` on a private data folder and a fresh engine folder. Its uv
installs from a real package index on 127.0.0.1 that holds, for every package of the shipped lock, a small
stand-in of that name and version (the internet is what tests fake); the second package of the lock is
served slowly, so that uv is in the middle of the lock's main run when Ctrl-C comes (torch, the first, is
installed in a run of its own before it). The stand-ins are not the files the shipped lock's hashes name, so the
app runs on the shipped lock without its hashes (``FARNODE_ENGINE_LOCKS``); the hashes are tested in
test_engine_env.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from farnode_desktop.core.engine_lock import LOCKS_ENV, lock_path, read_lock
from farnode_desktop.core.node.engine_venv import EngineEnv, find_uv
from farnode_desktop.core.paths import AppPaths
from tests.support import REPO
from tests.support.wait import load_factor

from .package_index import PackageIndex, make_wheel


class App:
    """``farnode-desktop node`` as a user runs it, its output collected line by line."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "farnode_desktop", "node", "--no-traffic"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=str(REPO))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_line(self, predicate, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        return None

    def ctrl_c(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(5)
        self.proc.stdout.close()


def setup_processes(engine_root: Path) -> list[str]:
    """Processes that belong to the engine set-up: anything running from or on the engine folder."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if str(engine_root) in cmd:
            out.append(f"{p.pid}: {cmd}")  # whole: the package name comes last
    return out


@pytest.fixture
def stand_in_index(tmp_path, monkeypatch):
    lock = read_lock(lock_path("cpu"))
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "cpu.txt").write_text("".join((f"{r.spec} @ {r.url}" if r.url else r.spec) + "\n" for r in lock))
    monkeypatch.setenv(LOCKS_ENV, str(locks))
    wheels = tmp_path / "wheels"
    for i, req in enumerate(lock):
        make_wheel(wheels, req.name, req.version, payload_bytes=3_000_000 if i == 1 else 0)
    index = PackageIndex(wheels, rate=500_000)  # the second package takes 6 s to download
    yield index, lock
    index.close()


def test_ctrl_c_during_engine_setup_stops_uv_at_once_and_the_next_start_resumes(tmp_path, stand_in_index,
                                                                                monkeypatch):
    if find_uv() is None:
        pytest.fail("uv is missing (a dependency of the app): run scripts/setup.sh, or set FARNODE_UV to a uv "
                    "binary.")
    index, lock = stand_in_index
    engine_root = tmp_path / "engines"
    monkeypatch.setenv("FARNODE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(engine_root))
    env = {**os.environ, **index.pip_env()}
    env.pop("DISPLAY", None)
    first, second = lock[0], lock[1]
    assert first.name == "torch"
    main_run = f"installing {len(lock) - 2} packages with uv ("  # all but torch and the engine itself

    app = App(env)
    try:
        assert app.wait_line(lambda s: f"installed {first.name} " in s, 120), "\n".join(app.lines)
        assert app.wait_line(lambda s: main_run in s, 60), "\n".join(app.lines)
        time.sleep(1.0)  # uv is downloading the second package now (6 s at this rate)
        assert any("uv" in p and " pip install " in p for p in setup_processes(engine_root)), \
            setup_processes(engine_root)
        app.ctrl_c()
        time.sleep(2.0)
        # The local chain's anvil, installed in the engine folder too, may still be starting beside the set-up; it
        # is stopped in order (the start finished, its state written, then SIGINT), which can take longer than 2 s
        # on a loaded machine (CI: still running then). It must be gone once the app has exited.
        chain = f"{engine_root}{os.sep}anvil{os.sep}"
        assert [p for p in setup_processes(engine_root) if chain not in p] == [], "still running 2 s after Ctrl-C"
        # The app has said "Stopped." by then; its interpreter's own exit can take longer on a loaded machine
        # (a fresh-clone run beside two soak runs, load average 16 on 2 cores: still exiting after 2 s).
        try:
            app.proc.wait(10 * load_factor())
        except subprocess.TimeoutExpired:
            pytest.fail("the app did not exit after Ctrl-C:\n" + "\n".join(app.lines))
        assert setup_processes(engine_root) == [], "left running after the app exited"
    finally:
        app.close()
    engine = EngineEnv(AppPaths.default(), "cpu")
    missing = [r.name for r in engine.missing()]
    assert first.name not in missing and second.name in missing  # the cut-short run counts as not installed

    index.rate = 0  # the network is fast now
    again = App(env)
    try:
        line = again.wait_line(lambda s: "installing " in s, 120)
        assert line is not None and main_run in line, "\n".join(again.lines)
        assert not any(f"installing {first.name} " in s or f"installed {first.name} " in s for s in again.lines)
        assert again.wait_line(lambda s: f"installed {second.name} {second.version} " in s, 120), \
            "\n".join(again.lines)
        again.ctrl_c()
        assert again.proc.wait(20) == 0, "\n".join(again.lines)
    finally:
        again.close()
    assert setup_processes(engine_root) == []


def test_an_unreachable_torch_index_is_skipped_for_pips_configured_sources(tmp_path, stand_in_index, monkeypatch):
    """PyTorch's index cannot be reached (a closed port stands for it), but pip is configured with a package
    index that has torch: as pip itself would, the set-up takes torch from there instead of failing."""
    from tests.support.ports import free_port

    index, lock = stand_in_index
    index.rate = 0
    monkeypatch.setenv("FARNODE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(tmp_path / "engines"))
    env = {**os.environ, **index.pip_env(), "FARNODE_TORCH_INDEX": f"http://127.0.0.1:{free_port()}/simple/"}
    env.pop("DISPLAY", None)
    app = App(env)
    try:
        assert app.wait_line(lambda s: f"installed {lock[0].name} " in s, 120), "\n".join(app.lines)
        app.ctrl_c()
        app.proc.wait(30)
    finally:
        app.close()
    engine = EngineEnv(AppPaths.default(), "cpu")
    assert lock[0].name not in [r.name for r in engine.missing()]
