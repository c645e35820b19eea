"""The engine set-up on the Windows path, over the stand-in wsl.exe (no engine needed): a first start with no
distribution installs one, with progress; Ctrl-C (the headless face's stop) ends it at once, and what a set-up
step ran inside WSL ends with it, although killing wsl.exe alone leaves it running there."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.node.runtimes.base import SetupStep, run_steps
from farnode_desktop.core.node.runtimes.wsl import Wsl2Runtime
from farnode_desktop.core.paths import AppPaths
from tests.support.wait import wait_until
from tests.support.wsl_standin import WslStandin

SECRET = "hf_LeakCheckTokenDoNotCross0123"


@pytest.fixture
def machine(tmp_path):
    m = WslStandin(tmp_path / "pc")
    yield m
    m.kill_everything()


def runtime_for(m: WslStandin) -> Wsl2Runtime:
    return Wsl2Runtime(source_root="/nowhere", variant="cpu", wsl=str(m.exe),
                       host_env={"PATH": os.environ["PATH"], "FARNODE_WINDOWS_DRIVES": f"c={m.drive_c}"})


def run_in_thread(fn):
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def test_a_cancelled_step_ends_what_it_ran_inside(machine):
    machine.add_distro("Ubuntu", state="Running")
    rt = runtime_for(machine)
    slow = SetupStep("downloading", rt.sh("sleep 300 & sleep 301; wait"))

    # as WSL behaves: the step's wsl.exe killed, its Linux processes keep running
    cancel = threading.Event()
    t, box = run_in_thread(lambda: run_steps([slow], cancel=cancel.is_set))
    assert wait_until(lambda: len(machine.inside_pids()) >= 3, 30)
    cancel.set()
    t.join(15)
    assert "cancelled" in box["error"].message
    time.sleep(1)
    assert len(machine.inside_pids()) >= 3
    machine.kill_everything()

    # the runtime's own steps are tagged: the cancel ends them inside too
    cancel = threading.Event()
    t, box = run_in_thread(lambda: run_steps([rt.tagged_step(slow)], cancel=cancel.is_set))
    assert wait_until(lambda: len(machine.inside_pids()) >= 3, 30)
    cancel.set()
    t.join(15)
    assert "cancelled" in box["error"].message
    assert machine.wait_empty(timeout=5) < 5


@pytest.fixture
def windows_app(machine, monkeypatch):
    """The app's environment on the Windows path: data under C:\\Users\\Jöns Smith\\AppData, wsl.exe the
    stand-in, pip inside WSL pointed (by the user's WSLENV) at an index on this computer that never answers, and
    secrets in the environment, named in WSLENV too."""
    home = machine.drive_path(r"C:\Users\Jöns Smith\AppData\Local\FarNode")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/simple"
    for key, value in {"FARNODE_HOME": str(home), "FARNODE_PLATFORM": "win32", "FARNODE_WSL_EXE": str(machine.exe),
                       "FARNODE_WINDOWS_DRIVES": f"c={machine.drive_c};d={machine.drive_d}",
                       "FARNODE_TORCH_INDEX": url, "PIP_INDEX_URL": url, "HF_TOKEN": SECRET, "FARNODE_SECRET_KEY": SECRET,
                       "WSLENV": "PIP_INDEX_URL:HF_TOKEN:FARNODE_SECRET_KEY/u"}.items():
        monkeypatch.setenv(key, value)
    yield AppPaths.default().ensure()
    silent.close()


def test_first_start_installs_a_distribution_with_progress_and_ctrl_c_ends_the_setup(machine, windows_app):
    machine.write_config(install_s=60)
    node = NodeController(windows_app, EventBus())
    progress: list[C.EngineProgress] = []
    try:
        assert node.supervisor.runtime.name == "wsl2"
        t, box = run_in_thread(lambda: node.start(progress.append))
        assert wait_until(lambda: any(p.step == "installing Ubuntu in WSL" for p in progress), 60), progress
        t0 = time.monotonic()
        node.stop()  # Ctrl-C
        t.join(15)
        assert time.monotonic() - t0 < 10
        assert box["value"].state == C.STOPPED and "continues at the next start" in box["value"].message
        assert machine.calls()[-1]["argv"][:3] == ["--install", "-d", "Ubuntu"]
        assert not (machine.home / "distros" / "Ubuntu").exists()

        # the next start continues: the distribution installed and started, the engine's files copied, its
        # environment made; Ctrl-C while pip waits inside WSL ends pip there too
        machine.write_config(install_s=0)
        progress.clear()
        t, box = run_in_thread(lambda: node.start(progress.append))
        assert wait_until(lambda: any(p.step.startswith("installing torch") for p in progress), 180), progress
        assert wait_until(lambda: any("pip" in c for c in machine.inside_cmdlines()), 30)
        steps = [p.step for p in progress]
        assert steps[:5] == ["installing Ubuntu in WSL", "starting Ubuntu", "installing Python in WSL",
                             "copying the engine files into WSL", "creating the engine environment in WSL"]
        percents = [p.percent for p in progress]
        assert percents == sorted(percents) and percents[-1] > 0
        assert machine.state()["version"] == 2
        node.stop()
        t.join(15)
        assert box["value"].state == C.STOPPED
        assert machine.wait_empty(timeout=10) < 10
        # the key-leak scan: no secret of the app's environment crossed wsl.exe, WSLENV naming them or not
        calls = machine.calls()
        assert len(calls) > 8 and any(c["inner_env"] and "PIP_INDEX_URL" in c["inner_env"] for c in calls)
        for call in calls:
            assert SECRET not in json.dumps([call["argv"], call["env"], call["inner_env"]]), call["argv"][:6]
    finally:
        node.close()


def test_wsl_not_installed_is_one_clear_message(tmp_path, windows_app, monkeypatch):
    absent = WslStandin(tmp_path / "pc2", installed=False)
    monkeypatch.setenv("FARNODE_WSL_EXE", str(absent.exe))
    node = NodeController(windows_app, EventBus())
    try:
        with pytest.raises(FarNodeError) as err:
            node.start()
        assert "wsl --install --no-distribution" in err.value.message
        assert node.state.state == C.FAILED
    finally:
        node.close()
