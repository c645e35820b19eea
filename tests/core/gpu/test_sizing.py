"""Eligibility, sizing, engine variant and multi-GPU server plans."""

from __future__ import annotations

import json
import math

import pytest

from farnode_desktop.core.errors import FarNodeError, SettingsError
from farnode_desktop.core.gpu.inventory import read_inventory
from farnode_desktop.core.gpu.sizing import (
    REFERENCE_MODELS,
    ModelSpec,
    choose_variant,
    parse_version,
    recommend,
    size_gpu,
)
from farnode_desktop.core.settings import Settings
from tests.core.gpu.conftest import UUID_A, UUID_B, two_gpus
from tests.support.fake_pynvml import MIB, FakeGpu, FakeProcess, FakePynvml

LLAMA2_70B = REFERENCE_MODELS["meta-llama/Llama-2-70b-hf"]
GIB = 1024 * MIB

LLAMA2_7B_CONFIG = {
    "_name_or_path": "meta-llama/Llama-2-7b-hf", "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 32000,
    "torch_dtype": "float16",
}


def inventory(make_nvml, gpus, **kw):
    return read_inventory(make_nvml(FakePynvml(gpus, **kw)))


# -- model arithmetic --------------------------------------------------------------------------------

def test_model_spec_from_config_and_block_params():
    m = ModelSpec.from_config_dict(LLAMA2_7B_CONFIG)
    assert m.name == "meta-llama/Llama-2-7b-hf" and m.num_key_value_heads == 32 and m.kv_groups == 1
    assert m.block_params == 202_383_360  # Llama-2-7B: 4*h^2 + 3*h*i + 2*h
    assert LLAMA2_70B.block_params == 855_654_400  # GQA: k/v are 8 heads of 128
    assert LLAMA2_70B.block_params * 80 + 2 * 32000 * 8192 + 8192 == 68_976_648_192  # the 69B model
    assert m.block_bytes("none") == round(202_383_360 * 2 * 1.01)
    assert m.block_bytes("int8") == round(202_383_360 * 1.01)
    assert m.block_bytes("nf4") == round(202_383_360 * 4.25 / 8 * 1.01)
    # FarMesh's own --attn_cache_tokens defaults (server.py): 16384 with grouped key/value heads, else 4096
    assert m.default_cache_tokens == 4096 and LLAMA2_70B.default_cache_tokens == 16384
    assert m.cache_bytes_per_block(4096) == 2 * 4096 * 4096 * 2
    assert LLAMA2_70B.cache_bytes_per_block(16384) == 2 * 8192 * 16384 // 8 * 2
    assert LLAMA2_70B.session_tokens(16384) == 16384  # its sessions hold 8 key/value heads per token


def test_mixtral_cache_follows_farmeshs_grouping_not_its_heads():
    """FarMesh's Mixtral config fixes num_key_value_groups at 1 although Mixtral has 8 key/value heads of 32:
    its server's cache ceiling is 2 * hidden * tokens * dtype bytes per block, 4x what the heads suggest."""
    mixtral = REFERENCE_MODELS["mistralai/Mixtral-8x7B-v0.1"]
    assert mixtral.kv_groups == 4 and mixtral.engine_kv_groups == 1
    assert mixtral.default_cache_tokens == 4096
    assert mixtral.cache_bytes_per_block(4096) == 2 * 4096 * 4096 * 2 == 64 * MIB
    assert mixtral.session_tokens(4096) == 16384  # what that ceiling holds of its sessions' 8 heads


# Parameter counts the models' authors publish (embeddings included; BLOOM and Falcon tie the output head).
@pytest.mark.parametrize("name, total_b", [
    ("meta-llama/Meta-Llama-3.1-8B", 8.03), ("mistralai/Mixtral-8x7B-v0.1", 46.70), ("bigscience/bloom", 176.25),
    ("tiiuae/falcon-7b", 6.92),
])
def test_each_familys_block_size_matches_the_published_model_size(name, total_b):
    m = REFERENCE_MODELS[name]
    tied = m.family in ("bloom", "falcon")
    total = m.num_layers * m.block_params + m.vocab_size * m.hidden_size * (1 if tied else 2)
    assert round(total / 1e9, 2) == total_b


def test_families_from_their_configs():
    mixtral = ModelSpec.from_config_dict({"_name_or_path": "mistralai/Mixtral-8x7B-v0.1", "model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
                                          "num_hidden_layers": 32, "num_attention_heads": 32,
                                          "num_key_value_heads": 8, "num_local_experts": 8, "vocab_size": 32000})
    assert mixtral == REFERENCE_MODELS["mistralai/Mixtral-8x7B-v0.1"]
    # every expert is held in memory: a Mixtral block is a Llama block with 7 more MLPs and a router
    llama_like = ModelSpec("x", 4096, 14336, 32, 32, 8, 32000)
    assert mixtral.block_params - llama_like.block_params == 7 * 3 * 4096 * 14336 + 4096 * 8
    bloom = ModelSpec.from_config_dict({"_name_or_path": "bigscience/bloom", "model_type": "bloom", "n_embed": 14336, "n_layer": 70, "n_head": 112,
                                        "vocab_size": 250880})
    assert bloom == REFERENCE_MODELS["bigscience/bloom"] and bloom.kv_groups == 1
    falcon = ModelSpec.from_config_dict({"_name_or_path": "tiiuae/falcon-7b", "model_type": "falcon", "hidden_size": 4544, "num_hidden_layers": 32,
                                         "num_attention_heads": 71, "multi_query": True, "vocab_size": 65024})
    assert falcon == REFERENCE_MODELS["tiiuae/falcon-7b"]
    # multi-query attention: one key/value head, so the attention cache is 71 times smaller than with MHA
    assert falcon.num_key_value_heads == 1 and falcon.kv_groups == 71
    assert falcon.cache_bytes_per_block(8192) == 2 * 4544 * 8192 // 71 * 2
    falcon40 = ModelSpec.from_config_dict({"_name_or_path": "tiiuae/falcon-40b", "model_type": "falcon", "hidden_size": 8192, "num_hidden_layers": 60,
                                           "num_attention_heads": 128, "num_kv_heads": 8, "vocab_size": 65024,
                                           "new_decoder_architecture": True})
    assert falcon40 == REFERENCE_MODELS["tiiuae/falcon-40b"]


@pytest.mark.parametrize("bad, words", [
    ({**LLAMA2_7B_CONFIG, "hidden_size": "4096"}, "hidden_size"),
    ({**LLAMA2_7B_CONFIG, "num_hidden_layers": 0}, "num_layers"),
    ({**LLAMA2_7B_CONFIG, "num_attention_heads": 30}, "multiple"),
    ({**LLAMA2_7B_CONFIG, "num_key_value_heads": 5}, "key/value"),
    ({"model_type": "bloom", "n_embed": 14336}, "has no num_hidden_layers, num_attention_heads, vocab_size"),
    ([1, 2], "not a JSON object"),
])
def test_bad_model_config_is_a_clear_error(bad, words):
    with pytest.raises(FarNodeError) as ei:
        ModelSpec.from_config_dict(bad)
    assert words in ei.value.message and ei.value.title == "Model configuration problem"


def test_model_config_file(tmp_path):
    p = tmp_path / "tiny" / "config.json"
    p.parent.mkdir()
    p.write_text(json.dumps(LLAMA2_7B_CONFIG))
    assert ModelSpec.from_config_file(p).num_layers == 32
    p.write_text("{not json")
    with pytest.raises(FarNodeError, match="not valid JSON"):
        ModelSpec.from_config_file(p)
    with pytest.raises(FarNodeError, match="Cannot read"):
        ModelSpec.from_config_file(tmp_path / "missing.json")


# -- sizing --------------------------------------------------------------------------------------------

def test_rtx_3060_sizing_and_reason(make_nvml, settings):
    inv = inventory(make_nvml, [FakeGpu(total_mib=12288, used_mib=400)])
    s = size_gpu(inv.gpus[0], LLAMA2_70B, settings, choose_variant(inv))
    # usable = 11888 free - 1024 reserve - 512 CUDA context - 1170.3 autograd = 9181.7 MiB
    # one nf4 block = 437.8 MiB + 64 MiB attention cache (16384 tokens, 8 kv groups)
    assert s.eligible and s.quantization == "nf4" and s.num_blocks == 18 == s.fit_blocks
    assert s.attn_cache_tokens == 16384 and s.block_mib == pytest.approx(501.8, abs=0.1)
    assert s.reason == "RTX 3060: 18 of 80 blocks fit in 11.6 GiB free (1 GiB kept for the desktop), nf4"


def farmesh_total_memory_estimate(total_mib: float, model: ModelSpec, quant: str) -> int:
    """FarMesh's Server._choose_num_blocks: TOTAL memory, no reserve, no CUDA context."""
    per_block = model.block_bytes(quant) + model.cache_bytes_per_block(model.default_cache_tokens)
    return min(model.num_layers, math.floor((total_mib * MIB - model.autograd_bytes) / per_block))


def test_other_process_holding_vram_lowers_the_sizing(make_nvml, settings):
    idle = inventory(make_nvml, [FakeGpu(total_mib=24564, used_mib=500, cc=(8, 9))]).gpus[0]
    gaming = inventory(make_nvml, [FakeGpu(total_mib=24564, used_mib=500, cc=(8, 9),
                                           processes=[FakeProcess(999_999, 8 * GIB)])]).gpus[0]
    a = size_gpu(idle, LLAMA2_70B, settings)
    b = size_gpu(gaming, LLAMA2_70B, settings)
    assert b.free_mib == a.free_mib - 8192
    assert b.num_blocks < a.num_blocks
    assert a.num_blocks - b.num_blocks == pytest.approx(8192 / a.block_mib, abs=1)
    # FarMesh's own estimate would not drop at all, and would overfill the card:
    engine_estimate = farmesh_total_memory_estimate(gaming.memory_total_mib, LLAMA2_70B, "nf4")
    assert engine_estimate > b.num_blocks
    assert engine_estimate * b.block_mib > gaming.memory_free_mib - LLAMA2_70B.autograd_bytes / MIB


def test_reserve_is_respected(make_nvml):
    gpu = inventory(make_nvml, [FakeGpu(total_mib=12288, used_mib=400)]).gpus[0]
    small, large = Settings(), Settings()
    small.gpus.reserve_vram_mib = 0
    large.gpus.reserve_vram_mib = 4096
    a, b = size_gpu(gpu, LLAMA2_70B, small), size_gpu(gpu, LLAMA2_70B, large)
    assert a.num_blocks > b.num_blocks
    assert "nothing kept for the desktop" in a.reason and "4 GiB kept for the desktop" in b.reason


def test_small_model_needs_no_quantization(make_nvml, settings):
    gpu = inventory(make_nvml, [FakeGpu(total_mib=24564)]).gpus[0]
    s = size_gpu(gpu, ModelSpec.from_config_dict(LLAMA2_7B_CONFIG), settings)
    assert s.eligible and s.quantization == "none" and s.num_blocks == 32
    assert s.reason.endswith("32 of 32 blocks fit in 23.6 GiB free (1 GiB kept for the desktop), none")


def test_explicit_quantization_and_unsupported_one(make_nvml):
    gpu = inventory(make_nvml, [FakeGpu(cc=(7, 0), name="Tesla V100-SXM2-16GB", total_mib=16384)]).gpus[0]
    st = Settings()
    st.network.quantization = "int8"
    s = size_gpu(gpu, LLAMA2_70B, st)
    assert not s.eligible and s.num_blocks == 0
    assert "int8 quantization needs compute capability 7.5" in s.reason and "7.0" in s.reason
    st.network.quantization = "none"
    s = size_gpu(gpu, LLAMA2_70B, st)
    assert s.quantization == "none" and not s.eligible  # fits, but CC 7.0 is too old for the CUDA 13 build
    assert s.fit_blocks > 0 and "older than the 7.5" in s.reason


def test_not_enough_free_memory(make_nvml, settings):
    gpu = inventory(make_nvml, [FakeGpu(name="NVIDIA GeForce RTX 3050", total_mib=4096, used_mib=1500)]).gpus[0]
    s = size_gpu(gpu, LLAMA2_70B, settings)
    assert not s.eligible and s.num_blocks == 0 and s.fit_blocks == 0
    assert s.reason.startswith("RTX 3050: not enough free memory: 2.5 GiB free (1 GiB kept for the desktop)")
    assert s.attn_cache_tokens == 2048  # it tried smaller caches first


def test_cache_is_cut_to_fit_one_block(make_nvml, settings):
    # free 3306 MiB: usable = 3306 - 1024 - 512 - 1170 = ~600 MiB; one nf4 block of this model (no GQA)
    # is ~524 MiB, and its cache 128 MiB at 4096 tokens (FarMesh's default without GQA), 64 at 2048: only 2048 fits
    gpu = inventory(make_nvml, [FakeGpu(total_mib=4096, used_mib=790)]).gpus[0]
    big = ModelSpec("wide", 8192, 28672, 80, 64, 64, 32000)
    s = size_gpu(gpu, big, settings)
    assert s.eligible and s.num_blocks == 1 and s.attn_cache_tokens == 2048
    assert s.reason.endswith("nf4; attention cache cut to 2048 tokens to fit")


def test_user_block_count(make_nvml):
    gpu = inventory(make_nvml, [FakeGpu(total_mib=24564)]).gpus[0]
    st = Settings()
    st.network.num_blocks = 5
    assert size_gpu(gpu, LLAMA2_70B, st).num_blocks == 5
    st.network.num_blocks = 79
    s = size_gpu(gpu, LLAMA2_70B, st)
    assert s.num_blocks == s.fit_blocks < 79 and "only" in s.reason


def test_lost_gpu_is_not_eligible(make_nvml, settings):
    gpus = two_gpus()
    gpus[0].lost = True
    inv = inventory(make_nvml, gpus)
    rec = recommend(inv, settings, LLAMA2_70B)
    assert not rec.sizings[0].eligible and "lost" in rec.sizings[0].reason
    assert [p.node_id for p in rec.plans] == ["gpu-1"]


# -- engine variant ------------------------------------------------------------------------------------

def test_new_driver_gets_the_cuda_variant(make_nvml):
    v = choose_variant(inventory(make_nvml, [FakeGpu()], driver_version="580.65.06", cuda_version=13000))
    assert v.variant == "cuda" and "CUDA 13.0" in v.reason


def test_old_driver_refuses_the_cuda_variant(make_nvml, settings):
    inv = inventory(make_nvml, two_gpus(), driver_version="550.54.14", cuda_version=12040)
    v = choose_variant(inv, platform="linux")
    assert v.variant == "cpu"
    assert "550.54.14 supports CUDA 12.4" in v.reason and "580.65.06 or newer" in v.reason
    assert "Update the NVIDIA driver" in v.reason
    rec = recommend(inv, settings, LLAMA2_70B, platform="linux")
    assert rec.plans == () and all(not s.eligible and s.num_blocks == 0 for s in rec.sizings)
    assert all(s.fit_blocks > 0 and "driver" in s.reason for s in rec.sizings)
    assert list(recommend(inv, settings, LLAMA2_70B).plans) == []
    assert rec.summary.startswith("No GPU will serve")


def test_driver_version_decides_when_cuda_version_is_unknown(make_nvml):
    fake_kw = dict(missing_functions={"nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"})
    inv = inventory(make_nvml, [FakeGpu()], driver_version="580.76.05", **fake_kw)
    assert inv.cuda_version is None
    assert choose_variant(inv, platform="linux").variant == "cuda"
    old = inventory(make_nvml, [FakeGpu()], driver_version="580.70", **fake_kw)
    assert choose_variant(old, platform="win32").variant == "cpu"
    assert "580.88 or newer" in choose_variant(old, platform="win32").reason


def test_old_gpu_refuses_the_cuda_variant(make_nvml):
    inv = inventory(make_nvml, [FakeGpu(name="NVIDIA GeForce GTX 1080", cc=(6, 1))])
    v = choose_variant(inv)
    assert v.variant == "cpu" and "GTX 1080 (6.1)" in v.reason and "7.5" in v.reason


def test_no_driver_means_cpu(make_nvml, settings):
    inv = inventory(make_nvml, [], library_missing=True)
    v = choose_variant(inv)
    assert v.variant == "cpu" and "No NVIDIA driver" in v.reason and v.reason.endswith("runs on the CPU.")
    assert list(recommend(inv, settings, LLAMA2_70B).plans) == []


def test_parse_version():
    assert parse_version("580.65.06") == (580, 65, 6)
    assert parse_version("528.33") == (528, 33)
    assert parse_version("") is None and parse_version("abc") is None


# -- multi-GPU plans -----------------------------------------------------------------------------------

def test_plan_servers_for_two_gpus(make_nvml, settings):
    inv = inventory(make_nvml, two_gpus())
    plans = list(recommend(inv, settings, LLAMA2_70B).plans)
    assert [p.node_id for p in plans] == ["gpu-0", "gpu-1"]
    assert [p.port for p in plans] == [31337, 31338]
    assert plans[0].env == {"CUDA_VISIBLE_DEVICES": UUID_A, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert plans[1].env["CUDA_VISIBLE_DEVICES"] == UUID_B
    assert plans[1].num_blocks > plans[0].num_blocks  # the 4090 holds more
    assert all(p.device == "cuda" and p.quantization == "nf4" for p in plans)
    assert (plans[0].quantization, plans[0].attn_cache_tokens) == ("nf4", 16384)


def test_plan_servers_with_one_gpu_excluded(make_nvml):
    inv = inventory(make_nvml, two_gpus())
    st = Settings()
    st.gpus.contributing = [UUID_B.lower()]  # case and prefix do not matter
    rec = recommend(inv, st, LLAMA2_70B)
    (plan,) = rec.plans
    assert plan.node_id == "gpu-1" and plan.gpu_uuid == UUID_B and plan.port == 31337
    assert plan.env["CUDA_VISIBLE_DEVICES"] == UUID_B
    assert any("RTX 3060" in n and "not selected" in n for n in rec.notes)
    assert list(recommend(inv, st, LLAMA2_70B).plans) == [plan]
    assert len({plan, plan}) == 1  # plans are hashable values


def test_selected_gpu_that_is_gone_is_noted(make_nvml):
    inv = inventory(make_nvml, two_gpus())
    st = Settings()
    st.gpus.contributing = ["GPU-dead-beef"]
    rec = recommend(inv, st, LLAMA2_70B)
    assert rec.plans == () and any("not in this computer" in n for n in rec.notes)


def test_auto_port_and_port_overflow(make_nvml):
    inv = inventory(make_nvml, two_gpus())
    st = Settings()
    st.network.port = 0
    assert [p.port for p in list(recommend(inv, st, LLAMA2_70B).plans)] == [0, 0]
    st.network.port = 65535
    with pytest.raises(SettingsError, match="at most 65534"):
        list(recommend(inv, st, LLAMA2_70B).plans)
