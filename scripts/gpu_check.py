#!/usr/bin/env python3
"""Check the GPU code against the real thing, on a machine with an NVIDIA GPU.

Prints FarNode's inventory (real pynvml), its sizing for a few swarm models, one telemetry sample, the
real cost of a telemetry sample, and `nvidia-smi --query-gpu=... --format=csv` output, then compares them
field by field. Needs only nvidia-ml-py and psutil (the repository is put on sys.path by this script):

    pip install nvidia-ml-py psutil && python3 scripts/gpu_check.py

Exit status: 0 when every compared field agrees, 1 when one differs, 2 when there is no usable GPU.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from farnode_desktop.app.gpu_cli import (  # noqa: E402
    format_inventory,
    format_recommendation,
    format_telemetry,
    format_telemetry_header,
)
from farnode_desktop.core.gpu.inventory import GpuInventory, TelemetrySampler, read_inventory  # noqa: E402
from farnode_desktop.core.gpu.nvml import Nvml  # noqa: E402
from farnode_desktop.core.gpu.sizing import REFERENCE_MODELS, recommend  # noqa: E402
from farnode_desktop.core.settings import Settings  # noqa: E402

QUERY = ("index,uuid,name,memory.total,memory.free,memory.used,driver_version,pcie.link.gen.current,"
         "pcie.link.width.current,power.limit,temperature.gpu,utilization.gpu,compute_cap")


def nvidia_smi(fmt: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    r = subprocess.run([exe, f"--query-gpu={QUERY}", f"--format={fmt}"], capture_output=True, text=True,
                       timeout=30)
    return r.stdout if r.returncode == 0 else f"(nvidia-smi failed: {r.stderr.strip()})"


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def compare(inv: GpuInventory, smi_csv: str) -> int:
    """Print field-by-field agreement; return the number of differences."""
    rows = list(csv.reader(io.StringIO(smi_csv)))
    diffs = 0
    for row in rows:
        if len(row) < 13:
            continue
        row = [c.strip() for c in row]
        idx = int(row[0])
        g = next((x for x in inv.gpus if x.index == idx), None)
        if g is None:
            print(f"GPU {idx}: in nvidia-smi but not in FarNode's inventory  DIFFERS")
            diffs += 1
            continue
        checks = [
            ("uuid", g.uuid, row[1], lambda a, b: a == b),
            ("name", g.name, row[2], lambda a, b: a == b),
            ("memory.total MiB", g.memory_total_mib, _num(row[3]), lambda a, b: a is not None and abs(a - b) <= 1),
            # free/used move while both are read; NVML's v1 'used' also counts driver-reserved memory that
            # nvidia-smi leaves out, so 'used' is shown but only 'free' is held to a tolerance
            ("memory.free MiB", g.memory_free_mib, _num(row[4]),
             lambda a, b: a is not None and b is not None and abs(a - b) <= 256),
            ("memory.used MiB (info)", g.memory_used_mib, _num(row[5]), None),
            ("driver_version", inv.driver_version, row[6], lambda a, b: a == b),
            ("pcie gen current", g.pcie_gen_current, _num(row[7]), lambda a, b: b is None or a == b),
            ("pcie width current", g.pcie_width_current, _num(row[8]), lambda a, b: b is None or a == b),
            ("power.limit W", g.power_limit_w, _num(row[9]),
             lambda a, b: (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1)),
            ("compute_cap", g.cc_str, row[12], lambda a, b: a == b),
        ]
        for label, ours, theirs, ok in checks:
            verdict = "info" if ok is None else ("ok" if ok(ours, theirs) else "DIFFERS")
            diffs += verdict == "DIFFERS"
            print(f"GPU {idx} {label:<24} farnode={ours!s:<44} nvidia-smi={theirs!s:<24} {verdict}")
    return diffs


def sample_cost_us(nvml: Nvml, gpus: int, passes: int = 200) -> tuple[float, float]:
    """Real NVML: microseconds per GPU for one TelemetrySampler pass, and for the same bare pynvml calls."""
    lib = nvml.ensure()  # the real pynvml module, as core.nvml loaded it (only core.nvml imports it)
    sampler = TelemetrySampler(None, nvml)
    sampler.sample_once()
    t0 = time.perf_counter()
    for _ in range(passes):
        sampler.sample_once()
    ours = (time.perf_counter() - t0) / passes / gpus * 1e6
    handles = [lib.nvmlDeviceGetHandleByIndex(i) for i in range(gpus)]
    calls = [(lib.nvmlDeviceGetUtilizationRates, ()), (lib.nvmlDeviceGetMemoryInfo, ()),
             (lib.nvmlDeviceGetTemperature, (lib.NVML_TEMPERATURE_GPU,)), (lib.nvmlDeviceGetPowerUsage, ()),
             (lib.nvmlDeviceGetFanSpeed, ()), (lib.nvmlDeviceGetClockInfo, (lib.NVML_CLOCK_SM,))]
    t0 = time.perf_counter()
    for _ in range(passes):
        for h in handles:
            for fn, args in calls:
                try:
                    fn(h, *args)
                except lib.NVMLError:
                    pass
    bare = (time.perf_counter() - t0) / passes / gpus * 1e6
    return ours, bare


def main(nvml: Nvml | None = None) -> int:
    nvml = nvml or Nvml()
    inv = read_inventory(nvml)
    print("== FarNode inventory (real NVML) ==")
    if not inv.gpus:
        print(f"{inv.error_title}: {inv.error}")
        return 2
    for line in format_inventory(inv):
        print(line)

    print("\n== One telemetry sample ==")
    print(format_telemetry_header())
    for s in TelemetrySampler(None, nvml).sample_once():
        print(format_telemetry(s))

    ours, bare = sample_cost_us(nvml, len(inv.gpus))
    print(f"\nreal sample cost: {ours:.1f} us per GPU (bare pynvml calls: {bare:.1f} us; ratio {ours / bare:.2f}x);"
          f" CPU share at 1 Hz for {len(inv.gpus)} GPU(s): {ours * len(inv.gpus) / 1e4:.4f} % of one core")

    settings = Settings()
    for name in ("meta-llama/Meta-Llama-3.1-8B", "meta-llama/Llama-2-70b-hf", "meta-llama/Meta-Llama-3.1-405B"):
        spec = REFERENCE_MODELS[name]
        print(f"\n== Sizing for {name} (default settings: reserve {settings.gpus.reserve_vram_mib} MiB) ==")
        for line in format_recommendation(recommend(inv, settings, spec), spec):
            print(line)

    print("\n== nvidia-smi ==")
    raw = nvidia_smi("csv")
    if raw is None:
        print("nvidia-smi is not on PATH: nothing to compare with")
        nvml.close()
        return 0
    print(raw.rstrip())
    print("\n== Comparison ==")
    diffs = compare(inv, nvidia_smi("csv,noheader,nounits") or "")
    print(f"\n{diffs} field(s) differ")
    nvml.close()
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
