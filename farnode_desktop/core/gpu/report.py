"""What the GPUs page and the first-run wizard show: the inventory and, per GPU, whether it can serve and why."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from farnode_desktop.core.gpu.inventory import GpuInventory, read_inventory
from farnode_desktop.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReport:
    inventory: GpuInventory
    eligibility: dict[str, tuple[bool, str]]  # uuid -> (eligible, plain reason)
    contributing: tuple[str, ...]  # settings.gpus.contributing (empty: every eligible GPU)


def gpu_report(nvml, settings: Settings, model_config: Path | None) -> GpuReport:
    """Read the GPU inventory (NVML, tens of ms) and size each GPU for the model whose ``config.json`` is
    ``model_config`` (None: the model is known only when the node starts)."""
    inv = read_inventory(nvml)
    elig: dict[str, tuple[bool, str]] = {}
    if inv.gpus:
        if model_config is not None and model_config.is_file():
            try:
                from farnode_desktop.core.gpu.sizing import ModelSpec, recommend

                rec = recommend(inv, settings, ModelSpec.from_config_file(model_config))
                elig = {s.uuid: (s.eligible, s.reason) for s in rec.sizings}
            except Exception as exc:  # sizing is advice: show the GPU anyway
                log.warning("GPU sizing failed: %s", exc)
        for g in inv.gpus:
            elig.setdefault(g.uuid, (not g.lost, "lost: restart the computer" if g.lost else
                                     "the number of blocks is decided when the node starts"))
    return GpuReport(inv, elig, tuple(settings.gpus.contributing))
