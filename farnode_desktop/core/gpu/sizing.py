"""Which GPUs can serve, how many transformer blocks each holds, and which engine build fits the driver.

Every decision carries a one-line ``reason`` a user can read, e.g.
``"RTX 3060: 9 of 32 blocks fit in 7.1 GiB free (1 GiB kept for the desktop), nf4"``.

Sizing uses FREE memory, not total memory
-----------------------------------------
FarMesh's own automatic ``--num_blocks`` (``Server._choose_num_blocks``) divides the card's TOTAL memory
(``torch.cuda.get_device_properties().total_memory``) by the size of a block plus its attention cache. On a
server that is fine; on a desktop the display, the browser and any game already hold part of the VRAM, so
that estimate loads more blocks than there is room for and the server dies with ``CUDA out of memory``
while loading (or later, when the user starts a game). Here the number of blocks comes from the memory
that is free right now (NVML's ``free``, which already excludes what other processes hold), minus the
user's reserve (``settings.gpus.reserve_vram_mib``), minus the server's own CUDA context and FarMesh's
autograd allowance. The app passes the result as an explicit ``--num_blocks``.

Engine build (lock variant) and the driver
------------------------------------------
The engine's CUDA variant is ``torch==2.13.0`` from PyPI. Its Linux x86_64 wheel declares
``cuda-toolkit[...]==13.0.3`` and ``nvidia-cudnn-cu13`` / ``nvidia-nccl-cu13`` (read from the wheel's
metadata with ``pip install --dry-run --report``), so it is built for CUDA 13.0. CUDA 13 needs a driver
that supports CUDA 13.0: R580 or newer (580.65.06 on Linux, 580.88 on Windows; CUDA 12.x would have needed
525.60.13 / 528.33). CUDA 13 also dropped Maxwell, Pascal and Volta: compute capability 7.5 (Turing, RTX 20
series) is the oldest the build runs on. With an older driver or GPU the app uses the ``cpu`` variant and
says why. The driver's own statement (NVML ``nvmlSystemGetCudaDriverVersion_v2``) decides when present;
the driver version number is the fallback.

Sizes: memory in MiB unless a name says bytes; GiB in text only.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farnode_desktop.core.errors import FarNodeError, SettingsError
from farnode_desktop.core.gpu.inventory import GpuInfo, GpuInventory, normalize_uuid
from farnode_desktop.core.settings import Settings

MIB = 1024 * 1024
GIB = 1024 * MIB

# -- the engine's torch build -------------------------------------------------------------------------
ENGINE_TORCH_VERSION = "2.13.0"
CUDA_VARIANT_CUDA = (13, 0)  # torch 2.13.0 on PyPI: cuda-toolkit==13.0.3, nvidia-*-cu13
MIN_DRIVER_LINUX = (580, 65, 6)
MIN_DRIVER_WINDOWS = (580, 88)
MIN_CC_CUDA_VARIANT = (7, 5)  # CUDA 13 builds: sm_75 (Turing) and newer

# bitsandbytes (the engine's quantization library)
MIN_CC_NF4 = (5, 0)
MIN_CC_INT8 = (7, 5)  # LLM.int8() matmul needs Turing's int8 tensor cores

QUANTIZATIONS = ("nf4", "int8", "none")
FAMILIES = ("llama", "mixtral", "bloom", "falcon")  # the engine's model families

# -- memory model (FarMesh 75a473e: get_block_size, Server.__init__, _choose_num_blocks) -------------
CUDA_CONTEXT_MIB = 512  # the server process's CUDA context, cuBLAS/cuDNN workspaces (not in FarMesh's estimate)
MIN_CACHE_TOKENS = 2048  # below this an inference session can hardly use the server
_BYTES_PER_PARAM = {"none": 2.0, "int8": 1.0, "nf4": 4.25 / 8}  # none: float16/bfloat16 on a GPU
_BLOCK_EPS = 0.01  # FarMesh adds 1% to the block size


def _gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def _gib_short(mib: float) -> str:
    v = f"{mib / 1024:.1f}".rstrip("0").rstrip(".")
    return f"{v} GiB"


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """"580.65.06" -> (580, 65, 6); None when it cannot be read."""
    if not text:
        return None
    parts = []
    for p in text.strip().split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or None


# -- model --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """The shape of a model (what ``config.json`` says), enough to size its blocks. ``family`` is the engine's
    model family: ``llama`` (Llama 2/3/3.1 and other Llama-architecture models), ``mixtral`` (a mixture of
    ``num_experts`` experts), ``bloom`` or ``falcon`` (``multi_query``: one key/value head, as Falcon-7B;
    ``new_decoder_architecture``: grouped key/value heads and two layer norms, as Falcon-40B/180B)."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    family: str = "llama"
    num_experts: int = 0  # mixture of experts (Mixtral: num_local_experts); 0 for a dense MLP
    torch_dtype: str = ""  # the dtype its weights were published in (config.json), "" when it does not say
    bias: bool = False  # falcon: linear layers with biases
    parallel_attn: bool = True  # falcon: attention and MLP share one input layer norm
    new_decoder_architecture: bool = False  # falcon 40B/180B

    def __post_init__(self) -> None:
        for f in ("hidden_size", "intermediate_size", "num_layers", "num_attention_heads",
                  "num_key_value_heads", "vocab_size"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise FarNodeError(f"The model's {f} is {v!r}; it must be a positive whole number. Check the "
                                   "model's config.json.", title="Model configuration problem")
        if self.family not in FAMILIES:
            raise FarNodeError(f"The model's family {self.family!r} is not one the engine knows "
                               f"({', '.join(FAMILIES)}).", title="Model configuration problem")
        if self.hidden_size % self.num_attention_heads:
            raise FarNodeError(f"The model's hidden_size {self.hidden_size} is not a multiple of its "
                               f"{self.num_attention_heads} attention heads. Check the model's config.json.",
                               title="Model configuration problem")
        if self.num_attention_heads % self.num_key_value_heads:
            raise FarNodeError(f"The model's {self.num_attention_heads} attention heads are not a multiple of "
                               f"its {self.num_key_value_heads} key/value heads. Check the model's config.json.",
                               title="Model configuration problem")

    @classmethod
    def from_config_dict(cls, config: Any, name: str | None = None) -> ModelSpec:
        """From a Hugging Face ``config.json`` dict of a model of one of the engine's families."""
        if not isinstance(config, dict):
            raise FarNodeError("The model's config.json is not a JSON object.", title="Model configuration problem")
        kind = str(config.get("model_type") or "llama")
        family = kind if kind in FAMILIES else "llama"  # mistral, qwen2 ...: the Llama block shape
        if family == "bloom":
            config = dict(config, hidden_size=config.get("hidden_size", config.get("n_embed")),
                          num_hidden_layers=config.get("num_hidden_layers", config.get("n_layer")),
                          num_attention_heads=config.get("num_attention_heads", config.get("n_head")))
            config.setdefault("intermediate_size", 4 * config["hidden_size"] if config["hidden_size"] else None)
        if family == "falcon":
            h = config.get("hidden_size")
            config = dict(config, intermediate_size=config.get("ffn_hidden_size") or (4 * h if h else None))
        required = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        missing = [k for k in required if config.get(k) is None]
        if missing:
            raise FarNodeError(
                f"The model's config.json has no {', '.join(missing)} (model type {kind!r}). FarNode can size "
                f"{', '.join(FAMILIES)} models; set the number of blocks by hand in the settings for this model.",
                title="Model configuration problem")
        heads = config["num_attention_heads"]
        if family == "falcon":
            if config.get("new_decoder_architecture"):
                kv = config.get("num_kv_heads") or heads
            else:
                kv = 1 if config.get("multi_query", True) else heads
        elif family == "bloom":
            kv = heads
        else:
            kv = config.get("num_key_value_heads") or heads
        experts = config.get("num_local_experts") or 0
        dtype = config.get("torch_dtype")
        return cls(
            name=name or str(config.get("_name_or_path") or kind or "model"),
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_layers=config["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=kv,
            vocab_size=config["vocab_size"],
            family=family,
            num_experts=experts if isinstance(experts, int) and not isinstance(experts, bool) else 0,
            torch_dtype=dtype if isinstance(dtype, str) else "",
            bias=bool(config.get("bias", False)) if family == "falcon" else False,
            parallel_attn=bool(config.get("parallel_attn", True)) if family == "falcon" else True,
            new_decoder_architecture=bool(config.get("new_decoder_architecture")) if family == "falcon" else False,
        )

    @classmethod
    def from_config_file(cls, path: Path, name: str | None = None) -> ModelSpec:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise FarNodeError(f"Cannot read the model's config file {path}: {exc.strerror or exc}.",
                               title="Model configuration problem") from exc
        except ValueError as exc:
            raise FarNodeError(f"The model's config file {path} is not valid JSON ({exc}).",
                               title="Model configuration problem") from exc
        return cls.from_config_dict(raw, name=name or Path(path).parent.name)

    # -- arithmetic ----------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_groups(self) -> int:
        """Query heads per key/value head: what an inference session's cache really holds per token."""
        return self.num_attention_heads // self.num_key_value_heads

    @property
    def engine_kv_groups(self) -> int:
        """The engine's ``block_config.num_key_value_groups``, by which FarMesh divides the attention-cache
        ceiling (server.py): Llama's real grouping; Falcon's own rule; but 1 for BLOOM and for Mixtral, whose
        FarMesh config fixes it at 1 although Mixtral has 8 key/value heads of 32. The memory the server may
        take for its cache follows this number, not :attr:`kv_groups`."""
        if self.family in ("mixtral", "bloom"):
            return 1
        if self.family == "falcon" and not self.new_decoder_architecture:
            return self.num_attention_heads if self.num_key_value_heads == 1 else 1
        return self.kv_groups

    @property
    def block_params(self) -> int:
        """Parameters of one decoder block, per family (checked against the real blocks of tiny models of
        every family in tests/engine/test_model_families.py)."""
        h, i = self.hidden_size, self.intermediate_size
        kv_dim = self.num_key_value_heads * self.head_dim
        if self.family in ("llama", "mixtral"):
            # q/o projections h*h each, k/v h*kv_dim each, a gated MLP (gate, up, down: 3*h*i), two RMSNorms;
            # a mixture of experts (Mixtral) holds ``num_experts`` such MLPs and a router (h * experts)
            mlp = 3 * h * i * max(self.num_experts, 1) + (h * self.num_experts if self.num_experts else 0)
            return 2 * h * h + 2 * h * kv_dim + mlp + 2 * h
        if self.family == "bloom":
            # fused QKV (h -> 3h) and dense (h -> h), MLP h -> i -> h, all with biases; two LayerNorms
            return (3 * h * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h) + 4 * h
        # falcon: fused QKV (h -> h + 2 kv_dim: one key/value head when multi-query), dense, MLP h -> i -> h
        params = h * (h + 2 * kv_dim) + h * h + 2 * h * i
        if self.bias:
            params += (h + 2 * kv_dim) + h + i + h
        norms = 2 if self.new_decoder_architecture or not self.parallel_attn else 1
        return params + norms * 2 * h

    def block_bytes(self, quantization: str = "none", dtype_bytes: int = 2) -> int:
        """Memory of one block's weights on the GPU (bytes), as FarMesh's ``get_block_size`` computes it;
        unquantized weights take ``dtype_bytes`` each (2 for float16/bfloat16, 4 for float32)."""
        if quantization not in _BYTES_PER_PARAM:
            raise ValueError(f"unknown quantization {quantization!r}")
        per_param = dtype_bytes if quantization == "none" else _BYTES_PER_PARAM[quantization]
        return round(self.block_params * per_param * (1 + _BLOCK_EPS))

    @property
    def default_cache_tokens(self) -> int:
        """FarMesh's own default ``--attn_cache_tokens`` (server.py): 16384 when its config groups key/value
        heads (:attr:`engine_kv_groups` > 1), else 4096. For Mixtral (grouping fixed at 1) 4096 of FarMesh's
        tokens are 64 MiB per block in float16, which its sessions, with 8 key/value heads, use as 16384 tokens."""
        return 16384 if self.engine_kv_groups > 1 else 4096

    def cache_bytes_per_block(self, tokens: int, dtype_bytes: int = 2) -> int:
        """The attention-cache ceiling of one block that FarMesh derives from ``--attn_cache_tokens tokens``,
        in bytes: ``2 * hidden_size * tokens // num_key_value_groups * dtype bytes`` (its server.py), the most
        its memory cache lets its sessions take."""
        return (2 * self.hidden_size * tokens) // self.engine_kv_groups * dtype_bytes

    def session_tokens(self, tokens: int) -> int:
        """How many tokens of one session the ceiling of ``tokens`` cache tokens holds per block (a session
        keeps keys and values of ``num_key_value_heads`` heads per token)."""
        return tokens * self.hidden_size // (self.engine_kv_groups * self.num_key_value_heads * self.head_dim)

    @property
    def autograd_bytes(self) -> int:
        """FarMesh's allowance for rpc_backward: 2 GiB for BLOOM-176B (hidden 14336), scaled by hidden size."""
        return int(2 * GIB / 14336 * self.hidden_size)


# Shapes of models commonly served on FarMesh swarms (from their config.json files).
REFERENCE_MODELS: dict[str, ModelSpec] = {
    m.name: m for m in (
        ModelSpec("meta-llama/Llama-2-70b-hf", 8192, 28672, 80, 64, 8, 32000),
        ModelSpec("meta-llama/Meta-Llama-3.1-8B", 4096, 14336, 32, 32, 8, 128256),
        ModelSpec("meta-llama/Meta-Llama-3.1-70B", 8192, 28672, 80, 64, 8, 128256),
        ModelSpec("meta-llama/Meta-Llama-3.1-405B", 16384, 53248, 126, 128, 8, 128256),
        ModelSpec("mistralai/Mixtral-8x7B-v0.1", 4096, 14336, 32, 32, 8, 32000, family="mixtral", num_experts=8),
        ModelSpec("bigscience/bloom", 14336, 4 * 14336, 70, 112, 112, 250880, family="bloom"),
        # refused by the app while the engine's Falcon support is broken (core/node/model_support.py)
        ModelSpec("tiiuae/falcon-7b", 4544, 4 * 4544, 32, 71, 1, 65024, family="falcon"),
        ModelSpec("tiiuae/falcon-40b", 8192, 4 * 8192, 60, 128, 8, 65024, family="falcon",
                  new_decoder_architecture=True),
    )
}
DEFAULT_REFERENCE_MODEL = "meta-llama/Llama-2-70b-hf"


# -- decisions ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VariantDecision:
    variant: str  # "cuda" | "cpu"
    reason: str


@dataclass(frozen=True)
class GpuSizing:
    index: int
    uuid: str
    name: str
    eligible: bool
    num_blocks: int  # blocks to serve (0 when not eligible)
    quantization: str  # nf4 | int8 | none
    attn_cache_tokens: int
    fit_blocks: int  # blocks that fit in memory, whatever else rules the GPU out
    block_mib: float  # one block's weights + attention cache
    free_mib: float
    usable_mib: float  # free - reserve - CUDA context - autograd allowance
    reason: str


@dataclass(frozen=True)
class ServerPlan:
    """One server subprocess pinned to one GPU."""

    node_id: str  # "gpu-<index>"
    gpu_index: int
    gpu_uuid: str
    env: dict[str, str] = field(hash=False)  # overrides for the server's environment
    port: int
    num_blocks: int
    quantization: str
    attn_cache_tokens: int
    device: str = "cuda"
    reason: str = ""


@dataclass(frozen=True)
class Recommendation:
    variant: VariantDecision
    sizings: tuple[GpuSizing, ...]
    plans: tuple[ServerPlan, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def summary(self) -> str:
        if not self.plans:
            return f"No GPU will serve: {self.variant.reason}" if self.variant.variant == "cpu" else \
                "No GPU will serve: " + "; ".join(s.reason for s in self.sizings)
        blocks = sum(p.num_blocks for p in self.plans)
        return f"{len(self.plans)} GPU server(s), {blocks} blocks in all ({self.variant.reason})"


def choose_variant(inventory: GpuInventory, platform: str | None = None) -> VariantDecision:
    """Which engine lock variant matches this driver and these GPUs: ``cuda`` or ``cpu``, with a reason."""
    platform = platform or sys.platform
    if inventory.none_reason or not inventory.gpus:
        what = inventory.error or "no NVIDIA GPU was found."
        return VariantDecision("cpu", f"{what.rstrip('.')}. The node runs on the CPU.")
    need = ".".join(map(str, CUDA_VARIANT_CUDA))
    min_driver = MIN_DRIVER_WINDOWS if platform == "win32" else MIN_DRIVER_LINUX
    min_driver_s = ".".join(f"{p:02d}" if i else str(p) for i, p in enumerate(min_driver))
    build = f"torch {ENGINE_TORCH_VERSION} for CUDA {need}"
    cuda = parse_version(inventory.cuda_version)
    driver = parse_version(inventory.driver_version)
    if cuda is not None:
        ok = cuda[:2] >= CUDA_VARIANT_CUDA
        have = f"driver {inventory.driver_version or '?'} supports CUDA {inventory.cuda_version}"
    elif driver is not None:
        ok = driver >= min_driver
        have = f"driver {inventory.driver_version}"
    else:
        return VariantDecision("cpu", "The NVIDIA driver's version could not be read, so the GPU build of the "
                                      "engine cannot be trusted to work; the node runs on the CPU. Reinstall "
                                      "the NVIDIA driver.")
    if not ok:
        return VariantDecision("cpu", f"The {have}; the engine's GPU build ({build}) needs driver {min_driver_s} "
                                      "or newer. Update the NVIDIA driver to use the GPU; until then the node "
                                      "runs on the CPU.")
    usable = [g for g in inventory.gpus if not g.lost and g.compute_capability
              and g.compute_capability >= MIN_CC_CUDA_VARIANT]
    if not usable:
        oldest = ", ".join(f"{g.short_name} ({g.cc_str})" for g in inventory.gpus)
        return VariantDecision("cpu", f"No GPU here can run the engine's GPU build ({build} needs compute "
                                      f"capability {MIN_CC_CUDA_VARIANT[0]}.{MIN_CC_CUDA_VARIANT[1]}, RTX 20 "
                                      f"series or newer): {oldest}. The node runs on the CPU.")
    return VariantDecision("cuda", f"{have}: the engine's GPU build ({build}) runs")


def _supports(cc: tuple[int, int] | None, quantization: str) -> bool:
    if quantization == "none":
        return True
    if cc is None:
        return False
    return cc >= (MIN_CC_NF4 if quantization == "nf4" else MIN_CC_INT8)


DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}


def _fit(model: ModelSpec, usable_bytes: float, quantization: str, tokens: int,
         dtype_bytes: int = 2) -> tuple[int, int]:
    per_block = model.block_bytes(quantization, dtype_bytes) + model.cache_bytes_per_block(tokens, dtype_bytes)
    n = math.floor(usable_bytes / per_block) if usable_bytes > 0 else 0
    return max(0, min(n, model.num_layers)), per_block


def size_gpu(gpu: GpuInfo, model: ModelSpec, settings: Settings,
             variant: VariantDecision | None = None, dtype: str = "float16") -> GpuSizing:
    """Decide whether ``gpu`` can serve ``model`` and with how many blocks, which quantization and how
    large an attention cache; ``variant`` (from :func:`choose_variant`) rules out GPUs the driver can't run.
    ``dtype``: what the server computes in (and keeps unquantized weights and the attention cache in)."""
    name = gpu.short_name
    dbytes = DTYPE_BYTES.get(dtype, 2)
    reserve = float(settings.gpus.reserve_vram_mib)
    free = gpu.memory_free_mib if gpu.memory_free_mib is not None else 0.0
    usable_bytes = (free - reserve - CUDA_CONTEXT_MIB) * MIB - model.autograd_bytes

    def out(eligible: bool, blocks: int, quant: str, tokens: int, fit: int, per_block: int, reason: str):
        return GpuSizing(index=gpu.index, uuid=gpu.uuid, name=gpu.name, eligible=eligible,
                         num_blocks=blocks if eligible else 0, quantization=quant, attn_cache_tokens=tokens,
                         fit_blocks=fit, block_mib=round(per_block / MIB, 1), free_mib=free,
                         usable_mib=round(max(0.0, usable_bytes / MIB), 1), reason=reason)

    tokens = model.default_cache_tokens
    if gpu.lost:
        return out(False, 0, "none", tokens, 0, 0, f"{name}: the GPU is lost (it fell off the bus or needs a "
                                                   "reset); restart the computer")
    if gpu.memory_free_mib is None:
        return out(False, 0, "none", tokens, 0, 0, f"{name}: its free memory cannot be read, so it is not used")
    cc = gpu.compute_capability

    # quantization: the user's choice, or the least lossy one that serves every block, else the densest
    wanted = settings.network.quantization
    if wanted != "auto":
        if not _supports(cc, wanted):
            need = MIN_CC_NF4 if wanted == "nf4" else MIN_CC_INT8
            return out(False, 0, wanted, tokens, 0, 0,
                       f"{name}: {wanted} quantization needs compute capability {need[0]}.{need[1]} or newer "
                       f"(this GPU has {gpu.cc_str}); choose another quantization in the settings")
        quant = wanted
    else:
        # the least lossy that serves every block; if none does, the densest the GPU supports (most blocks)
        serves_all = [q for q in ("none", "int8", "nf4") if _supports(cc, q)
                      and _fit(model, usable_bytes, q, tokens, dbytes)[0] >= model.num_layers]
        quant = serves_all[0] if serves_all else next(q for q in ("nf4", "int8", "none") if _supports(cc, q))

    fit, per_block = _fit(model, usable_bytes, quant, tokens, dbytes)
    while fit < 1 and tokens > MIN_CACHE_TOKENS:  # a smaller attention cache may let one block in
        tokens //= 2
        fit, per_block = _fit(model, usable_bytes, quant, tokens, dbytes)

    kept = f"{_gib_short(reserve)} kept for the desktop" if reserve else "nothing kept for the desktop"
    if fit < 1:
        one = (model.block_bytes(quant, dbytes) + model.cache_bytes_per_block(MIN_CACHE_TOKENS, dbytes)
               + model.autograd_bytes)
        return out(False, 0, quant, tokens, 0, per_block,
                   f"{name}: not enough free memory: {_gib(free)} free ({kept}); one {quant} block with its "
                   f"cache needs about {_gib(one / MIB + CUDA_CONTEXT_MIB)}. Close programs that use the GPU "
                   "or lower the reserve")
    blocks = fit
    extra = ""
    if settings.network.num_blocks:
        if settings.network.num_blocks < fit:
            blocks = settings.network.num_blocks
            extra = f"; serving {blocks} as set in the settings"
        elif settings.network.num_blocks > fit:
            extra = f"; the settings ask for {settings.network.num_blocks}, only {fit} fit"
    if tokens != model.default_cache_tokens:
        extra += f"; attention cache cut to {tokens} tokens to fit"

    eligible = True
    if variant is not None and variant.variant != "cuda":
        eligible = False
        extra += " — not used: the engine's GPU build cannot run (see the driver line)"
    elif cc is None or cc < MIN_CC_CUDA_VARIANT:
        eligible = False
        extra += (f" — not used: compute capability {gpu.cc_str} is older than the "
                  f"{MIN_CC_CUDA_VARIANT[0]}.{MIN_CC_CUDA_VARIANT[1]} the engine's GPU build needs")
    reason = (f"{name}: {fit} of {model.num_layers} blocks fit in {_gib(free)} free ({kept}), {quant}{extra}")
    return out(eligible, blocks, quant, tokens, fit, per_block, reason)


def recommend(inventory: GpuInventory, settings: Settings, model: ModelSpec,
              platform: str | None = None, dtype: str = "float16") -> Recommendation:
    """The variant, every GPU's sizing, and one server plan per contributing eligible GPU."""
    variant = choose_variant(inventory, platform)
    sizings = tuple(size_gpu(g, model, settings, variant, dtype) for g in inventory.gpus)
    notes: list[str] = []
    wanted = {normalize_uuid(u) for u in settings.gpus.contributing if u.strip()}
    if wanted:
        known = {normalize_uuid(g.uuid) for g in inventory.gpus}
        for u in sorted(wanted - known):
            notes.append(f"GPU {u} is selected in the settings but is not in this computer any more")
    chosen = [s for s in sizings if s.eligible and (not wanted or normalize_uuid(s.uuid) in wanted)]
    for s in sizings:
        if s.eligible and wanted and normalize_uuid(s.uuid) not in wanted:
            notes.append(f"{s.name} (GPU {s.index}) could serve but is not selected to contribute")

    base = settings.network.port
    if base and base + len(chosen) - 1 > 65535:
        raise SettingsError(f"network.port {base} leaves no room for {len(chosen)} servers (one port each, "
                            f"{base} to {base + len(chosen) - 1}). Choose a port of at most "
                            f"{65536 - len(chosen)}.")
    plans = []
    for i, s in enumerate(chosen):
        pinned = s.uuid if not s.uuid.startswith("index-") else str(s.index)
        plans.append(ServerPlan(
            node_id=f"gpu-{s.index}", gpu_index=s.index, gpu_uuid=s.uuid,
            # NVML numbers GPUs in PCI bus order; CUDA's default order differs, so pin by UUID and make any
            # index fallback mean the same GPU.
            env={"CUDA_VISIBLE_DEVICES": pinned, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
            port=base + i if base else 0,
            num_blocks=s.num_blocks, quantization=s.quantization, attn_cache_tokens=s.attn_cache_tokens,
            device="cuda", reason=s.reason))
    return Recommendation(variant=variant, sizings=sizings, plans=tuple(plans), notes=tuple(notes))
