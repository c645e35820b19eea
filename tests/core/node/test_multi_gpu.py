"""Several GPUs: one server per contributing GPU, pinned with CUDA_VISIBLE_DEVICES, each with its own port
and status. The GPUs come from a fake NVML at the pynvml boundary (no GPU here); the servers are real."""

from __future__ import annotations

import dataclasses

import psutil
import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.gpu.nvml import Nvml
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.node.demo_swarm import ensure_demo_model
from farnode_desktop.core.settings import Settings
from tests.support.fake_pynvml import FakeGpu, FakePynvml
from tests.support.ports import free_port, port_is_free
from tests.support.processes import group_members
from tests.support.wait import wait_until

pytestmark = pytest.mark.engine
UUIDS = ("GPU-aaaaaaaa-0000-0000-0000-000000000001", "GPU-bbbbbbbb-0000-0000-0000-000000000002")


def _node(engine_paths, bus, contributing=()):
    settings = Settings()
    settings.network.port = free_port(2)  # the second GPU's server takes the port after it
    settings.network.demo_traffic_per_minute = 60
    settings.gpus.contributing = list(contributing)
    nvml = Nvml(module=FakePynvml([FakeGpu(name="NVIDIA GeForce RTX 4070", uuid=UUIDS[0]),
                                   FakeGpu(name="NVIDIA GeForce RTX 3060", uuid=UUIDS[1])]))
    node = NodeController(engine_paths, bus, settings=settings, nvml=nvml)
    node._model_path = ensure_demo_model(engine_paths, node.engine)
    return node


def test_one_server_spec_per_contributing_gpu(engine_paths, bus):
    node = _node(engine_paths, bus)
    specs = node.server_specs()
    assert [s.node_id for s in specs] == ["gpu-0", "gpu-1"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == list(UUIDS)
    ports = [s.config["port"] for s in specs]
    assert ports[1] == ports[0] + 1
    assert all(s.config["device"] == "cuda" and "fit" in s.reason for s in specs)
    assert specs[0].config["identity_path"] != specs[1].config["identity_path"]

    only_second = _node(engine_paths, bus, contributing=[UUIDS[1]])
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in only_second.server_specs()] == [UUIDS[1]]

    node.settings.network.device = "cpu"  # the user chose the CPU: one server, no pinning
    assert [(s.node_id, s.env) for s in node.server_specs()] == [("main", {})]


def test_each_gpu_server_runs_pinned_with_its_own_port_and_status(engine_paths, bus):
    node = _node(engine_paths, bus)
    # No GPU exists here: run the planned servers on the CPU, everything else as planned.
    specs = [dataclasses.replace(s, config=dict(s.config, device="cpu")) for s in node.server_specs()]
    node._user_wants_running = True
    try:
        node._start_specs(specs)
        for node_id in ("gpu-0", "gpu-1"):
            assert node.supervisors[node_id].wait_for({C.ONLINE, C.FAILED, C.HELD}, 180).state == C.ONLINE, \
                node.states()
        pids = {n: s.pid for n, s in node.supervisors.items()}
        for (_node_id, pid), uuid in zip(sorted(pids.items()), UUIDS, strict=True):
            assert psutil.Process(pid).environ()["CUDA_VISIBLE_DEVICES"] == uuid
        for spec in specs:
            assert not port_is_free(spec.config["port"])
        # The second server joined the first one's swarm: its DHT knows the first server's peer.
        assert node.supervisors["gpu-1"].peer.peer_id != node.supervisors["gpu-0"].peer.peer_id
        assert set(node.states()) == {"gpu-0", "gpu-1"}
        assert node.traffic.wait_for(lambda s: s.requests >= 2, 120) and node.traffic.stats.mismatches == 0
        assert node.stats().blocks == (0, 1, 2, 3)
    finally:
        node._user_wants_running = False
        node.stop()
        node.close()
    assert all(s.state.state == C.STOPPED for s in node.supervisors.values())
    assert wait_until(lambda: not any(group_members(p) for p in pids.values()), 10)
    assert all(port_is_free(s.config["port"]) for s in specs)
