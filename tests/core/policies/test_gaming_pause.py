"""A game grabs the GPU: the node leaves the network cleanly, and re-joins when the game exits.

The game is a real second process; it "uses the GPU" through the fake NVML's process list (the only fake:
there is no GPU here), which like the driver lists only processes that still run. The node is real.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core import topics as T
from farnode_desktop.core.gpu.inventory import processes_for_policies
from farnode_desktop.core.gpu.nvml import Nvml
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.policies.rules import PolicyRules
from farnode_desktop.core.policies.runner import PolicyInputs, PolicyRunner
from farnode_desktop.core.settings import Settings
from tests.support.fake_pynvml import MIB, FakeGpu, FakeProcess, FakePynvml
from tests.support.wait import scaled, wait_until

pytestmark = pytest.mark.engine


def test_a_game_on_the_gpu_pauses_the_node_and_its_exit_resumes_it(engine_paths, bus, free_port):
    settings = Settings()
    settings.network.port = free_port
    settings.network.device = "cpu"  # serve on the CPU; the (fake) GPU is only watched
    settings.network.demo_traffic_per_minute = 0
    pol = settings.policies
    pol.min_run_s, pol.min_pause_s, pol.drain_s = 2.0, 2.0, 2.0
    pol.pause_for_steam_games = pol.temperature_pause = False
    gpu = FakeGpu(name="NVIDIA GeForce RTX 4070")
    nvml = Nvml(module=FakePynvml([gpu], live_only=True))
    node = NodeController(engine_paths, bus, settings=settings, nvml=nvml)
    events: list[C.NodeEvent] = []
    bus.subscribe("node.event", lambda _t, e: events.append(e))
    shown: list[str] = []  # the node as the faces see it (the controller's overall state)
    bus.subscribe(T.NODE_OVERALL_STATE, lambda _t, st: shown.append(st.state))
    runner = PolicyRunner(PolicyRules(pol), bus, pause=node.pause, resume=node.resume, interval_s=0.5,
                          inputs=PolicyInputs(gpu_processes=lambda: processes_for_policies(nvml),
                                              own_pids=node.node_pids))
    game = None
    try:
        node.start()
        assert node.supervisor.wait_for(C.ONLINE, 120).state == C.ONLINE
        runner.start()
        time.sleep(pol.min_run_s)
        game = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        gpu.processes.append(FakeProcess(pid=game.pid, used_bytes=3072 * MIB))
        t0 = time.time()
        # The state turns PAUSED inside the pause callback; the runner records the pause once it returns.
        assert wait_until(lambda: node.state.state == C.PAUSED and any(e.kind == "pause" for e in events), 20), \
            (node.state, [e.kind for e in events])
        paused_after = time.time() - t0
        pause_ev = next(e for e in events if e.kind == "pause")
        assert f"pid {game.pid}) is using the GPU (3.0 GiB)" in pause_ev.message
        assert any(e.kind == "stop" for e in events if e.time >= pause_ev.time - 1)  # left the network
        assert node.supervisor.pid is None
        log_text = node.supervisor.log_path.read_text()
        assert log_text.count("are offline") == 1  # its blocks were announced offline: a clean leave

        game.kill()
        game.wait()
        assert wait_until(lambda: node.state.state == C.ONLINE, 120), node.state
        # the "online" event follows the state on the supervisor's thread
        assert wait_until(lambda: "online" in [e.kind for e in events][[e.kind for e in events].index("pause"):], 10)
        # While paused the faces were told PAUSED, never STOPPED (the server's own stop arrives meanwhile)
        during = shown[shown.index(C.PAUSED):]
        during = during[:during.index(C.ONLINE)] if C.ONLINE in during else during
        assert C.STOPPED not in during and shown[-1] == C.ONLINE, shown
        kinds = [e.kind for e in events]
        paused_at = kinds.index("pause")
        after = kinds[paused_at:]
        # The pause callback left the network (a stop) before the runner recorded the pause; after it, the
        # node re-joined: a new server start that reached online, and the resume with its reason.
        assert "stop" in kinds[:paused_at] and kinds[:paused_at].count("online") == 1, kinds
        assert "resume" in after and after.index("start") < after.index("online"), kinds
        assert paused_after < pol.min_run_s + scaled(10)  # within the configured delay (plus the clean stop)
    finally:
        runner.stop()
        if game:
            game.kill()
            game.wait()
        node.stop()
        node.close()
