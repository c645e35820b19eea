"""A lock changed without a version bump, with a real node: the update is set up in a folder of its own
beside the environment in use; when it cannot finish (here: the package index cannot be reached), the node
serves from the environment it had, untouched, and says so. While it serves, `farnode-desktop engine remove`
is refused with exit code 2 and the environment stays whole.

The environment in use is a hard-linked copy of the suite's shared one in a private engine root (as a user's
data folder holds it): a removal that went wrong would take only the copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.engine_lock import lock_digest, lock_path
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.node.engine_venv import EngineEnv, env_root
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import Settings, SettingsStore
from tests.support import REPO
from tests.support.ports import free_port

pytestmark = pytest.mark.engine



def test_a_lock_update_that_cannot_finish_keeps_the_node_on_its_environment_which_cannot_be_removed(
        tmp_path, monkeypatch, engine_root):
    home = tmp_path / "home"
    monkeypatch.setenv("FARNODE_HOME", str(home))
    monkeypatch.delenv("FARNODE_ENGINE_ROOT")  # the data folder's own engine root
    paths = AppPaths.default().ensure()
    in_use = env_root(paths.engine_root, "cpu")
    shutil.copytree(env_root(engine_root, "cpu"), in_use, symlinks=True, copy_function=os.link)

    # The next release's lock: torch rebuilt (a local version change), LOCK_VERSION unchanged.
    lock = tmp_path / "cpu.txt"
    lock.write_text(lock_path("cpu").read_text().replace("torch==2.13.0+cpu", "torch==2.13.0.post1+cpu"))
    update = env_root(paths.engine_root, "cpu", lock)
    assert update != in_use and update.name.startswith(in_use.name.rsplit("-", 1)[0])
    assert update.name.endswith(lock_digest(lock)[:12])
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # this machine is offline
    monkeypatch.setenv("FARNODE_TORCH_INDEX", "")
    before = sorted(p.relative_to(in_use) for p in in_use.rglob("*"))

    settings = Settings()
    settings.network.port = free_port()
    settings.network.demo_traffic_per_minute = 60
    SettingsStore(paths.settings_file).save(settings)
    seen: list[C.EngineProgress] = []
    node = NodeController(paths, EventBus(), engine=EngineEnv(paths, "cpu", lock_file=lock))
    try:
        node.start(seen.append)
        st = node.supervisor.wait_for({C.ONLINE, C.FAILED, C.HELD}, 240)
        assert st.state == C.ONLINE, st
        status = node.engine.status()
        assert status.ready and status.previous and Path(status.path) == in_use / "venv"
        assert status.probe.engine == "farmesh"
        assert any("the engine update did not complete" in p.step and "running the previous engine" in p.step
                   for p in seen), [p.step for p in seen]
        assert node.supervisor.config["model"].endswith("farmesh-demo-llama31-v2")
        assert update.is_dir() and not (update / "ready.json").exists()  # the update waits beside it

        # The user tries to remove the engine while the node serves from it.
        done = subprocess.run([sys.executable, "-m", "farnode_desktop", "engine", "remove", "--variant", "cpu"],
                              capture_output=True, text=True, cwd=REPO, timeout=120,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert done.returncode == 2, done
        assert done.stderr.startswith(f"Engine environment busy: The engine environment {in_use} is in use by ")
        assert "Stop the node" in done.stderr
        assert node.supervisor.state.state == C.ONLINE
        assert node.traffic.wait_for(lambda s: s.ok >= 2, 180), node.traffic.stats
        assert node.traffic.stats.errors == 0 and node.traffic.stats.mismatches == 0
    finally:
        node.stop()
        node.close()
    assert sorted(p.relative_to(in_use) for p in in_use.rglob("*") if "__pycache__" not in p.parts) == \
        [p for p in before if "__pycache__" not in p.parts]
