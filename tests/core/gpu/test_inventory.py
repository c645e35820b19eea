"""GPU inventory snapshots over the fake NVML."""

from __future__ import annotations

import dataclasses
import os

import pytest

from farnode_desktop.core.gpu.inventory import (
    NO_DRIVER,
    NO_GPU,
    cuda_version_str,
    normalize_uuid,
    read_inventory,
)
from tests.core.gpu.conftest import UUID_A, UUID_B, two_gpus
from tests.support.fake_pynvml import MIB, FakeGpu, FakeProcess, FakePynvml


def test_one_gpu(make_nvml):
    fake = FakePynvml([FakeGpu(uuid=UUID_A, total_mib=12288, used_mib=400, cc=(8, 6), pcie_gen=(3, 4),
                               pcie_width=(8, 16), power_limit_mw=170_000)],
                      driver_version="580.95.05", cuda_version=13000)
    inv = read_inventory(make_nvml(fake), clock=lambda: 123.0)
    assert inv.time == 123.0 and inv.none_reason == "" and inv.error == ""
    assert inv.driver_version == "580.95.05" and inv.cuda_version == "13.0"
    (g,) = inv.gpus
    assert (g.index, g.uuid, g.name) == (0, UUID_A, "NVIDIA GeForce RTX 3060")
    assert (g.memory_total_mib, g.memory_used_mib, g.memory_free_mib) == (12288.0, 400.0, 11888.0)
    assert g.compute_capability == (8, 6) and g.cc_str == "8.6"
    assert (g.pcie_gen_current, g.pcie_gen_max, g.pcie_width_current, g.pcie_width_max) == (3, 4, 8, 16)
    assert g.power_limit_w == 170.0
    assert g.processes == () and not g.lost
    assert g.short_name == "RTX 3060"


def test_two_gpus_and_lookup(make_nvml):
    inv = read_inventory(make_nvml(FakePynvml(two_gpus())))
    assert [g.index for g in inv.gpus] == [0, 1]
    assert inv.gpus[1].power_limit_w == 450.0


def test_snapshots_are_immutable(make_nvml):
    inv = read_inventory(make_nvml(FakePynvml()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        inv.gpus[0].memory_free_mib = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        inv.driver_version = "x"  # type: ignore[misc]


def test_no_library_gives_an_inventory_that_says_why(make_nvml):
    inv = read_inventory(make_nvml(FakePynvml(library_missing=True)))
    assert inv.gpus == () and inv.none_reason == NO_DRIVER
    assert inv.error_title == "No NVIDIA driver" and "install" in inv.error


def test_driver_present_but_no_gpu(make_nvml):
    inv = read_inventory(make_nvml(FakePynvml([], driver_version="550.54.14", cuda_version=12040)))
    assert inv.gpus == () and inv.none_reason == NO_GPU
    assert inv.driver_version == "550.54.14" and inv.cuda_version == "12.4"
    assert inv.error_title == "No NVIDIA GPU" and "sees no NVIDIA GPU" in inv.error


def test_not_supported_fields_are_none(make_nvml):
    gpu = FakeGpu(unsupported={"nvmlDeviceGetCurrPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkWidth",
                               "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit",
                               "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses",
                               "nvmlDeviceGetCudaComputeCapability"},
                  no_permission={"nvmlDeviceGetMemoryInfo"})
    (g,) = read_inventory(make_nvml(FakePynvml([gpu]))).gpus
    assert g.pcie_gen_current is None and g.pcie_width_max is None
    assert g.pcie_gen_max == 4 and g.pcie_width_current == 16
    assert g.power_limit_w is None and g.compute_capability is None and g.cc_str == "n/a"
    assert g.memory_total_mib is None and g.memory_free_mib is None
    assert g.processes == ()


def test_processes_with_names_and_memory(make_nvml):
    me = os.getpid()
    gpu = FakeGpu(used_mib=300, processes=[
        FakeProcess(me, 2048 * MIB),
        FakeProcess(me, 100 * MIB, graphics=True),  # the same process also draws: merged, kind "both"
        FakeProcess(2**22 + 7, None, graphics=True),  # WDDM: memory unknown; pid not running: no name
    ])
    (g,) = read_inventory(make_nvml(FakePynvml([gpu]))).gpus
    by_pid = {p.pid: p for p in g.processes}
    mine = by_pid[me]
    assert mine.used_mib == 2048.0 and mine.kind == "both"
    assert mine.name and "python" in mine.name.lower()
    other = by_pid[2**22 + 7]
    assert other.used_mib is None and other.name is None and other.kind == "graphics"
    assert g.memory_used_mib == 300 + 2048 + 100


def test_lost_gpu_in_inventory_is_a_state(make_nvml):
    gpus = two_gpus()
    gpus[0].lost = True
    inv = read_inventory(make_nvml(FakePynvml(gpus)))
    assert inv.gpus[0].lost and inv.gpus[0].memory_free_mib is None
    assert not inv.gpus[1].lost and inv.gpus[1].uuid == UUID_B


def test_gpu_lost_while_reading_inventory(make_nvml):
    gpu = FakeGpu(lost_after_calls=3)  # UUID, name, memory work; the GPU drops during the next reads
    (g,) = read_inventory(make_nvml(FakePynvml([gpu]))).gpus
    assert g.lost and g.uuid == gpu.uuid and g.name == gpu.name


def test_helpers():
    assert cuda_version_str(12040) == "12.4" and cuda_version_str(13000) == "13.0"
    assert cuda_version_str(None) is None and cuda_version_str(0) is None
    assert normalize_uuid(" GPU-AbC ") == "abc" == normalize_uuid("abc")


def test_one_gpu_that_cannot_be_opened_does_not_hide_the_others(make_nvml, settings):
    from farnode_desktop.core.gpu.inventory import TelemetrySampler
    from farnode_desktop.core.gpu.sizing import REFERENCE_MODELS, recommend
    from tests.support.fake_pynvml import NVML_ERROR_NO_PERMISSION, NVMLError

    fake = FakePynvml(two_gpus())
    orig = fake.nvmlDeviceGetHandleByIndex

    def handle(i):
        if i == 0:
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        return orig(i)

    fake.nvmlDeviceGetHandleByIndex = handle
    nvml = make_nvml(fake)
    inv = read_inventory(nvml)
    assert inv.none_reason == "" and inv.gpus[0].name == "NVIDIA GPU (cannot be opened)"
    assert inv.gpus[1].uuid == UUID_B and inv.gpus[1].memory_free_mib is not None
    rec = recommend(inv, settings, REFERENCE_MODELS["meta-llama/Llama-2-70b-hf"])
    assert [p.node_id for p in rec.plans] == ["gpu-1"] and "cannot be read" in rec.sizings[0].reason
    a, b = TelemetrySampler(None, nvml).sample_once()
    assert not a.lost and a.gpu_util_pct is None and b.gpu_util_pct == 7.0
