"""A fake of the ``pynvml`` module (nvidia-ml-py) for machines without an NVIDIA GPU.

It is the ONLY fake in the GPU tests: it stands at the ``pynvml`` boundary and implements the functions
:mod:`farnode_desktop.core.gpu.nvml` calls, with the same error classes, codes and return shapes (memory in
bytes, power in milliwatts, strings as bytes like older pynvml versions so decoding is exercised).

Configure it with :class:`FakeGpu` entries; flip ``lost`` / ``lost_after_calls`` to lose a GPU mid-run;
put function names in ``unsupported`` / ``no_permission`` to make fields unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

MIB = 1024 * 1024

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie holds no GPU memory
    except OSError:
        return False


class NVMLError(Exception):
    """Same construction as pynvml's: ``NVMLError(code)`` returns the subclass for that code."""

    _valClassMapping: dict[int, type] = {}

    def __new__(cls, value):
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value):
        super().__init__(value)
        self.value = value

    def __str__(self):
        return f"NVML error {self.value}"


def _make_error_classes() -> dict[str, type]:
    out = {}
    for name, val in list(globals().items()):
        if name.startswith("NVML_ERROR_"):
            cls_name = "NVMLError_" + "".join(w.capitalize() for w in name[len("NVML_ERROR_"):].split("_"))
            cls = type(cls_name, (NVMLError,), {})
            NVMLError._valClassMapping[val] = cls
            out[cls_name] = cls
    return out


_ERROR_CLASSES = _make_error_classes()
globals().update(_ERROR_CLASSES)


class NVMLLibraryMismatchError(Exception):
    pass


@dataclass
class FakeProcess:
    pid: int
    used_bytes: int | None  # None: WDDM (NVML's NVML_VALUE_NOT_AVAILABLE becomes None in pynvml)
    graphics: bool = False


@dataclass
class FakeGpu:
    name: str = "NVIDIA GeForce RTX 3060"
    uuid: str = "GPU-11111111-2222-3333-4444-555555555555"
    total_mib: int = 12288
    used_mib: int = 400  # by other programs (display, browser, games)
    cc: tuple[int, int] = (8, 6)
    pcie_gen: tuple[int, int] = (4, 4)  # (current, max)
    pcie_width: tuple[int, int] = (16, 16)
    power_limit_mw: int = 170_000
    power_mw: int = 35_000
    temperature_c: int = 45
    fan_pct: int = 30
    sm_clock_mhz: int = 1800
    util: tuple[int, int] = (7, 3)  # (gpu %, memory %)
    processes: list[FakeProcess] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)  # function names raising NotSupported
    no_permission: set[str] = field(default_factory=set)
    unknown_error: set[str] = field(default_factory=set)
    lost: bool = False
    lost_after_calls: int | None = None  # lose the GPU after this many device calls


class FakePynvml:
    """Module-like: ``Nvml(module=FakePynvml(gpus=[...]))``."""

    def __init__(self, gpus: list[FakeGpu] | None = None, *, driver_version: str = "580.95.05",
                 cuda_version: int = 13000, library_missing: bool = False, driver_not_loaded: bool = False,
                 bytes_strings: bool = True, missing_functions: set[str] | None = None,
                 live_only: bool = False):
        self.gpus = list(gpus) if gpus is not None else [FakeGpu()]
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.library_missing = library_missing
        self.driver_not_loaded = driver_not_loaded
        self.bytes_strings = bytes_strings
        self.missing_functions = set(missing_functions or ())
        self.live_only = live_only  # like the driver: list only processes that are still running
        self.init_count = 0
        self.shutdown_count = 0
        self.calls: dict[str, int] = {}
        self._device_calls: dict[int, int] = {}
        # expose the error classes and constants like the real module
        for k, v in globals().items():
            if k.startswith(("NVML_", "NVMLError")):
                setattr(self, k, v)
        self.NVMLError = NVMLError
        self.NVMLLibraryMismatchError = NVMLLibraryMismatchError
        for name in self.missing_functions:  # an older driver/library without these functions
            setattr(self, name, None)


    # -- helpers -------------------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return self.init_count > self.shutdown_count

    def _s(self, text: str):
        return text.encode() if self.bytes_strings else text

    def _check_init(self):
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _dev(self, handle, fn: str) -> FakeGpu:
        self._check_init()
        self.calls[fn] = self.calls.get(fn, 0) + 1
        gpu = self.gpus[handle.index]
        n = self._device_calls[handle.index] = self._device_calls.get(handle.index, 0) + 1
        if gpu.lost_after_calls is not None and n > gpu.lost_after_calls:
            gpu.lost = True
        if gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if fn in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if fn in gpu.no_permission:
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        if fn in gpu.unknown_error:
            raise NVMLError(NVML_ERROR_UNKNOWN)
        return gpu

    # -- system --------------------------------------------------------------------------------------
    def nvmlInit(self):
        if self.library_missing:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        if self.driver_not_loaded:
            raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
        self.init_count += 1

    def nvmlShutdown(self):
        self._check_init()
        self.shutdown_count += 1

    def nvmlSystemGetDriverVersion(self):
        self._check_init()
        return self._s(self.driver_version)

    def nvmlSystemGetCudaDriverVersion_v2(self):
        self._check_init()
        return self.cuda_version

    def nvmlSystemGetCudaDriverVersion(self):
        self._check_init()
        return self.cuda_version

    def nvmlDeviceGetCount(self):
        self._check_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._check_init()
        if not (0 <= index < len(self.gpus)):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if self.gpus[index].lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return SimpleNamespace(index=index)

    # -- device: inventory ---------------------------------------------------------------------------
    def nvmlDeviceGetUUID(self, h):
        return self._s(self._dev(h, "nvmlDeviceGetUUID").uuid)

    def nvmlDeviceGetName(self, h):
        return self._s(self._dev(h, "nvmlDeviceGetName").name)

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        g = self._dev(h, "nvmlDeviceGetMemoryInfo")
        used = g.used_mib * MIB + sum(p.used_bytes or 0 for p in g.processes)
        total = g.total_mib * MIB
        return SimpleNamespace(total=total, used=used, free=max(0, total - used))

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self._dev(h, "nvmlDeviceGetCudaComputeCapability").cc

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h):
        return self._dev(h, "nvmlDeviceGetCurrPcieLinkGeneration").pcie_gen[0]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h):
        return self._dev(h, "nvmlDeviceGetMaxPcieLinkGeneration").pcie_gen[1]

    def nvmlDeviceGetCurrPcieLinkWidth(self, h):
        return self._dev(h, "nvmlDeviceGetCurrPcieLinkWidth").pcie_width[0]

    def nvmlDeviceGetMaxPcieLinkWidth(self, h):
        return self._dev(h, "nvmlDeviceGetMaxPcieLinkWidth").pcie_width[1]

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._dev(h, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return self._dev(h, "nvmlDeviceGetPowerManagementLimit").power_limit_mw

    def _procs(self, h, fn, graphics):
        g = self._dev(h, fn)
        return [SimpleNamespace(pid=p.pid, usedGpuMemory=p.used_bytes, gpuInstanceId=0xFFFFFFFF,
                                computeInstanceId=0xFFFFFFFF)
                for p in g.processes if p.graphics == graphics and (not self.live_only or _alive(p.pid))]

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return self._procs(h, "nvmlDeviceGetComputeRunningProcesses", False)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, h):
        return self._procs(h, "nvmlDeviceGetComputeRunningProcesses_v2", False)

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return self._procs(h, "nvmlDeviceGetGraphicsRunningProcesses", True)

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, h):
        return self._procs(h, "nvmlDeviceGetGraphicsRunningProcesses_v2", True)

    # -- device: telemetry ---------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, h):
        g = self._dev(h, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=g.util[0], memory=g.util[1])

    def nvmlDeviceGetTemperature(self, h, sensor):
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self._dev(h, "nvmlDeviceGetTemperature").temperature_c

    def nvmlDeviceGetPowerUsage(self, h):
        return self._dev(h, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetFanSpeed(self, h):
        return self._dev(h, "nvmlDeviceGetFanSpeed").fan_pct

    def nvmlDeviceGetClockInfo(self, h, clock_type):
        if clock_type != NVML_CLOCK_SM:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self._dev(h, "nvmlDeviceGetClockInfo").sm_clock_mhz
