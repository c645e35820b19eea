"""``farnode-desktop gpus``: the GPU inventory, a few seconds of live telemetry and the recommendation."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TextIO

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.gpu.inventory import TOPIC_TELEMETRY, GpuInventory, TelemetrySampler, read_inventory
from farnode_desktop.core.gpu.nvml import Nvml, default_nvml
from farnode_desktop.core.gpu.sizing import (
    DEFAULT_REFERENCE_MODEL,
    REFERENCE_MODELS,
    ModelSpec,
    Recommendation,
    recommend,
)
from farnode_desktop.core.settings import Settings


def _na(value: object, fmt: str = "{}", unit: str = "") -> str:
    return "n/a" if value is None else fmt.format(value) + unit


def format_inventory(inv: GpuInventory) -> list[str]:
    lines = [f"NVIDIA driver {inv.driver_version or 'n/a'}, supports CUDA {inv.cuda_version or 'n/a'}"]
    for g in inv.gpus:
        if g.lost:
            lines.append(f"GPU {g.index}  {g.name}  {g.uuid}  LOST (fell off the bus or needs a reset)")
            continue
        lines.append(f"GPU {g.index}  {g.name}  {g.uuid}")
        lines.append(f"    memory   {_na(g.memory_total_mib, '{:.0f}')} MiB total, {_na(g.memory_free_mib, '{:.0f}')}"
                     f" MiB free, {_na(g.memory_used_mib, '{:.0f}')} MiB used")
        lines.append(f"    compute capability {g.cc_str}   PCIe gen {_na(g.pcie_gen_current)}"
                     f" (max {_na(g.pcie_gen_max)}) x{_na(g.pcie_width_current)} (max x{_na(g.pcie_width_max)})"
                     f"   power limit {_na(g.power_limit_w, '{:.0f}', ' W')}")
        if g.processes:
            for p in g.processes:
                lines.append(f"    process {p.pid:>7}  {p.name or '?':<24} {_na(p.used_mib, '{:.0f}', ' MiB')}")
        else:
            lines.append("    no processes use it")
    return lines


def format_telemetry_header() -> str:
    return f"{'gpu':>3} {'util%':>6} {'mem%':>5} {'used MiB':>9} {'temp C':>7} {'power W':>8} {'fan%':>5} {'SM MHz':>7}"


def format_telemetry(sample) -> str:
    if sample.lost:
        return f"{sample.index:>3}  LOST"
    return (f"{sample.index:>3} {_na(sample.gpu_util_pct, '{:.0f}'):>6} {_na(sample.mem_util_pct, '{:.0f}'):>5} "
            f"{_na(sample.mem_used_mib, '{:.0f}'):>9} {_na(sample.temperature_c, '{:.0f}'):>7} "
            f"{_na(sample.power_w, '{:.1f}'):>8} {_na(sample.fan_pct, '{:.0f}'):>5} "
            f"{_na(sample.sm_clock_mhz, '{:.0f}'):>7}")


def format_recommendation(rec: Recommendation, model: ModelSpec) -> list[str]:
    lines = [f"Model {model.name}: {model.num_layers} blocks",
             f"Engine build: {rec.variant.variant} ({rec.variant.reason})"]
    for s in rec.sizings:
        mark = "serves" if any(p.gpu_index == s.index for p in rec.plans) else "idle  "
        lines.append(f"  [{mark}] {s.reason}")
    for n in rec.notes:
        lines.append(f"  note: {n}")
    for p in rec.plans:
        lines.append(f"  server {p.node_id}: port {p.port or 'auto'}, {p.num_blocks} blocks, {p.quantization}, "
                     f"cache {p.attn_cache_tokens} tokens, CUDA_VISIBLE_DEVICES={p.env['CUDA_VISIBLE_DEVICES']}")
    return lines


def _model_for(settings: Settings) -> tuple[ModelSpec, str]:
    """The model to size for: the one in the settings (a folder, or a hub id read from the Hugging Face
    cache or the hub), else a typical swarm model, saying why."""
    m = settings.network.model.strip()
    if m and (Path(m) / "config.json").is_file():
        return ModelSpec.from_config_file(Path(m) / "config.json", name=m), ""
    why = "no model is set; the local demo model is tiny"
    if m:
        from farnode_desktop.core.errors import FarNodeError
        from farnode_desktop.core.models.hf_token import HfTokenStore
        from farnode_desktop.core.models.hub import HubClient

        try:
            return ModelSpec.from_config_dict(HubClient(HfTokenStore().read).model_config(m).config, name=m), ""
        except FarNodeError as exc:
            if m in REFERENCE_MODELS:
                return REFERENCE_MODELS[m], ""
            why = f"the configuration of {m} could not be read: {exc.message}"
    ref = REFERENCE_MODELS[DEFAULT_REFERENCE_MODEL]
    return ref, f"for {ref.name}, a typical swarm model ({why})"


def _load_settings() -> Settings:
    from farnode_desktop.core.paths import AppPaths
    from farnode_desktop.core.settings import SettingsStore

    return SettingsStore(AppPaths.default().settings_file).load()  # a damaged file: DamagedSettings


def cli_gpus(*, nvml: Nvml | None = None, settings: Settings | None = None, model: ModelSpec | None = None,
             seconds: float = 3.0, out: TextIO | None = None, interval_s: float = 1.0) -> int:
    """Print the inventory, ``seconds`` of live telemetry and the recommendation.

    Returns 0 when at least one NVIDIA GPU was found, 1 when there is no NVIDIA driver or no NVIDIA GPU
    (said plainly), so scripts can test for a usable GPU."""
    out = out or sys.stdout
    nvml = nvml or default_nvml()
    if settings is None:
        settings = _load_settings()
    inv = read_inventory(nvml)
    if not inv.gpus:
        print(f"{inv.error_title}: {inv.error}", file=out)
        if inv.driver_version:
            print(f"(NVIDIA driver {inv.driver_version}, CUDA {inv.cuda_version or 'n/a'})", file=out)
        return 1
    for line in format_inventory(inv):
        print(line, file=out)

    if seconds > 0:
        print(f"\nLive telemetry ({seconds:g} s):", file=out)
        print(format_telemetry_header(), file=out)
        bus = EventBus()
        lock = threading.Lock()

        printed = [0]

        def on_sample(_topic: str, snap) -> None:
            with lock:
                for s in snap:
                    print(format_telemetry(s), file=out)
                printed[0] += 1
                out.flush()

        sub = bus.subscribe(TOPIC_TELEMETRY, on_sample)
        sampler = TelemetrySampler(bus, nvml, interval_s=interval_s)
        sampler.start()
        try:
            threading.Event().wait(seconds)
        finally:
            sampler.stop()
            sub.close()
        if sampler.error is not None:
            print(f"telemetry stopped: {sampler.error.message}", file=out)
        elif not printed[0]:  # a very busy machine: show at least one sample
            on_sample(TOPIC_TELEMETRY, sampler.sample_once())

    spec, why = (model, "") if model is not None else _model_for(settings)
    print("\nRecommendation" + (f" {why}" if why else "") + ":", file=out)
    for line in format_recommendation(recommend(inv, settings, spec), spec):
        print(line, file=out)
    return 0
