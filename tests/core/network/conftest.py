"""A FarMesh network on this computer, built as users build one: app nodes (separate data folders, ports and
identities) joined through the initial peers in their settings, serving a tiny Llama-3.1-style model named
by a hub id from a prepared offline Hugging Face cache.

The three-node network is made once per module that asks for it (it takes about a minute on two cores).
Every node listens and announces on 127.0.0.1, with NAT traversal, the speed test and the version check off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.engine_venv import EngineEnv, env_root
from farnode_desktop.core.node.runtimes.base import engine_subprocess_env
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import CUSTOM_SWARM, Settings, SettingsStore
from tests.support import REPO
from tests.support.hf_models import put_in_hf_cache
from tests.support.ports import free_port

MODEL_ID = "farnode-test/tiny-llama-3.1-8blocks"
BLOCKS_PER_NODE = 5
START_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, engine_root) -> Path:
    """The tiny model's files, made by the app's own generator in the engine environment (real weights)."""
    out = tmp_path_factory.mktemp("tiny-model") / "model"
    env = engine_subprocess_env()
    python = env_root(engine_root, "cpu") / "venv" / "bin" / "python"
    # the Llama-3.1 style (grouped-query attention, rope_theta 500000, llama3 rope scaling) with 8 blocks
    subprocess.run([str(python), "-m", "farnode_desktop.engine.make_model", str(out), "--family", "llama31",
                    "--layers", "8", "--seed", "7"],
                   check=True, env=env, cwd=str(REPO), capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="session")
def offline_hf_cache(tmp_path_factory, tiny_model_dir) -> Path:
    """A Hugging Face cache holding the tiny model under its hub id, as `huggingface-cli download` leaves it."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    put_in_hf_cache(cache, MODEL_ID, {p.name: p.read_bytes() for p in tiny_model_dir.iterdir() if p.is_file()})
    return cache


@dataclass
class Node:
    name: str
    home: Path
    paths: AppPaths
    core: AppCore

    @property
    def node(self):
        return self.core.node

    @property
    def sup(self):
        return self.core.node.supervisor

    @property
    def peer_id(self) -> str:
        return self.sup.peer.peer_id

    @property
    def addrs(self) -> list[str]:
        return list(self.sup.peer.addrs)

    def env(self) -> dict:
        return dict(os.environ, FARNODE_HOME=str(self.home))


def node_settings(*, peers: list[str], model: str = MODEL_ID, blocks: int = BLOCKS_PER_NODE, **net) -> Settings:
    """What a user sets for a custom network on a LAN (here: this computer's loopback)."""
    s = Settings()
    n = s.network
    n.swarm, n.model, n.initial_peers = CUSTOM_SWARM, model, list(peers)
    n.host, n.port, n.num_blocks, n.device, n.num_handlers = "127.0.0.1", free_port(), blocks, "cpu", 2
    n.nat_traversal, n.metered = False, True  # no UPnP/NAT-PMP, AutoNAT, relays, speed test or version check
    s.policies.pause_for_gpu_programs = s.policies.pause_for_steam_games = s.policies.temperature_pause = False
    for k, v in net.items():
        setattr(n, k, v)
    return s


def make_node(root: Path, name: str, settings: Settings) -> Node:
    home = root / name
    paths = AppPaths(home / "config", home / "data", home / "logs", home / "cache").ensure()
    SettingsStore(paths.settings_file).save(settings)
    from farnode_desktop.core.node.controller import NodeController
    from farnode_desktop.core.policies.runner import PolicyInputs

    bus = EventBus()
    controller = NodeController(paths, bus, engine=EngineEnv(paths, "cpu"))
    core = AppCore(paths, bus=bus, node=controller, policy_inputs=PolicyInputs(own_pids=controller.node_pids))
    return Node(name, home, paths, core)


def start(node: Node, timeout: float = START_TIMEOUT_S) -> None:
    node.core.start_node()
    state = node.sup.wait_for({C.ONLINE, C.FAILED, C.HELD}, timeout)
    assert state.state == C.ONLINE, f"{node.name}: {state} (log: {node.sup.log_path})"


@pytest.fixture(scope="module")
def network_env(offline_hf_cache, engine_root):
    """The process environment of a test network: the prepared cache, offline, the shared engine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(offline_hf_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("FARNODE_ENGINE_ROOT", str(engine_root))
        for k in ("HF_TOKEN", "HF_ENDPOINT", "HF_HOME"):
            mp.delenv(k, raising=False)
        yield mp


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory, network_env):
    """Nodes A, B and C: A starts the network (no initial peers), B and C join it through A's address."""
    root = tmp_path_factory.mktemp("net")
    nodes: list[Node] = []
    try:
        a = make_node(root, "A", node_settings(peers=[]))
        nodes.append(a)
        start(a)
        for name in ("B", "C"):
            nodes.append(make_node(root, name, node_settings(peers=a.addrs)))
        for n in nodes[1:]:
            n.core.start_node()
        for n in nodes[1:]:
            state = n.sup.wait_for({C.ONLINE, C.FAILED, C.HELD}, START_TIMEOUT_S)
            assert state.state == C.ONLINE, f"{n.name}: {state} (log: {n.sup.log_path})"
        yield nodes
    finally:
        for n in reversed(nodes):
            n.core.close()


def run_client(prompts: list[list[int]], peers: list[str], new_tokens: int = 8, timeout: float = 240) -> dict:
    """Generate through the network with a real FarMesh client (engine environment). Its process group (the
    client's p2pd keeps the output pipe open) is ended once it has printed its result."""
    python = EngineEnv(AppPaths.default(), "cpu").python
    proc = subprocess.Popen([str(python), str(Path(__file__).with_name("generate.py")), MODEL_ID,
                             json.dumps(peers), json.dumps(prompts), str(new_tokens)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=engine_subprocess_env(), cwd=str(REPO),
                            start_new_session=True)
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        result = None
        for line in proc.stdout:
            if line.startswith("{"):
                result = json.loads(line)
                break
    finally:
        timer.cancel()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        proc.stdout.close()
    assert result is not None, f"the client printed no result within {timeout:.0f} s (exit {proc.returncode})"
    return result


def swarm_json(node: Node, timeout: float = 180) -> dict:
    """`farnode-desktop swarm --json` as the user runs it on that node's data folder."""
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "farnode-desktop"), "swarm", "--json"], env=node.env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)
