"""The NVML funnel: lazy init, one clear error when there is no driver, per-field "not available",
GPU lost as a state, bytes decoded, shutdown on close."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.gpu import nvml as nvml_mod
from farnode_desktop.core.gpu.nvml import GpuLostError, Nvml, NvmlUnavailable
from tests.support.fake_pynvml import FakeGpu, FakePynvml


def test_init_is_lazy_once_and_shutdown_on_close(make_nvml):
    fake = FakePynvml()
    n = make_nvml(fake)
    assert fake.init_count == 0 and not n.initialized
    assert n.device_count() == 1
    assert n.device_count() == 1
    assert fake.init_count == 1
    n.close()
    n.close()  # idempotent
    assert fake.shutdown_count == 1 and not n.initialized
    assert n.device_count() == 1  # a later call initialises again
    assert fake.init_count == 2


def test_close_is_registered_at_exit_and_unregistered(make_nvml, monkeypatch):
    registered: list = []
    monkeypatch.setattr(nvml_mod.atexit, "register", registered.append)
    monkeypatch.setattr(nvml_mod.atexit, "unregister", registered.remove)
    n = make_nvml(FakePynvml())
    n.ensure()
    assert registered == [n._close_at_exit]
    n.close()
    assert registered == []
    n.ensure()
    registered[0]()  # what the interpreter does at exit
    assert not n.initialized and registered == []
    with pytest.raises(NvmlUnavailable) as ei:
        n.ensure()  # no re-initialisation after exit began
    assert ei.value.reason == nvml_mod.CLOSED


def test_missing_library_is_one_clear_error(make_nvml):
    n = make_nvml(FakePynvml(library_missing=True))
    with pytest.raises(NvmlUnavailable) as ei:
        n.device_count()
    err = ei.value
    assert isinstance(err, FarNodeError)
    assert err.reason == nvml_mod.NO_LIBRARY
    assert err.title == "No NVIDIA driver"
    assert "install the current NVIDIA driver" in err.message
    assert not n.initialized


def test_driver_not_loaded(make_nvml):
    n = make_nvml(FakePynvml(driver_not_loaded=True))
    with pytest.raises(NvmlUnavailable) as ei:
        n.ensure()
    assert ei.value.reason == nvml_mod.DRIVER_NOT_LOADED
    assert "Restart the computer" in ei.value.message


def test_without_a_driver_nvml_is_tried_again_once_a_minute_not_at_every_call(make_nvml, monkeypatch):
    """The app asks NVML every few seconds (policies, telemetry). Without a driver each attempt of the real
    pynvml loads the library anew and leaves a ctypes class behind (~27 objects an attempt): after a failure
    the same answer is given, as a new exception, until ``retry_after_s`` has passed."""
    import gc

    fake = FakePynvml(driver_not_loaded=True)
    tries: list[int] = []
    real_init = fake.nvmlInit
    monkeypatch.setattr(fake, "nvmlInit", lambda: (tries.append(1), real_init()))
    clock = [1000.0]
    monkeypatch.setattr(nvml_mod.time, "monotonic", lambda: clock[0])
    n = make_nvml(fake)
    errors = []
    for _ in range(50):
        with pytest.raises(NvmlUnavailable) as ei:
            n.ensure()
        errors.append(ei.value)
    assert len(tries) == 1 and len({id(e) for e in errors}) == 50
    assert {e.reason for e in errors} == {nvml_mod.DRIVER_NOT_LOADED}
    clock[0] += n.retry_after_s
    fake.driver_not_loaded = False  # the driver came up meanwhile
    assert n.device_count() == 1 and len(tries) == 2

    if ctypes.util.find_library("nvidia-ml") is None:  # the real pynvml, here without a driver: nothing stays
        monkeypatch.undo()
        real = Nvml()

        def attempts(times: int) -> int:
            for _ in range(times):
                with pytest.raises(NvmlUnavailable):
                    real.ensure()
            gc.collect()
            return len(gc.get_objects())

        before = attempts(5)
        assert attempts(500) - before < 100


def test_a_failed_start_is_freed_at_once_not_kept_by_the_next_one(make_nvml):
    """Each retry without a driver (once a minute, for the app's whole life) used to keep the one before it:
    the failure kept for the retry window was the raised exception, whose traceback held the frame whose
    ``known`` was the previous failure, and so on (the soak's window: ~9 tracebacks a minute, never freed,
    not even by a full collection). Reference counting alone must free each one."""
    import gc

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, NvmlUnavailable) or type(o).__name__ == "traceback")

    n = make_nvml(FakePynvml(driver_not_loaded=True))
    n.retry_after_s = 0.0
    gc.collect()
    gc.disable()
    try:
        before = alive()
        for _ in range(20):
            try:
                n.ensure()
            except NvmlUnavailable:
                pass
        assert alive() - before <= 2  # the failure kept for the retry window (no traceback) and the last one
    finally:
        gc.enable()


def test_missing_pynvml_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with pytest.raises(NvmlUnavailable) as ei:
        Nvml().ensure()
    assert ei.value.reason == nvml_mod.NO_LIBRARY
    assert "nvidia-ml-py" in ei.value.message


@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is not None, reason="this machine has an NVIDIA driver")
def test_real_pynvml_without_driver_says_so():
    """The real pynvml on a machine without the NVIDIA driver (no fake here)."""
    n = Nvml()
    try:
        with pytest.raises(NvmlUnavailable) as ei:
            n.ensure()
        assert ei.value.reason == nvml_mod.NO_LIBRARY
    finally:
        n.close()


def test_fields_not_available_become_none(make_nvml):
    gpu = FakeGpu(unsupported={"nvmlDeviceGetFanSpeed"}, no_permission={"nvmlDeviceGetPowerUsage"},
                  unknown_error={"nvmlDeviceGetTemperature"})
    n = make_nvml(FakePynvml([gpu]))
    h = n.handle(0)
    assert n.get("nvmlDeviceGetFanSpeed", h) is None
    assert n.get("nvmlDeviceGetPowerUsage", h) is None
    assert n.get("nvmlDeviceGetTemperature", h, 0) is None
    value, code = n.try_get("nvmlDeviceGetFanSpeed", h)
    assert value is None and n.is_not_supported(code)
    value, code = n.try_get("nvmlDeviceGetPowerUsage", h)
    assert value is None and not n.is_not_supported(code)  # may come back (permissions can change)
    assert n.get("nvmlDeviceGetClockInfo", h, 1) == 1800


def test_fallback_to_older_function(make_nvml):
    fake = FakePynvml(missing_functions={"nvmlDeviceGetEnforcedPowerLimit", "nvmlSystemGetCudaDriverVersion_v2"})
    n = make_nvml(fake)
    h = n.handle(0)
    assert n.get(("nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit"), h) == 170_000
    assert n.get(("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion")) == 13000
    assert n.get("nvmlDeviceGetEnforcedPowerLimit", h) is None


def test_gpu_lost_is_raised_as_state_error(make_nvml):
    n = make_nvml(FakePynvml([FakeGpu(lost=True)]))
    with pytest.raises(GpuLostError):
        n.handle(0)


def test_bytes_are_decoded(make_nvml):
    n = make_nvml(FakePynvml(bytes_strings=True))
    assert n.get("nvmlSystemGetDriverVersion") == "580.95.05"
    assert n.get("nvmlDeviceGetName", n.handle(0)) == "NVIDIA GeForce RTX 3060"
    assert nvml_mod._text(b"bad\xff\x00") == "bad\ufffd"


def test_handles_are_cached(make_nvml):
    fake = FakePynvml()
    calls = []
    orig = fake.nvmlDeviceGetHandleByIndex
    fake.nvmlDeviceGetHandleByIndex = lambda i: calls.append(i) or orig(i)
    n = make_nvml(fake)
    assert n.handle(0) is n.handle(0)
    assert calls == [0]


def test_unexpected_exception_is_not_hidden(make_nvml):
    fake = FakePynvml()

    def broken(h):
        raise RuntimeError("a bug")

    fake.nvmlDeviceGetFanSpeed = broken
    n = make_nvml(fake)
    with pytest.raises(RuntimeError):
        n.get("nvmlDeviceGetFanSpeed", n.handle(0))
