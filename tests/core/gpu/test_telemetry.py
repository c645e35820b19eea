"""The 1 Hz telemetry sampler over the fake NVML (the thread runs at a short interval in these tests)."""

from __future__ import annotations

import threading
import time

import pytest

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.gpu.inventory import TOPIC_TELEMETRY, TelemetrySampler
from farnode_desktop.core.snapshots import GpuTelemetry
from tests.core.gpu.conftest import UUID_A, UUID_B, two_gpus
from tests.support.fake_pynvml import MIB, FakeGpu, FakeProcess, FakePynvml


def test_sample_values_and_units(make_nvml):
    gpus = two_gpus()
    gpus[0].processes = [FakeProcess(4242, 1000 * MIB)]
    gpus[0].power_mw, gpus[0].temperature_c, gpus[0].util = 123_456, 61, (97, 40)
    s = TelemetrySampler(None, make_nvml(FakePynvml(gpus)), clock=lambda: 5.0)
    a, b = s.sample_once()
    assert isinstance(a, GpuTelemetry) and s.latest == (a, b)
    assert (a.time, a.index, a.uuid, b.uuid) == (5.0, 0, UUID_A, UUID_B)
    assert (a.gpu_util_pct, a.mem_util_pct) == (97.0, 40.0)
    assert a.mem_used_mib == 400 + 1000 and a.mem_total_mib == 12288
    assert a.temperature_c == 61.0 and a.power_w == pytest.approx(123.456)
    assert a.fan_pct == 30.0 and a.sm_clock_mhz == 1800.0 and not a.lost


def test_not_supported_field_is_none_and_not_asked_again(make_nvml):
    gpu = FakeGpu(unsupported={"nvmlDeviceGetFanSpeed"}, no_permission={"nvmlDeviceGetPowerUsage"})
    fake = FakePynvml([gpu])
    s = TelemetrySampler(None, make_nvml(fake))
    for _ in range(5):
        (t,) = s.sample_once()
        assert t.fan_pct is None and t.power_w is None and t.temperature_c == 45.0
    assert fake.calls["nvmlDeviceGetFanSpeed"] == 1  # NotSupported is permanent: asked once
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 5  # NoPermission may change: asked every time
    assert fake.calls["nvmlDeviceGetTemperature"] == 5


def test_gpu_lost_mid_sampling(make_nvml):
    gpus = two_gpus()
    fake = FakePynvml(gpus)
    s = TelemetrySampler(None, make_nvml(fake))
    first = s.sample_once()
    assert not any(t.lost for t in first)
    gpus[1].lost = True  # falls off the bus between two ticks
    a, b = s.sample_once()
    assert b.lost and b.uuid == UUID_B and b.gpu_util_pct is None and b.mem_used_mib is None
    assert not a.lost and a.gpu_util_pct == 7.0
    calls_before = dict(fake.calls)
    a, b = s.sample_once()
    assert b.lost and not a.lost
    # the lost GPU is not queried again; the other one still is
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == calls_before["nvmlDeviceGetUtilizationRates"] + 1


def test_gpu_lost_in_the_middle_of_a_pass(make_nvml):
    gpu = FakeGpu(lost_after_calls=1 + 6 + 2)  # UUID, one full pass, then 2 reads into the second
    s = TelemetrySampler(None, make_nvml(FakePynvml([gpu])))
    (t,) = s.sample_once()
    assert not t.lost
    (t,) = s.sample_once()
    assert t.lost and t.temperature_c is None


def test_thread_publishes_on_the_bus_with_cached_handles(make_nvml):
    fake = FakePynvml(two_gpus())
    handle_calls = []
    orig = fake.nvmlDeviceGetHandleByIndex
    fake.nvmlDeviceGetHandleByIndex = lambda i: handle_calls.append(i) or orig(i)
    bus = EventBus()
    got: list[tuple] = []
    done = threading.Event()

    def on(topic, payload):
        assert topic == TOPIC_TELEMETRY
        got.append(payload)
        if len(got) >= 4:
            done.set()

    bus.subscribe(TOPIC_TELEMETRY, on)
    s = TelemetrySampler(bus, make_nvml(fake), interval_s=0.02)
    s.start()
    s.start()  # idempotent
    try:
        assert done.wait(5), "no telemetry published"
    finally:
        s.stop()
    assert not s.running
    n = len(got)
    time.sleep(0.06)
    assert len(got) == n  # stopped means stopped
    assert all(isinstance(p, tuple) and len(p) == 2 for p in got)
    assert fake.init_count == 1 and handle_calls == [0, 1]  # no per-tick re-init or re-enumeration
    s.stop()  # idempotent


def test_sampler_without_driver_stops_and_says_why(make_nvml):
    bus = EventBus()
    got = []
    bus.subscribe(TOPIC_TELEMETRY, lambda t, p: got.append(p))
    s = TelemetrySampler(bus, make_nvml(FakePynvml(library_missing=True)), interval_s=0.01)
    s.start()
    deadline = time.monotonic() + 5
    while s.running and time.monotonic() < deadline:
        time.sleep(0.01)
    s.stop()
    assert not s.running and got == []
    assert s.error is not None and s.error.title == "No NVIDIA driver"


def test_a_failing_subscriber_does_not_stop_sampling(make_nvml):
    bus = EventBus()
    good = threading.Event()
    count = []

    def bad(t, p):
        raise RuntimeError("subscriber bug")

    def ok(t, p):
        count.append(1)
        if len(count) >= 3:
            good.set()

    bus.subscribe(TOPIC_TELEMETRY, bad)
    bus.subscribe(TOPIC_TELEMETRY, ok)
    s = TelemetrySampler(bus, make_nvml(FakePynvml()), interval_s=0.01)
    s.start()
    try:
        assert good.wait(5)
    finally:
        s.stop()


def test_reset_re_enumerates(make_nvml):
    fake = FakePynvml([FakeGpu()])
    s = TelemetrySampler(None, make_nvml(fake))
    assert len(s.sample_once()) == 1
    fake.gpus.append(FakeGpu(uuid="GPU-new"))
    assert len(s.sample_once()) == 1  # cached devices
    s.reset()
    assert [t.uuid for t in s.sample_once()] == [fake.gpus[0].uuid, "GPU-new"]


def test_interval_must_be_positive(make_nvml):
    with pytest.raises(ValueError):
        TelemetrySampler(None, make_nvml(FakePynvml()), interval_s=0)
