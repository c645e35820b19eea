"""The GPU plan of a gamer's PC, really started: NVML faked at pynvml (an RTX 4090, an RTX 3060, a 6 GB RTX
2060), the tiny hub model from the offline cache, one server per GPU as planned (cuda pinned per GPU, blocks,
every interface), then run on the CPU (the only override: there is no GPU here). They form one network."""

from __future__ import annotations

import dataclasses

import psutil
import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.gpu.nvml import Nvml
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import SettingsStore
from tests.support.fake_pynvml import FakePynvml
from tests.support.gpus import GAMER_GPUS
from tests.support.ports import free_port
from tests.support.processes import cmdline, descendants, name

from .conftest import MODEL_ID, START_TIMEOUT_S, node_settings

pytestmark = pytest.mark.engine


def test_the_three_gpu_plan_runs(tmp_path, network_env):
    home = tmp_path / "gamer"
    paths = AppPaths(home / "config", home / "data", home / "logs", home / "cache").ensure()
    # A network of its own on this computer: announced on 127.0.0.1 so that all traffic stays on loopback.
    settings = node_settings(peers=[], blocks=0, device="auto", host="", announce_address="127.0.0.1",
                             port=free_port())
    SettingsStore(paths.settings_file).save(settings)
    node = NodeController(paths, EventBus(), engine=EngineEnv(paths, "cpu"), nvml=Nvml(module=FakePynvml(GAMER_GPUS)))
    try:
        node.prepare()
        specs = node.server_specs()
        plan = node.plan
        assert plan.model == MODEL_ID and plan.model_source == "cache"
        assert [s.node_id for s in plan.servers] == ["gpu-0", "gpu-1", "gpu-2"]
        for server, gpu in zip(plan.servers, GAMER_GPUS, strict=True):
            assert server.device == "cuda" and server.env["CUDA_VISIBLE_DEVICES"] == gpu.uuid
            assert server.num_blocks == 8 and server.quantization == "none" and server.torch_dtype == "float32"
            port = server.config["port"]
            assert server.listen == (f"/ip4/0.0.0.0/tcp/{port}", f"/ip6/::/tcp/{port}")
            assert server.announce == (f"/ip4/127.0.0.1/tcp/{port}",)
        # No GPU exists here: the same plan on the CPU.
        cpu_specs = [dataclasses.replace(s, config=dict(s.config, device="cpu")) for s in specs]
        node._user_wants_running = True
        node._start_specs(cpu_specs)
        for node_id in ("gpu-0", "gpu-1", "gpu-2"):
            state = node.supervisors[node_id].wait_for({C.ONLINE, C.FAILED, C.HELD}, START_TIMEOUT_S)
            assert state.state == C.ONLINE, (node_id, state, node.supervisors[node_id].log_path)
        lead = node.supervisors["gpu-0"]
        assert lead.config.get("new_swarm")
        for node_id in ("gpu-1", "gpu-2"):  # the followers joined the first server's network
            assert node.supervisors[node_id].config["initial_peers"] == list(lead.peer.addrs)
        for spec in cpu_specs:
            sup = node.supervisors[spec.node_id]
            assert psutil.Process(sup.pid).environ()["CUDA_VISIBLE_DEVICES"] == spec.env["CUDA_VISIBLE_DEVICES"]
            daemons = [p for p in descendants(sup.pid) if name(p) == "p2pd"]
            port = spec.config["port"]
            assert any(f"/ip4/0.0.0.0/tcp/{port}" in cmdline(d) for d in daemons)
            assert set(sup.stats().blocks) == set(range(8))
        assert len({s.peer_id for s in node.running_servers()}) == 3
    finally:
        node._user_wants_running = False
        node.stop()
        node.close()
