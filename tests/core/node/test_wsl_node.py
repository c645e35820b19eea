"""The Windows path end to end on this machine: the app's core with its platform seam set to Windows, its data
under a fake ``C:\\Users\\Jöns Smith\\AppData``, the engine in "WSL2" through the stand-in wsl.exe
(tests/support/wsl_standin), real FarMesh processes inside, real demo traffic checked token by token.

Shown here: online with checked traffic; the app killed with SIGKILL (taskkill /f) while online and nothing of
the engine left inside the distribution within 15 s, its port free; a restart that reaches online; the app
and its wsl.exe processes killed together (taskkill /f /t), the same; pause and resume; stop and start; Quit with nothing left
inside; no secret in any command line or environment that crossed wsl.exe."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from farnode_desktop.core.engine_lock import env_folder_name, lock_digest, lock_path
from farnode_desktop.core.node.runtimes.wsl import Wsl2Runtime
from tests.support import REPO
from tests.support.ports import port_is_free
from tests.support.processes import cmdline
from tests.support.wait import wait_until
from tests.support.wsl_standin import WslStandin

pytestmark = pytest.mark.engine

APP = Path(__file__).with_name("wsl_app_process.py")
SECRETS = {"FARNODE_SECRET_KEY": "0x" + "5eC7e7" * 10 + "abcd", "HF_TOKEN": "hf_LeakCheckTokenDoNotCross0123",
           "MY_WALLET_PRIVATE_KEY": "0x" + "fa11" * 16}


@pytest.fixture
def windows_pc(tmp_path, engine_root):
    m = WslStandin(tmp_path / "pc", cold_start_s=3.0)
    m.add_distro("Ubuntu", state="Stopped")
    rt = Wsl2Runtime(source_root=REPO, variant="cpu")
    m.provision_engine("Ubuntu", str(rt.engine_dir), engine_root / env_folder_name("cpu") / "venv", REPO,
                       {"lock": lock_digest(lock_path("cpu")), "variant": "cpu"})
    yield m
    m.kill_everything()


def app_env(m: WslStandin, engine_root: Path) -> dict[str, str]:
    home = m.drive_path(r"C:\Users\Jöns Smith\AppData\Local\FarNode")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARNODE_")}
    env.update(FARNODE_HOME=str(home), FARNODE_ENGINE_ROOT=str(engine_root), FARNODE_PLATFORM="win32",
               FARNODE_WSL_EXE=str(m.exe), FARNODE_WINDOWS_DRIVES=f"c={m.drive_c};d={m.drive_d}",
               PYTHONPATH=str(REPO), WSLENV="HF_TOKEN:MY_WALLET_PRIVATE_KEY/u:FARNODE_SECRET_KEY", **SECRETS)
    return env


class App:
    """One run of the app's process; ``expect`` reads its JSON lines."""

    def __init__(self, env: dict[str, str], port: int):
        self.proc = subprocess.Popen([sys.executable, str(APP), str(port)], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=str(REPO))
        self.lines: list[dict] = []
        self._buf = b""

    def expect(self, key: str, timeout: float = 400) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                line = json.loads(raw)
                self.lines.append(line)
                if "error" in line:
                    raise AssertionError(f"the app failed: {line}")
                if key in line:
                    return line
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._buf += chunk
            elif self.proc.poll() is not None:
                break
        raise AssertionError(f"no {key!r} from the app within {timeout:.0f} s: {self.lines}")

    def send(self, cmd: str) -> None:
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def standin_hosts(m: WslStandin) -> list[int]:
    """Host-side wsl.exe processes of this machine still running."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if str(m.home) in " ".join(p.info["cmdline"] or []):
            out.append(p.pid)
    return out


def leaks_in(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def inside_leaks(m: WslStandin) -> list[str]:
    found = []
    for pid in m.inside_pids():
        for part in ("environ", "cmdline"):
            try:
                found += leaks_in(Path(f"/proc/{pid}/{part}").read_bytes().decode(errors="replace"))
            except OSError:
                continue
    return found


@pytest.mark.serial
def test_the_windows_path_end_to_end(windows_pc, engine_root, free_port):
    m = windows_pc
    env = app_env(m, engine_root)

    # 1. first start: a stopped distribution (3 s cold start), the engine set up there; online, checked traffic
    app = App(env, free_port)
    try:
        assert app.expect("started")["runtime"] == "wsl2"
        info = app.expect("online")
        assert info["engine_pid"] in m.inside_pids() and m.state()["state"] == "Running"
        traffic = app.expect("traffic")["traffic"]
        assert traffic["ok"] == traffic["requests"] >= 2 and traffic["mismatches"] == 0, traffic
        assert inside_leaks(m) == []
        # 2. the app killed (taskkill /f): its wsl.exe processes live on, and so would the server without the
        # launcher's end-of-control-pipe stop
        app.proc.send_signal(signal.SIGKILL)
        app.proc.wait()
        t0 = time.monotonic()
        gone_s = m.wait_empty(timeout=15)
        assert wait_until(lambda: port_is_free(free_port), max(1.0, 15 - (time.monotonic() - t0)))
        print(f"nothing left inside {gone_s:.1f} s after the app was killed")
        assert wait_until(lambda: not standin_hosts(m), 10), standin_hosts(m)
    finally:
        app.close()

    # 3. restart: online again; then the app and its wsl.exe processes killed together (taskkill /f /t): the
    # Linux side sees its standard input close all the same
    app = App(env, free_port)
    try:
        app.expect("online")
        app.expect("traffic")
        inside = set(m.inside_pids())  # on this machine they are the stand-in's children: not on Windows
        hosts = [p for p in psutil.Process(app.proc.pid).children(recursive=True) if p.pid not in inside]
        hosts.append(psutil.Process(app.proc.pid))
        assert any(str(m.home) in cmdline(p) for p in hosts)
        for p in hosts:
            p.kill()
        app.proc.wait()
        gone_s = m.wait_empty(timeout=15)
        assert wait_until(lambda: port_is_free(free_port), 5)
        print(f"nothing left inside {gone_s:.1f} s after the app and wsl.exe were killed")
    finally:
        app.close()

    # 4. restart: online again, pause (nothing inside), resume, stop (nothing inside), start, Quit (nothing inside)
    app = App(env, free_port)
    try:
        app.expect("online")
        assert app.expect("traffic")["traffic"]["mismatches"] == 0
        app.send("pause")
        assert app.expect("paused", 120)["paused"] == "paused"
        assert m.wait_empty(timeout=15) >= 0 and port_is_free(free_port)
        app.send("resume")
        app.expect("online")
        resumed = app.expect("traffic")["traffic"]
        assert resumed["ok"] == resumed["requests"] >= 1
        app.send("stop")
        assert app.expect("stopped", 120)["stopped"] == "stopped"
        assert m.wait_empty(timeout=5) >= 0 and port_is_free(free_port)
        app.send("start")
        app.expect("online")
        app.send("quit")
        app.expect("quit", 120)
        assert app.proc.wait(30) == 0
        assert m.wait_empty(timeout=5) >= 0 and port_is_free(free_port)
    finally:
        app.close()
    assert wait_until(lambda: not standin_hosts(m), 10), standin_hosts(m)

    # 5. the key-leak scan: every command line and environment that crossed the stand-in
    calls = m.calls()
    assert len(calls) > 10
    for call in calls:
        crossed = json.dumps([call["argv"], call["env"], call["inner_env"]], ensure_ascii=False)
        assert leaks_in(crossed) == [], call["argv"][:8]
    assert any("farnode_desktop.engine.launcher" in " ".join(c["argv"]) for c in calls)
    assert any("/mnt/c/Users/Jöns Smith/AppData/Local/FarNode" in " ".join(c["argv"]) for c in calls) or \
        (m.drive_path(r"C:\Users\Jöns Smith\AppData\Local\FarNode") / "data" / "models").is_dir()
