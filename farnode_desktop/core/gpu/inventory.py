"""NVIDIA GPU inventory (immutable snapshots) and 1 Hz telemetry, read through :mod:`core.nvml`.

- :func:`read_inventory` returns a :class:`GpuInventory`: driver, CUDA version the driver supports, and one
  :class:`GpuInfo` per GPU. It never raises for a missing driver or GPU: the inventory says why instead.
- :class:`TelemetrySampler` is a thread that reads every GPU once per second in one pass and publishes a
  ``tuple[GpuTelemetry, ...]`` on the ``gpu.telemetry`` topic of the :class:`EventBus`.

Units: memory in MiB (2**20 bytes), power in W, temperature in °C, clocks in MHz, utilization and fan in %.
``None`` always means "not available on this GPU/driver" (stored as NULL, shown as "n/a").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from farnode_desktop.core import topics as T
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.gpu.nvml import CLOSED, GpuLostError, Nvml, NvmlUnavailable, default_nvml
from farnode_desktop.core.snapshots import GpuTelemetry

log = logging.getLogger(__name__)

TOPIC_TELEMETRY = T.GPU_TELEMETRY

MIB = 1024 * 1024

# Why there is no usable GPU (GpuInventory.none_reason)
NO_DRIVER = "no_driver"
NO_GPU = "no_gpu"

# NVML enum values (stable; the module's constants are used when it has them)
_TEMPERATURE_GPU = 0
_CLOCK_SM = 1


@dataclass(frozen=True)
class GpuProcess:
    """A process that uses a GPU, as NVML lists it; the GPU-programs policy reads the same type."""

    pid: int
    name: str | None  # process name from the OS (psutil); None when it exited or is not ours to see
    used_mib: float | None = None  # None on Windows/WDDM, where NVML cannot tell per-process memory
    util_pct: float | None = None  # per-process utilisation; None: not read
    kind: str = "compute"  # compute | graphics | both


@dataclass(frozen=True)
class GpuInfo:
    """One GPU at one moment. Indexes are NVML's (PCI bus order), which is what nvidia-smi shows."""

    index: int
    uuid: str
    name: str
    memory_total_mib: float | None = None
    memory_free_mib: float | None = None
    memory_used_mib: float | None = None
    compute_capability: tuple[int, int] | None = None  # (major, minor), e.g. (8, 6) for an RTX 3060
    pcie_gen_current: int | None = None
    pcie_gen_max: int | None = None
    pcie_width_current: int | None = None  # lanes
    pcie_width_max: int | None = None
    power_limit_w: float | None = None  # enforced power limit
    processes: tuple[GpuProcess, ...] = ()
    lost: bool = False  # the GPU fell off the bus / needs a reset: it cannot serve until that is fixed

    @property
    def cc_str(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}" if self.compute_capability else "n/a"

    @property
    def short_name(self) -> str:
        """"RTX 3060" from "NVIDIA GeForce RTX 3060": what a user reads in a sentence."""
        n = self.name
        for prefix in ("NVIDIA ", "GeForce "):
            if n.startswith(prefix):
                n = n[len(prefix):]
        return n or f"GPU {self.index}"


@dataclass(frozen=True)
class GpuInventory:
    time: float
    driver_version: str | None = None  # e.g. "550.54.14"
    cuda_version: str | None = None  # highest CUDA the driver supports, e.g. "12.4"
    gpus: tuple[GpuInfo, ...] = ()
    none_reason: str = ""  # "" | no_driver | no_gpu
    error_title: str = ""
    error: str = ""  # a plain sentence for the user when there is no usable GPU


def normalize_uuid(uuid: str) -> str:
    """Compare UUIDs case-insensitively, with or without nvidia-smi's ``GPU-`` prefix."""
    u = uuid.strip().lower()
    return u[4:] if u.startswith("gpu-") else u


def cuda_version_str(value: int | None) -> str | None:
    """NVML's CUDA version integer (1000*major + 10*minor, e.g. 12040) as ``"12.4"``."""
    if not isinstance(value, int) or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def _mib(value: float | int | None) -> float | None:
    return None if value is None else round(float(value) / MIB, 1)


def _process_name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError, ValueError):
        return None


def _read_processes(nvml: Nvml, handle: object) -> tuple[GpuProcess, ...]:
    merged: dict[int, GpuProcess] = {}
    for kind, names in (
        ("compute", ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2")),
        ("graphics", ("nvmlDeviceGetGraphicsRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses_v2")),
    ):
        procs = nvml.get(names, handle) or ()
        for p in procs:
            pid = int(getattr(p, "pid", -1))
            if pid < 0:
                continue
            raw = getattr(p, "usedGpuMemory", None)
            used = _mib(raw) if isinstance(raw, int) and raw < 2**63 else None
            prev = merged.get(pid)
            p_kind = kind
            if prev is not None:
                used = max((u for u in (prev.used_mib, used) if u is not None), default=None)
                p_kind = "both" if prev.kind != kind else kind
            merged[pid] = GpuProcess(pid=pid, name=prev.name if prev else _process_name(pid),
                                     used_mib=used, kind=p_kind)
    return tuple(sorted(merged.values(), key=lambda p: p.pid))


def _read_gpu(nvml: Nvml, index: int, *, with_processes: bool) -> GpuInfo:
    try:
        handle = nvml.handle(index)
        uuid = nvml.get("nvmlDeviceGetUUID", handle) or f"index-{index}"
    except GpuLostError:
        return GpuInfo(index=index, uuid=f"index-{index}", name="lost GPU", lost=True)
    except NvmlUnavailable as exc:
        if exc.reason == CLOSED:
            raise
        # one GPU this user/container may not open: listed, with nothing readable, so it is never used
        log.info("GPU %d cannot be opened: %s", index, exc.detail or exc.message)
        return GpuInfo(index=index, uuid=f"index-{index}", name="NVIDIA GPU (cannot be opened)")
    name = nvml.get("nvmlDeviceGetName", handle) or "NVIDIA GPU"
    try:
        mem = nvml.get("nvmlDeviceGetMemoryInfo", handle)
        cc = nvml.get("nvmlDeviceGetCudaComputeCapability", handle)
        power = nvml.get(("nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit"), handle)
        info = GpuInfo(
            index=index,
            uuid=str(uuid),
            name=str(name),
            memory_total_mib=_mib(getattr(mem, "total", None)) if mem is not None else None,
            memory_free_mib=_mib(getattr(mem, "free", None)) if mem is not None else None,
            memory_used_mib=_mib(getattr(mem, "used", None)) if mem is not None else None,
            compute_capability=(int(cc[0]), int(cc[1])) if cc else None,
            pcie_gen_current=nvml.get("nvmlDeviceGetCurrPcieLinkGeneration", handle),
            pcie_gen_max=nvml.get("nvmlDeviceGetMaxPcieLinkGeneration", handle),
            pcie_width_current=nvml.get("nvmlDeviceGetCurrPcieLinkWidth", handle),
            pcie_width_max=nvml.get("nvmlDeviceGetMaxPcieLinkWidth", handle),
            power_limit_w=None if power is None else round(power / 1000.0, 1),  # NVML: milliwatts
            processes=_read_processes(nvml, handle) if with_processes else (),
        )
    except GpuLostError:
        return GpuInfo(index=index, uuid=str(uuid), name=str(name), lost=True)
    return info


def read_inventory(nvml: Nvml | None = None, *, with_processes: bool = True,
                   clock: Callable[[], float] = time.time) -> GpuInventory:
    """Read driver, CUDA version and every GPU. Never raises for "no driver" / "no GPU": the returned
    inventory carries ``none_reason`` and a plain ``error`` sentence instead."""
    nvml = nvml or default_nvml()
    now = clock()
    try:
        nvml.ensure()
        driver = nvml.get("nvmlSystemGetDriverVersion")
        cuda = cuda_version_str(nvml.get(("nvmlSystemGetCudaDriverVersion_v2",
                                          "nvmlSystemGetCudaDriverVersion")))
        count = nvml.device_count()
    except NvmlUnavailable as exc:
        return GpuInventory(time=now, none_reason=NO_DRIVER, error_title=exc.title, error=exc.message)
    gpus = tuple(_read_gpu(nvml, i, with_processes=with_processes) for i in range(count))
    if not gpus:
        return GpuInventory(
            time=now, driver_version=driver, cuda_version=cuda, none_reason=NO_GPU,
            error_title="No NVIDIA GPU",
            error=f"The NVIDIA driver {driver or ''} is installed but it sees no NVIDIA GPU. Check that the card "
                  "is seated and powered, and that it is not disabled in the BIOS or passed to a virtual "
                  "machine. The node can still run on the CPU, slowly.".replace("  ", " "))
    return GpuInventory(time=now, driver_version=driver, cuda_version=cuda, gpus=gpus)


# -- telemetry ----------------------------------------------------------------------------------------

@dataclass
class _Device:
    index: int
    uuid: str
    handle: object
    lost: bool = False
    inaccessible: bool = False  # could not be opened (permissions): published with every field None
    skip: set[str] = field(default_factory=set)  # fields NVML said are NotSupported: never asked again


class TelemetrySampler:
    """Samples every GPU once per ``interval_s`` (1 s) on its own thread and publishes
    ``tuple[GpuTelemetry, ...]`` on ``gpu.telemetry``.

    One pass per tick reads all GPUs back to back with cached handles (no re-init, no re-enumeration),
    and skips fields the GPU does not support after the first NotSupported. A GPU that is lost is
    published with ``lost=True`` and not queried again until the sampler is restarted.
    """

    def __init__(self, bus: EventBus | None = None, nvml: Nvml | None = None, *, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.time, topic: str = TOPIC_TELEMETRY):
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.bus = bus
        self.nvml = nvml or default_nvml()
        self.interval_s = interval_s
        self.topic = topic
        self._clock = clock
        self._devices: list[_Device] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.latest: tuple[GpuTelemetry, ...] = ()
        self.error: NvmlUnavailable | None = None  # set when NVML could not be used at all
        self.samples = 0

    # -- one pass ------------------------------------------------------------------------------------
    def _enumerate(self) -> list[_Device]:
        devices = []
        for i in range(self.nvml.device_count()):
            try:
                h = self.nvml.handle(i)
                uuid = self.nvml.get("nvmlDeviceGetUUID", h) or f"index-{i}"
                devices.append(_Device(index=i, uuid=str(uuid), handle=h))
            except GpuLostError:
                devices.append(_Device(index=i, uuid=f"index-{i}", handle=None, lost=True))
            except NvmlUnavailable as exc:
                if exc.reason == CLOSED:
                    raise
                devices.append(_Device(index=i, uuid=f"index-{i}", handle=None, inaccessible=True))
        return devices

    def _read(self, dev: _Device, name: str, *args: object) -> object:
        if name in dev.skip:
            return None
        value, code = self.nvml.try_get(name, dev.handle, *args)
        if code and self.nvml.is_not_supported(code):
            dev.skip.add(name)
        return value

    def _sample_device(self, dev: _Device, now: float, temp_sensor: int, clock_sm: int) -> GpuTelemetry:
        if dev.lost or dev.inaccessible:
            return GpuTelemetry(time=now, index=dev.index, uuid=dev.uuid, lost=dev.lost)
        try:
            util = self._read(dev, "nvmlDeviceGetUtilizationRates")
            mem = self._read(dev, "nvmlDeviceGetMemoryInfo")
            temp = self._read(dev, "nvmlDeviceGetTemperature", temp_sensor)
            power = self._read(dev, "nvmlDeviceGetPowerUsage")  # milliwatts
            fan = self._read(dev, "nvmlDeviceGetFanSpeed")  # percent of max speed
            sm = self._read(dev, "nvmlDeviceGetClockInfo", clock_sm)  # MHz
        except GpuLostError:
            dev.lost = True
            log.warning("GPU %d (%s) is lost: it fell off the bus or needs a reset", dev.index, dev.uuid)
            return GpuTelemetry(time=now, index=dev.index, uuid=dev.uuid, lost=True)
        return GpuTelemetry(
            time=now, index=dev.index, uuid=dev.uuid,
            gpu_util_pct=None if util is None else float(util.gpu),
            mem_util_pct=None if util is None else float(util.memory),
            mem_used_mib=None if mem is None else mem.used / MIB,
            mem_total_mib=None if mem is None else mem.total / MIB,
            temperature_c=None if temp is None else float(temp),
            power_w=None if power is None else power / 1000.0,
            fan_pct=None if fan is None else float(fan),
            sm_clock_mhz=None if sm is None else float(sm),
        )

    def sample_once(self) -> tuple[GpuTelemetry, ...]:
        """Read all GPUs once and return the snapshot (does not publish). Raises NvmlUnavailable when
        NVML cannot be used at all."""
        with self._lock:
            if self._devices is None:
                self.nvml.ensure()
                self._devices = self._enumerate()
                self._temp = self.nvml.constant("NVML_TEMPERATURE_GPU", _TEMPERATURE_GPU)
                self._clock_sm = self.nvml.constant("NVML_CLOCK_SM", _CLOCK_SM)
            now = self._clock()
            snap = tuple(self._sample_device(d, now, self._temp, self._clock_sm) for d in self._devices)
            self.latest = snap
            self.samples += 1
            return snap

    def reset(self) -> None:
        """Forget cached devices (after a driver restart or GPU hot-plug): the next pass re-enumerates."""
        with self._lock:
            self._devices = None

    # -- thread --------------------------------------------------------------------------------------
    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                snap = self.sample_once()
            except NvmlUnavailable as exc:
                self.error = exc
                log.info("GPU telemetry off: %s", exc.message)
                return
            except Exception:  # a bug in one pass must not kill the sampler silently forever
                log.exception("GPU telemetry pass failed")
                snap = None
            if snap is not None and self.bus is not None:
                self.bus.publish(self.topic, snap)
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (suspend, slow driver): skip the missed ticks
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def start(self) -> None:
        """Start the thread (idempotent). The first sample is taken at once."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpu-telemetry", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and wait for it (idempotent). NVML stays initialised for other users."""
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def processes_for_policies(nvml: Nvml | None = None) -> list[GpuProcess]:
    """Every process using a GPU, for the GPU-programs policy: pid, name, GPU memory in MiB (None where the
    driver cannot tell, e.g. Windows WDDM); per-process utilisation is not read (None). Empty when there is
    no NVIDIA driver or GPU."""
    return [p for gpu in read_inventory(nvml, with_processes=True).gpus for p in gpu.processes]
