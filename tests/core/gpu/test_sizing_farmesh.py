"""The GPU plan against FarMesh's own memory arithmetic, in the engine environment.

For every model family the app serves (Llama 2, Llama 3.1, Mixtral, BLOOM, in the shapes of their published
models), every quantization the app offers and gamer cards of 6, 8, 12, 16 and 24 GB (and two-GPU boxes), with
NVML faked at pynvml: the plan's exact server command line (the launcher's argv) is handed to FarMesh's own
code (tests/core/gpu/farmesh_memory.py), which says what one block's weights take and how much attention cache the
server will allow per block. The plan's budget must equal FarMesh's within 1%, and what FarMesh may take in all
(blocks x (weights + cache ceiling) + its autograd allowance + the CUDA context) must fit in the card's free
memory minus the user's reserve. The table of blocks per card and model is kept in test-artifacts/.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from farnode_desktop.core.gpu.nvml import Nvml
from farnode_desktop.core.gpu.sizing import CUDA_CONTEXT_MIB, DTYPE_BYTES, ModelSpec
from farnode_desktop.core.models.hub import ModelConfig
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.node.plan import plan_for
from farnode_desktop.core.resources import engine_source_root
from farnode_desktop.core.settings import PUBLIC_SWARM, Settings
from farnode_desktop.engine.launcher import Launcher
from tests.support.fake_pynvml import FakeGpu, FakePynvml
from tests.support.hf_models import LLAMA31_8B, LLAMA31_70B, MIXTRAL_8X7B

pytestmark = pytest.mark.engine

MIB = 1024 * 1024
HERE = Path(__file__).resolve().parent

LLAMA2_7B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32000, "torch_dtype": "float16", "rms_norm_eps": 1e-05}
BLOOM_7B1 = {"architectures": ["BloomForCausalLM"], "model_type": "bloom", "hidden_size": 4096, "n_layer": 30,
             "n_head": 32, "vocab_size": 250880, "torch_dtype": "float16", "layer_norm_epsilon": 1e-05}
MODELS = {
    "meta-llama/Llama-2-7b-hf": LLAMA2_7B,
    "meta-llama/Meta-Llama-3.1-8B": LLAMA31_8B,
    "meta-llama/Meta-Llama-3.1-70B": LLAMA31_70B,
    "mistralai/Mixtral-8x7B-v0.1": MIXTRAL_8X7B,
    "bigscience/bloom-7b1": BLOOM_7B1,
}


def _gpu(n: int, name: str, total: int, used: int, cc: tuple[int, int]) -> FakeGpu:
    return FakeGpu(name=name, uuid=f"GPU-{n:08x}-0000-0000-0000-{total:012d}", total_mib=total, used_mib=used, cc=cc)


CARDS = {
    "6 GB": [_gpu(1, "NVIDIA GeForce RTX 2060", 6144, 300, (7, 5))],
    "8 GB": [_gpu(2, "NVIDIA GeForce RTX 3070", 8192, 450, (8, 6))],
    "12 GB": [_gpu(3, "NVIDIA GeForce RTX 3060", 12288, 400, (8, 6))],
    "16 GB": [_gpu(4, "NVIDIA GeForce RTX 4080", 16376, 600, (8, 9))],
    "24 GB": [_gpu(5, "NVIDIA GeForce RTX 4090", 24564, 700, (8, 9))],
    "24+12 GB": [_gpu(6, "NVIDIA GeForce RTX 4090", 24564, 700, (8, 9)),
                 _gpu(7, "NVIDIA GeForce RTX 3060", 12288, 150, (8, 6))],
    "16+8 GB": [_gpu(8, "NVIDIA GeForce RTX 4080", 16376, 600, (8, 9)),
                _gpu(9, "NVIDIA GeForce RTX 3070", 8192, 150, (8, 6))],
}
QUANTIZATIONS = ("auto", "none", "int8", "nf4")


def plans(app_paths) -> list[dict]:
    """Every (card, model, quantization) plan's GPU servers: the plan's numbers and the argv it starts."""
    rows = []
    for card, gpus in CARDS.items():
        for model_id, config in MODELS.items():
            spec = ModelSpec.from_config_dict(config, name=model_id)
            for quant in QUANTIZATIONS:
                settings = Settings()
                settings.network.swarm, settings.network.model = PUBLIC_SWARM, model_id
                settings.network.quantization = quant
                nvml = Nvml(module=FakePynvml(gpus))
                try:
                    plan = plan_for(settings, app_paths, nvml=nvml,
                                    model=ModelConfig(model=model_id, config=config, source="hub"))
                finally:
                    nvml.close()
                for server in plan.servers:
                    if server.device != "cuda":
                        rows.append(dict(card=card, model=model_id, wanted=quant, gpu="-", blocks=0,
                                         quant="-", tokens=0, cuda=False))
                        continue
                    gpu = next(g for g in gpus if g.uuid == server.gpu_uuid)
                    dbytes = DTYPE_BYTES[server.torch_dtype]
                    rows.append(dict(
                        card=card, model=model_id, wanted=quant, gpu=gpu.name.split()[-1], cuda=True,
                        blocks=server.num_blocks, quant=server.quantization, tokens=server.attn_cache_tokens,
                        free_mib=gpu.total_mib - gpu.used_mib, reserve_mib=settings.gpus.reserve_vram_mib,
                        plan_block=spec.block_bytes(server.quantization, dbytes),
                        plan_cache=spec.cache_bytes_per_block(server.attn_cache_tokens, dbytes),
                        autograd=spec.autograd_bytes,
                        argv=Launcher(None, dict(server.config)).argv()[1:]))
    return rows


def farmesh_memory(engine_python: Path, cases: list[dict]) -> list[dict]:
    proc = subprocess.run([str(engine_python), str(HERE / "farmesh_memory.py")], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(engine_source_root()), "PATH": "/usr/bin:/bin",
                               "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_the_plan_budgets_what_farmesh_allocates(request, monkeypatch, app_paths, tmp_path, artifacts_dir):
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(request.getfixturevalue("engine_root")))
    folders = {}
    for model_id, config in MODELS.items():
        folders[model_id] = tmp_path / model_id.replace("/", "--")
        folders[model_id].mkdir()
        (folders[model_id] / "config.json").write_text(json.dumps(config))
    rows = plans(app_paths)
    served = [r for r in rows if r["cuda"]]
    assert {r["model"] for r in served} == set(MODELS) and {r["card"] for r in served} == set(CARDS)
    truth = farmesh_memory(EngineEnv(app_paths, "cpu").python, [{"model": str(folders[r["model"]]), "argv": r["argv"]} for r in served])
    problems = []
    for r, fm in zip(served, truth, strict=True):
        what = f"{r['model']} on {r['gpu']} ({r['card']}), {r['wanted']} -> {r['quant']}, {r['blocks']} blocks"
        assert fm["quant_type"] == r["quant"] and fm["num_blocks"] == r["blocks"], (what, fm)
        for name, plan_value, engine_value in (("block weights", r["plan_block"], fm["block_size"]),
                                               ("attention cache ceiling", r["plan_cache"],
                                                fm["cache_bytes_per_block"])):
            if abs(plan_value - engine_value) > 0.01 * engine_value:
                problems.append(f"{what}: {name} planned {plan_value / MIB:.1f} MiB, FarMesh "
                                f"{engine_value / MIB:.1f} MiB")
        taken = r["blocks"] * (fm["block_size"] + fm["cache_bytes_per_block"]) + r["autograd"] + CUDA_CONTEXT_MIB * MIB
        room = (r["free_mib"] - r["reserve_mib"]) * MIB
        if taken > room:
            problems.append(f"{what}: FarMesh may take {taken / MIB:.0f} MiB, {room / MIB:.0f} MiB are free after "
                            "the reserve")
    table = ["card      model                          asked  GPU    blocks quant tokens"]
    table += [f"{r['card']:<9} {r['model'].split('/')[-1]:<30} {r['wanted']:<6} {r['gpu']:<6} {r['blocks']:>6} "
              f"{r['quant']:<5} {r['tokens'] or '-'}" for r in rows]
    (artifacts_dir / "gpu-plan-table.txt").write_text("\n".join(table) + "\n")
    assert not problems, "\n".join(problems)


def test_auto_quantization_takes_the_least_lossy_that_serves_every_block(app_paths):
    by = {(r["card"], r["model"], r["gpu"]): r for r in plans(app_paths) if r["cuda"] and r["wanted"] == "auto"}
    # a 16 GB card holds every block of an 8B model in int8 (7.6 GiB of weights), not only in nf4
    r = by[("16 GB", "meta-llama/Meta-Llama-3.1-8B", "4080")]
    assert (r["quant"], r["blocks"]) == ("int8", 32)
    # a 24 GB card serves it unquantized; a 6 GB card as many nf4 blocks as fit (more than with 32768 tokens)
    assert by[("24 GB", "meta-llama/Meta-Llama-3.1-8B", "4090")]["quant"] == "none"
    six = by[("6 GB", "meta-llama/Meta-Llama-3.1-8B", "2060")]
    assert six["quant"] == "nf4" and six["blocks"] >= 20 and six["tokens"] == 16384
    # Mixtral: FarMesh's own 4096 cache tokens (16384 of its sessions' tokens), 64 MiB per block in 16 bits
    mix = by[("24 GB", "mistralai/Mixtral-8x7B-v0.1", "4090")]
    assert mix["tokens"] == 4096 and mix["plan_cache"] == 64 * MIB
