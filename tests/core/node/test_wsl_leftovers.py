"""What a dead app left running inside WSL is ended at the next start (over the stand-in wsl.exe, real
processes, no engine): killing wsl.exe does not reach the Linux side, so the pid the launcher reported from
inside is recorded and its process group there is killed, only while it is still the engine's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.node.runtimes.wsl import Wsl2Runtime
from farnode_desktop.core.node.supervisor import Supervisor
from tests.support.processes import cmdline
from tests.support.wait import wait_until
from tests.support.wsl_standin import WslStandin


@pytest.fixture
def machine(tmp_path):
    m = WslStandin(tmp_path / "pc")
    m.add_distro("Ubuntu", state="Running")
    yield m
    m.kill_everything()


@pytest.fixture
def supervisor(app_paths, machine):
    rt = Wsl2Runtime(source_root="/nowhere", variant="cpu", wsl=str(machine.exe),
                     host_env={"PATH": os.environ["PATH"]})
    sup = Supervisor(EngineEnv(app_paths, "cpu"), EventBus(), log_dir=app_paths.log_dir, run_dir=app_paths.run_dir,
                     runtime=rt)
    yield sup
    sup.close()


def start_inside(sup: Supervisor, machine: WslStandin, *tag: str) -> tuple[subprocess.Popen, int]:
    """A process group inside the distribution led by a process whose command line looks like the engine's
    (as the launcher leads its group there: ``setsid -w``). Returns wsl.exe and the leader's pid."""
    argv = sup.runtime.wsl_cmd("setsid", "-w", "python3", "-c", "import time; time.sleep(300)", *tag)
    host = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        leader = wait_until(lambda: [p for p in machine.inside_pids() if _leads_python(p)], 30)
        assert leader
    except BaseException:  # nothing of it for a later test to find (its pipe unclosed, a warning there)
        host.kill()
        host.wait()
        host.stdin.close()
        raise
    return host, leader[0]


def _leads_python(pid: int) -> bool:
    """``pid`` runs ``python3 -c`` and leads its process group (a process that vanished does neither)."""
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return False
    return cmdline(proc).startswith("python3 -c ") and _pgid(pid) == pid


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def dead_app() -> tuple[int, float]:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(p.pid).create_time()
    p.wait()
    return p.pid, started


def record(sup: Supervisor, host: subprocess.Popen, engine_pid: int) -> None:
    app_pid, app_started = dead_app()
    sup.run_dir.mkdir(parents=True, exist_ok=True)
    sup.pid_file.write_text(json.dumps({"pid": host.pid, "grouped": True, "started": 0, "app_pid": app_pid,
                                        "app_started": app_started, "engine_pid": engine_pid,
                                        "runtime": "wsl2"}))


def test_a_dead_apps_server_inside_wsl_is_ended_at_the_next_start(supervisor, machine):
    host, leader = start_inside(supervisor, machine, "farnode_desktop.engine.launcher")
    record(supervisor, host, leader)
    os.killpg(host.pid, signal.SIGKILL)  # taskkill /f /t: the app and wsl.exe die, the Linux side lives on
    host.wait()
    host.stdin.close()
    assert leader in machine.inside_pids()
    assert supervisor.cleanup_leftovers() >= 1
    assert machine.wait_empty(timeout=10) < 10
    assert not supervisor.pid_file.exists()


def test_a_reused_pid_inside_wsl_is_left_alone(supervisor, machine):
    host, leader = start_inside(supervisor, machine, "someone-elses-program")
    record(supervisor, host, leader)
    os.killpg(host.pid, signal.SIGKILL)
    host.wait()
    host.stdin.close()
    supervisor.cleanup_leftovers()
    assert leader in machine.inside_pids() and psutil.Process(leader).status() != psutil.STATUS_ZOMBIE
