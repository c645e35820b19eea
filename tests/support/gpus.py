"""GPUs for tests, all over the fake NVML of tests/support/fake_pynvml.py (there is no GPU here). A plugin
(tests/conftest.py registers it): the fixture ``make_nvml``."""

from __future__ import annotations

import pytest

from farnode_desktop.core.gpu.nvml import Nvml
from tests.support.fake_pynvml import FakeGpu, FakePynvml

# Three gamer GPUs with a little memory in use: an RTX 4090 24 GB, an RTX 3060 12 GB and a 6 GB RTX 2060.
GAMER_GPUS = [
    FakeGpu(name="NVIDIA GeForce RTX 4090", uuid="GPU-4090aaaa-0000-0000-0000-000000000001", total_mib=24564,
            used_mib=700, cc=(8, 9)),
    FakeGpu(name="NVIDIA GeForce RTX 3060", uuid="GPU-3060bbbb-0000-0000-0000-000000000002", total_mib=12288,
            used_mib=400, cc=(8, 6)),
    FakeGpu(name="NVIDIA GeForce RTX 2060", uuid="GPU-2060cccc-0000-0000-0000-000000000003", total_mib=6144,
            used_mib=300, cc=(7, 5)),
]


@pytest.fixture
def make_nvml():
    """``make_nvml(fake)`` -> an Nvml over the fake; every one made is closed after the test."""
    made: list[Nvml] = []

    def make(fake: FakePynvml) -> Nvml:
        n = Nvml(module=fake)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()
