"""Every failure category a start can end in, made to happen for real, seen by the user in both faces.

Each case is a real condition, not an injected event: a port another program holds; a model name the hub does
not know and a gated model without a token (a real HTTP server answering like the Hugging Face hub); a Falcon
model; memory that runs out for real (the app started under a data-size limit, ``prlimit --data``, that the
engine inherits; its blocks do not fit); a network whose only initial peer does not answer; the disk the
engine downloads blocks to filling up for real (a small tmpfs; FarMesh's own space check refuses).

For each, the headless node (``farnode-desktop node --json``) and the window (``farnode-desktop gui``) are run
as a user runs them, on their own data folder: the headless node exits 1 with exactly one line saying what
happened and what to do, its last state carries the category; the window shows the same message in its error
banner and its state line, and stays open. FarMesh would retry a full disk or an allocation failure every 30 s
for ever (the node "loading" with no word); the launcher ends that start with its category instead.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from farnode_desktop.core.models.hub import gated_model_message
from farnode_desktop.core.node.engine_venv import env_root
from farnode_desktop.core.settings import SCHEMA_VERSION
from tests.support.hub_server import FakeHub, FakeRepo
from tests.support.ports import free_port

from .conftest import REPO, Face, app_env, write_settings

pytestmark = pytest.mark.engine

FALCON = {"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 64,
          "num_hidden_layers": 2, "num_attention_heads": 4, "multi_query": True, "vocab_size": 1000}
GATED = "meta-llama/Tiny-Llama-3.1-gated"
PUBLIC = "farnode-tests/tiny-llama-3.1"
UNKNOWN = "farnode-tests/no-such-model"
PEER_ID = "QmUWGM5jcVJrXAPxaqVbWxcGK3T1vNCn1s8EeaMePeW2Go"
DATA_LIMIT = 800_000_000  # bytes of data (heap and private mappings) per process; the engine needs ~350 MB
# before it loads blocks, and the wide model's weights file (about 600 MB) is mapped whole to read a block


def _engine_python(engine_root: Path) -> Path:
    return env_root(engine_root, "cpu") / "venv" / "bin" / "python"


def _make_model(engine_root: Path, out: Path, *args: str) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    subprocess.run([str(_engine_python(engine_root)), "-m", "farnode_desktop.engine.make_model", str(out), *args],
                   check=True, env=dict(env, PYTHONPATH=str(REPO)), cwd=REPO, capture_output=True, timeout=600)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory, engine_root) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    falcon = root / "tiny-falcon"
    falcon.mkdir()
    (falcon / "config.json").write_text(json.dumps(FALCON))
    return {"tiny": _make_model(engine_root, root / "tiny"),
            "wide": _make_model(engine_root, root / "wide", "--hidden-size", "2048"),  # 4 blocks of 151 MB
            "falcon": falcon}


@dataclass
class Case:
    """What a user set and what the machine is like; what they must be told."""

    settings: dict
    env: dict = field(default_factory=dict)
    wrap: tuple[str, ...] = ()
    category: str = ""
    state: str = "failed"
    message: Callable[[dict], str] = lambda case_env: ""  # the exact message, given the case's environment
    cleanup: list = field(default_factory=list)


def _custom(model: str, **net) -> dict:
    return {"schema_version": SCHEMA_VERSION, "network": dict({"swarm": "custom", "model": model, "dht_prefix": "matrix", "host": "127.0.0.1",
                             "port": free_port(), "nat_traversal": False, "metered": True, "device": "cpu",
                             "initial_peers": []}, **net),
            "policies": {"pause_for_gpu_programs": False, "pause_for_steam_games": False,
                         "temperature_pause": False}}


def _hub(repos: dict, case: Case, cache: Path) -> FakeHub:
    hub = FakeHub(repos).__enter__()
    case.cleanup.append(lambda: hub.__exit__(None, None, None))
    case.env.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache))
    return hub


def _tmpfs(where: Path, size: str, case: Case) -> Path:
    if os.geteuid() != 0:
        pytest.skip("a disk that fills up for real is a small tmpfs, which needs root (CI runs as root)")
    where.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    case.cleanup.append(lambda: subprocess.run(["umount", "-l", str(where)], check=False))
    return where


def port_in_use(tmp_path, models) -> Case:
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    case = Case({"network": {"port": port, "demo_traffic_per_minute": 0}}, category="port_in_use",
                message=lambda env: f"Port {port} is already used by another program (or by a FarNode node that is "
                                    "still running). Close that program, or choose another port in Settings > "
                                    "Network.")
    case.cleanup.append(holder.close)
    return case


def model_missing(tmp_path, models) -> Case:
    case = Case(_custom(UNKNOWN), category="model")
    _hub({}, case, tmp_path / "hf")
    case.message = lambda env: (f"There is no model {UNKNOWN} on the Hugging Face hub (or it is private: then add a "
                                "Hugging Face token that can read it). Check the model id (as shown at "
                                f"{env['HF_ENDPOINT']}/models) in Settings > Network.")
    return case


def gated(tmp_path, models) -> Case:
    case = Case(_custom(GATED), category="gated", message=lambda env: gated_model_message(
        GATED, with_token=False).replace("https://huggingface.co", env["HF_ENDPOINT"]))  # the hub the app asked
    _hub({GATED: FakeRepo.from_folder(models["tiny"], gated=True, accepted={"alice"})}, case, tmp_path / "hf")
    return case


def unsupported_family(tmp_path, models) -> Case:
    return Case(_custom(str(models["falcon"])), category="model_unsupported",
                message=lambda env: f"{models['falcon']} is a Falcon model. FarMesh's Falcon support is broken on "
                                    "the transformers version it runs on (4.43): its server fails while starting "
                                    "and its client cannot generate (the engine's open issue 608). Choose a Llama, "
                                    "Mixtral or BLOOM model instead. Change the model in Settings > Network.")


def out_of_memory(tmp_path, models) -> Case:
    return Case(_custom(str(models["wide"]), num_blocks=1), wrap=("prlimit", f"--data={DATA_LIMIT}"),
                category="oom_at_load",
                message=lambda env: "This computer ran out of memory (RAM) while loading blocks. Close other "
                                    "programs or serve fewer blocks (Settings > GPUs and blocks > Blocks to serve), "
                                    "then start again.")


def bootstrap_unreachable(tmp_path, models) -> Case:
    peer = f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{PEER_ID}"  # nothing listens there
    return Case(_custom(str(models["tiny"]), initial_peers=[peer]), category="bootstrap", state="held",
                message=lambda env: f"None of the network's initial peers answered (tried: {peer}). Check your "
                                    "internet connection and the initial peers in Settings > Network. Tried 3 "
                                    "times in 4 minutes; press Start to try again.")


def disk_full(tmp_path, models) -> Case:
    """The engine's cache (where FarMesh downloads the blocks it serves) on a 2 MB disk: FarMesh keeps 1 GiB
    free for the system, so its own check refuses the download."""
    case = Case(_custom(PUBLIC), category="disk_full")
    cache = _tmpfs(tmp_path / "home" / "cache" / "farmesh", "2m", case)  # the data folder's engine cache
    _hub({PUBLIC: FakeRepo.from_folder(models["tiny"])}, case, tmp_path / "hf")
    case.message = lambda env: (f"The disk is full: the model's blocks do not fit in {cache}. Free some disk "
                                f"space there, then start again. The details are in the log ({env['LOG']}).")
    return case


CASES = [port_in_use, model_missing, gated, unsupported_family, out_of_memory, bootstrap_unreachable, disk_full]


@pytest.mark.parametrize("face", ["headless", "window"])
@pytest.mark.parametrize("make_case", CASES, ids=[c.__name__ for c in CASES])
def test_the_user_sees_one_message_and_its_category(make_case, face, home, engine_root, tmp_path, models):
    case = make_case(tmp_path, models)
    try:
        write_settings(home, case.settings)
        env = app_env(home, engine_root)
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME"):
            env.pop(k, None)
        env.update(case.env)
        expected = case.message(dict(env, LOG=str(home / "logs" / "node-main.log")))
        app = Face(face, home, env, wrap=case.wrap)
        try:
            if face == "headless":
                code = app.wait_exit(300)
                err = app.stderr()
                assert code == 1, (code, err[-3000:])
                # (with --json, standard error carries the human lines: the banner, "Stopping ...", "Stopped.")
                assert [ln for ln in err.splitlines() if ln.startswith("The node could not start")] == \
                    [f"The node could not start: {expected}"], err[-3000:]
                assert err.count(expected) == 1, err[-3000:]  # said once
                states = [o for o in app.lines if o.get("topic") == "node.state" and o.get("node_id") == "main"]
                ended = [o for o in states if o["state"] in ("failed", "held")][-1:]
                assert [(o["state"], o["category"], o["message"]) for o in ended] == \
                    [(case.state, case.category, expected)], states
                assert states[-1]["state"] == "stopped"  # then it stopped cleanly
            else:
                deadline = time.time() + 300
                while time.time() < deadline and app.state() not in ("failed", "held"):
                    assert app.proc.poll() is None, app.stderr()[-3000:]
                    time.sleep(0.2)
                time.sleep(1.5)  # the hook is written once a second: the banner is up by then
                hook = app.hook_state()
                assert (hook.get("state"), hook.get("category"), hook.get("message")) == \
                    (case.state, case.category, expected), app.stderr()[-3000:]
                assert hook["shown"]["error"] == [hook["words"], expected]  # the banner says it, once
                assert hook["shown"]["state"] == f"● {hook['words']}" and app.proc.poll() is None  # the window stays
                assert app.stop() == 0
        finally:
            app.kill()
    finally:
        for undo in reversed(case.cleanup):
            undo()
