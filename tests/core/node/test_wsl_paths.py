"""Paths and slow starts on the Windows path, over the stand-in wsl.exe: a data folder with spaces and non-ASCII
characters on another drive works (the engine writes the demo model there through /mnt/d), a network folder
and a WSL that does not answer in time each get one clear message, a 10 s cold start just works."""

from __future__ import annotations

import os
import time

import pytest

from farnode_desktop.core.node.demo_swarm import ensure_demo_model
from farnode_desktop.core.node.runtimes.base import EngineRuntimeError, run_step
from farnode_desktop.core.node.runtimes.wsl import Wsl2Runtime
from farnode_desktop.core.paths import AppPaths
from tests.support import REPO
from tests.support.wsl_standin import WslStandin


def runtime_for(m: WslStandin) -> Wsl2Runtime:
    return Wsl2Runtime(source_root=REPO, variant="cpu", wsl=str(m.exe),
                       host_env={"PATH": os.environ["PATH"], "FARNODE_WINDOWS_DRIVES": f"c={m.drive_c};d={m.drive_d}"})


def status(rt: Wsl2Runtime):
    return rt.parse_status([(r.returncode, r.output) for r in (run_step(s) for s in rt.status_steps())])


def test_a_cold_start_of_10_s_just_takes_longer(tmp_path):
    m = WslStandin(tmp_path / "pc", cold_start_s=10.0)
    m.add_distro("Ubuntu", state="Stopped")
    t0 = time.monotonic()
    st = status(runtime_for(m))
    assert time.monotonic() - t0 >= 10.0
    assert st.available and st.message == "The engine is not set up in WSL yet."


def test_wsl_that_does_not_answer_in_time_is_one_clear_message(tmp_path):
    m = WslStandin(tmp_path / "pc", cold_start_s=5.0)
    m.add_distro("Ubuntu")
    rt = runtime_for(m)
    rt.status_timeout_s = 2.0
    st = status(rt)
    assert not st.available
    assert st.message.startswith("WSL did not answer within 2 s") and "wsl --shutdown" in st.message
    m.kill_everything()


def test_a_network_folder_is_one_clear_message(tmp_path):
    rt = runtime_for(WslStandin(tmp_path / "pc"))
    with pytest.raises(EngineRuntimeError) as err:
        rt.translate_path(r"\\nas\games\FarNode")
    assert "network path" in err.value.message and "Settings" in err.value.message


@pytest.mark.engine
def test_a_data_folder_on_another_drive_with_spaces_and_umlauts(tmp_path, monkeypatch, engine_root):
    from farnode_desktop.core.engine_lock import env_folder_name, lock_digest, lock_path

    m = WslStandin(tmp_path / "pc")
    m.add_distro("Ubuntu")
    rt = runtime_for(m)
    m.provision_engine("Ubuntu", str(rt.engine_dir), engine_root / env_folder_name("cpu") / "venv", REPO,
                       {"lock": lock_digest(lock_path("cpu")), "variant": "cpu"})
    monkeypatch.setenv("FARNODE_HOME", str(m.drive_path(r"D:\Spiele Daten\FarNode Jöns")))
    paths = AppPaths.default().ensure()
    assert rt.translate_path(paths.models_dir) == "/mnt/d/Spiele Daten/FarNode Jöns/data/models"
    try:
        model = ensure_demo_model(paths, rt)
    finally:
        m.kill_everything()
    assert (model / "config.json").is_file() and (model / "model.safetensors").is_file()
    assert str(model).startswith(str(m.drive_d))
    made = [c for c in m.calls() if "farnode_desktop.engine.make_model" in c["argv"]]
    assert made and "/mnt/d/Spiele Daten/FarNode Jöns/data/models/" in " ".join(made[0]["argv"])
