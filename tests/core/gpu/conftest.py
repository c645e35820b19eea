"""Fixtures for the GPU tests: NVML is faked at the ``pynvml`` boundary (tests/support/fake_pynvml.py; the
fixture ``make_nvml`` is in tests/support/gpus.py)."""

from __future__ import annotations

import pytest

from farnode_desktop.core.settings import Settings
from tests.support.fake_pynvml import FakeGpu

UUID_A = "GPU-11111111-2222-3333-4444-555555555555"
UUID_B = "GPU-bbbbbbbb-2222-3333-4444-555555555555"


def two_gpus() -> list[FakeGpu]:
    return [FakeGpu(name="NVIDIA GeForce RTX 3060", uuid=UUID_A, total_mib=12288, cc=(8, 6)),
            FakeGpu(name="NVIDIA GeForce RTX 4090", uuid=UUID_B, total_mib=24564, cc=(8, 9),
                    power_limit_mw=450_000)]


@pytest.fixture
def settings() -> Settings:
    return Settings()
