"""The window and the headless node are two faces of one app core: run as a user runs them, each one
pauses when a game takes the GPU, resumes when it exits, and records the node's metrics.

The game is a real process; it "uses the GPU" through the fake NVML's process list (the only fake: there is
no GPU here, see tests/support/pynvml_shim). The node, the policies and the metrics database are real.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from farnode_desktop.core.instance import InstanceLock
from farnode_desktop.core.metrics.store import MetricsStore

from .conftest import Face, app_env, paths_of, write_settings

pytestmark = pytest.mark.engine


def _settings(port: int) -> dict:
    return {
        "network": {"port": port, "device": "cpu", "demo_traffic_per_minute": 60},
        "policies": {"min_run_s": 2, "min_pause_s": 2, "drain_s": 2, "pause_for_steam_games": False,
                     "temperature_pause": False, "pause_for_gpu_programs": True},
    }


@pytest.mark.parametrize("face", ["headless", "window"])
def test_each_face_pauses_for_a_game_and_records_metrics(face, home, engine_root, free_port):
    nvml = home / "fake-nvml.json"
    nvml.write_text(json.dumps({"gpus": [{"name": "NVIDIA GeForce RTX 4070"}], "processes": []}))
    write_settings(home, _settings(free_port))
    app = Face(face, home, app_env(home, engine_root, fake_nvml=nvml))
    game = None
    try:
        app.wait_state("online", 240)
        deadline = time.time() + 120
        while app.requests() < 1 and time.time() < deadline:  # real demo traffic reached the node
            time.sleep(0.2)
        assert app.requests() >= 1
        time.sleep(2.5)  # the policies' minimum run time
        game = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        nvml.write_text(json.dumps({"gpus": [{"name": "NVIDIA GeForce RTX 4070"}],
                                    "processes": [[0, game.pid, 3072]]}))
        app.wait_state("paused", 60)
        assert f"pid {game.pid}) is using the GPU (3.0 GiB)" in app.message()
        assert InstanceLock(paths_of(home).run_dir).holder().pid == app.pid

        game.kill()
        game.wait()
        app.wait_state("online", 240)
        code = app.stop()
    finally:
        if game is not None and game.poll() is None:
            game.kill()
        app.kill()
    assert code == 0, app.stderr()[-3000:]
    if face == "headless":
        assert not app.bad_lines, app.bad_lines[:5]
        kinds = [e["kind"] for e in app.lines if e.get("topic") == "node.event"]
        assert "pause" in kinds and "resume" in kinds[kinds.index("pause"):], kinds
    # The metrics database of the data folder holds what the node served and its states.
    store = MetricsStore(paths_of(home).metrics_db)
    try:
        now = time.time()
        assert store.sum_between("requests", now - 3600, now + 1) >= 1
        kinds = [e.kind for e in store.events(now - 3600, now + 1)]
        assert "pause" in kinds and "online" in kinds, kinds
    finally:
        store.close()
