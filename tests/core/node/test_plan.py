"""The node's plan for hub models on gamer GPUs: NVML faked at pynvml (an RTX 4090 24 GB, an RTX 3060 12 GB,
a 6 GB RTX 2060), model configs by hub id from an offline Hugging Face cache, the real plan code."""

from __future__ import annotations

import io
import json

import pytest

from farnode_desktop.app.network_cli import cli_plan
from farnode_desktop.core.gpu.sizing import ModelSpec
from farnode_desktop.core.models.hub import HubOfflineError
from farnode_desktop.core.node.plan import choose_dtype, plan_for
from farnode_desktop.core.settings import CUSTOM_SWARM, LOCAL_SWARM, PUBLIC_SWARM, Settings, SettingsStore
from tests.support.fake_pynvml import FakePynvml
from tests.support.gpus import GAMER_GPUS
from tests.support.hf_models import SHAPES, put_in_hf_cache

GPUS = GAMER_GPUS
MIB = 1024 * 1024


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    hub = tmp_path / "hf" / "hub"
    for repo_id, config in SHAPES.items():
        put_in_hf_cache(hub, repo_id, {"config.json": json.dumps(config).encode()})
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return hub


def _settings(model: str, swarm: str = PUBLIC_SWARM, **net) -> Settings:
    s = Settings()
    s.network.swarm, s.network.model = swarm, model
    for k, v in net.items():
        setattr(s.network, k, v)
    return s


@pytest.mark.parametrize("model", list(SHAPES))
def test_three_gamer_gpus_plan_for_hub_models(model, app_paths, offline_cache, make_nvml_three):
    plan = plan_for(_settings(model), app_paths, nvml=make_nvml_three(), token=lambda: None)
    assert plan.model == model and plan.model_source == "cache" and plan.network == "public"
    spec = ModelSpec.from_config_dict(SHAPES[model])
    assert [s.node_id for s in plan.servers] == ["gpu-0", "gpu-1", "gpu-2"]
    # a 6 GB Turing card is in the node: every server computes in float16, though the model is bfloat16
    assert plan.dtype_reason.startswith("float16") and "8.0" in plan.dtype_reason
    ports = [s.config["port"] for s in plan.servers]
    assert ports == [31337, 31338, 31339]
    for server, gpu in zip(plan.servers, GPUS, strict=True):
        assert server.device == "cuda" and server.config["device"] == "cuda"
        assert server.env == {"CUDA_VISIBLE_DEVICES": gpu.uuid, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        assert server.torch_dtype == server.config["torch_dtype"] == "float16"
        assert 1 < server.num_blocks <= spec.num_layers and server.config["num_blocks"] == server.num_blocks
        assert "block_indices" not in server.config  # the engine picks which blocks, within the count
        # within free VRAM, after the desktop reserve, the CUDA context and the engine's autograd allowance
        per_block = spec.block_bytes(server.quantization) + spec.cache_bytes_per_block(server.attn_cache_tokens)
        free = (gpu.total_mib - gpu.used_mib) * MIB
        assert server.num_blocks * per_block <= free - 1024 * MIB - 512 * MIB - spec.autograd_bytes
        assert server.config["quant_type"] == server.quantization in ("nf4", "int8", "none")
        # every interface, not loopback; announced by the engine (public network, no address set)
        port = server.config["port"]  # IPv4 and IPv6, as FarMesh listens by default
        assert server.listen == (f"/ip4/0.0.0.0/tcp/{port}", f"/ip6/::/tcp/{port}") and server.config["host"] == "0.0.0.0"
        assert server.announce == () and "announce_maddrs" not in server.config
        assert "initial_peers" not in server.config and not server.config.get("new_swarm")  # the public network
        assert gpu.name.split()[-1] in server.reason and "fit" in server.reason
    assert plan.servers[0].num_blocks >= plan.servers[1].num_blocks >= plan.servers[2].num_blocks
    if model.endswith("70B"):
        assert all(s.quantization == "nf4" for s in plan.servers)


@pytest.fixture
def make_nvml_three(make_nvml):  # noqa: F811 (the fixture imported above)
    return lambda gpus=None: make_nvml(FakePynvml(list(gpus or GPUS)))


def test_dtype_follows_the_model(app_paths, offline_cache, make_nvml_three):
    plan = plan_for(_settings("meta-llama/Meta-Llama-3.1-8B"), app_paths, nvml=make_nvml_three(GPUS[:2]),
                    token=lambda: None)
    assert {s.torch_dtype for s in plan.servers} == {"bfloat16"} and "model's own" in plan.dtype_reason
    cpu = plan_for(_settings("meta-llama/Meta-Llama-3.1-8B", device="cpu"), app_paths, nvml=None,
                   token=lambda: None)
    assert [(s.device, s.torch_dtype, s.num_blocks, s.quantization) for s in cpu.servers] == \
        [("cpu", "float32", 1, "none")]
    assert choose_dtype(_settings("x", torch_dtype="bfloat16"), "float32", "cpu")[0] == "bfloat16"
    assert choose_dtype(Settings(), "", "cuda", [(8, 9)]) == ("float16", "float16 (the model's config names no dtype)")


def test_custom_network_announces_the_route_to_its_peers(app_paths, offline_cache, make_nvml_three):
    peer = "/ip4/127.0.0.1/tcp/40001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
    plan = plan_for(_settings("mistralai/Mixtral-8x7B-v0.1", CUSTOM_SWARM, initial_peers=[peer]), app_paths,
                    nvml=make_nvml_three(GPUS[:1]), token=lambda: None)
    (server,) = plan.servers
    assert server.listen == ("/ip4/0.0.0.0/tcp/31337", "/ip6/::/tcp/31337")
    assert server.announce == ("/ip4/127.0.0.1/tcp/31337",) == tuple(server.config["announce_maddrs"])
    assert server.config["initial_peers"] == [peer] and "127.0.0.1" in plan.announce_reason
    founder = plan_for(_settings("mistralai/Mixtral-8x7B-v0.1", CUSTOM_SWARM, announce_address="203.0.113.7",
                                 port=0), app_paths, nvml=make_nvml_three(GPUS[:1]), token=lambda: None)
    (server,) = founder.servers
    port = server.config["port"]
    assert port and server.announce == (f"/ip4/203.0.113.7/tcp/{port}",) and server.config["new_swarm"]
    # the local demo swarm stays on loopback
    local = plan_for(_settings("", LOCAL_SWARM, device="cpu"), app_paths, nvml=None, token=lambda: None)
    assert local.servers[0].listen[0].startswith("/ip4/127.0.0.1/") and local.servers[0].announce == ()


def test_plan_command_json_and_text(app_paths, offline_cache, make_nvml_three):
    SettingsStore(app_paths.settings_file).save(_settings("meta-llama/Meta-Llama-3.1-70B"))
    out = io.StringIO()
    assert cli_plan(as_json=True, nvml=make_nvml_three(), paths=app_paths, out=out, token=lambda: None) == 0
    data = json.loads(out.getvalue())
    assert data["model"] == "meta-llama/Meta-Llama-3.1-70B" and len(data["servers"]) == 3
    first = data["servers"][0]
    assert {"gpu", "device", "num_blocks", "quantization", "torch_dtype", "attn_cache_tokens", "listen", "announce",
            "model", "reason"} <= set(first)
    assert first["gpu"] == "GPU 0: NVIDIA GeForce RTX 4090" and first["device"] == "cuda"
    out = io.StringIO()
    cli_plan(nvml=make_nvml_three(), paths=app_paths, out=out, token=lambda: None)
    text = out.getvalue()
    assert "Server gpu-2: GPU 2: NVIDIA GeForce RTX 2060, device cuda" in text and "listens on /ip4/0.0.0.0" in text


def test_model_not_in_the_offline_cache(app_paths, offline_cache, make_nvml_three):
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE"):
        plan_for(_settings("meta-llama/Meta-Llama-3.1-405B"), app_paths, nvml=make_nvml_three(), token=lambda: None)


def test_settings_migration_frees_the_old_loopback_default(app_paths):
    raw = Settings().to_dict()
    raw["schema_version"] = 1
    raw["network"].update(host="127.0.0.1", swarm="public", model="org/model")
    app_paths.settings_file.write_text(json.dumps(raw))
    s = SettingsStore(app_paths.settings_file).load()
    assert s.network.host == "" and s.network.swarm == "public"

