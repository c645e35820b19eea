"""MetricsRecorder: from event-bus payloads to stored series."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from farnode_desktop.core import snapshots as c
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.metrics.recorder import MetricsRecorder, spread_counter

from .conftest import NOW


@pytest.fixture
def bus_recorder(store):
    bus = EventBus()
    rec = MetricsRecorder(store, bus)
    yield bus, rec
    rec.close()


def stats(t, run="r1", node="main", tokens=0, fwd=0, sessions=0, reqs=0, uptime=1.0, thr=0.0, state=c.ONLINE):
    return c.NodeStats(time=t, node_id=node, run_id=run, state=state, uptime_s=uptime, inference_tokens=tokens,
                       forward_tokens=fwd, inference_sessions=sessions, forward_requests=reqs,
                       reported_throughput=thr)


def per_second(store, series, t0, t1):
    return {int(b.t): b.mean for b in store.query(series, t0, t1, int(t1 - t0))}


def test_spread_counter_keeps_the_total():
    assert spread_counter(10, 100.3, 101.3) == [(101, 10)]
    assert spread_counter(10, 100.3, 100.9) == [(100, 10)]  # same second
    parts = spread_counter(10, 100.0, 103.0)
    assert [s for s, _ in parts] == [101, 102, 103] and sum(a for _, a in parts) == 10
    assert len(spread_counter(5, 0.0, 1e6)) == 3600  # a huge gap is capped


def test_rates_and_counter_reset_when_run_id_changes(store, bus_recorder):
    bus, _ = bus_recorder
    t = NOW - 100.5
    # Run 1: 50 tokens/s for 10 s (counters start at 0 when the process starts).
    for i in range(11):
        bus.publish("node.stats", stats(t + i, tokens=50 * i, fwd=5 * i, sessions=i // 5, uptime=1 + i))
    bus.publish("node.stats", stats(t + 10, tokens=500))  # a duplicate: ignored
    # The server crashed and restarted: new run id, counters back to small numbers.
    t2 = t + 14
    for i in range(5):
        bus.publish("node.stats", stats(t2 + i, run="r2", tokens=30 + 30 * i, uptime=1 + i))
    store.flush()
    rates = per_second(store, "tokens_inference_per_s", NOW - 200, NOW)
    assert [rates[int(t) + i] for i in range(1, 11)] == [50.0] * 10
    # The first sample of run 2 had 30 tokens after 1 s of uptime: 30 tokens in the second before it.
    assert rates[int(t2)] == 30.0
    assert [rates[int(t2) + i] for i in range(1, 5)] == [30.0] * 4
    assert store.tokens_served_between(NOW - 200, NOW) == 500 + 50 + 30 * 5  # + forward 5/s
    assert store.sum_between("inference_sessions", NOW - 200, NOW) == 2
    assert store.sum_between("tokens_forward_per_s", NOW - 200, NOW) == 50


def test_first_sample_of_a_long_running_node_is_only_a_baseline(store, bus_recorder):
    bus, _ = bus_recorder
    bus.publish("node.stats", stats(NOW - 10, tokens=10_000, uptime=3600))  # tokens from before we watched
    bus.publish("node.stats", stats(NOW - 9, tokens=10_040, uptime=3601))
    store.flush()
    assert store.tokens_served_between(NOW - 100, NOW) == 40


def test_two_nodes_add_up_and_gauges_sum(store, bus_recorder):
    bus, _ = bus_recorder
    for i in range(6):
        bus.publish("node.stats", stats(NOW - 50 + i, node="gpu-a", tokens=10 * i, uptime=i + 1, thr=100.0))
        bus.publish("node.stats", stats(NOW - 50 + i + 0.4, node="gpu-b", tokens=20 * i, uptime=i + 1, thr=50.0,
                                        state=c.LOADING))
    bus.publish("node.state", c.NodeState("gpu-a", c.STOPPED, time=NOW - 40))
    store.flush()
    rates = per_second(store, "tokens_inference_per_s", NOW - 60, NOW)
    assert [rates[int(NOW) - 50 + i] for i in range(1, 6)] == [30.0] * 5
    thr = per_second(store, "reported_throughput", NOW - 60, NOW)
    assert thr[int(NOW) - 45] == 150.0
    assert thr[int(NOW) - 40] == 50.0  # gpu-a stopped
    state = per_second(store, "node_state", NOW - 60, NOW)
    assert state[int(NOW) - 45] == c.STATES[c.ONLINE].code
    assert state[int(NOW) - 40] == c.STATES[c.LOADING].code


def test_gpu_telemetry_events_and_earnings(store, bus_recorder):
    bus, _ = bus_recorder
    bus.publish("gpu.telemetry", (
        c.GpuTelemetry(NOW - 5, 0, "GPU-0", gpu_util_pct=97.0, mem_used_mib=20_000, temperature_c=71,
                       power_w=None),
        c.GpuTelemetry(NOW - 5, 1, "GPU-1", lost=True, gpu_util_pct=5.0),
    ))
    bus.publish("node.event", c.NodeEvent(NOW - 4, "main", "crash", "exit code 1", {"code": 1}))
    bus.publish("earnings.update", {"time": NOW - 3, "paid_total": 1.5, "estimated_unpaid": 0.25})
    bus.publish("earnings.update", SimpleNamespace(time=NOW - 2, paid_total=2.0, estimated_unpaid=None))
    bus.publish("earnings.update", {"time": NOW - 1, "paid_total": "lots"})  # ignored, logged
    store.flush()
    assert store.series_names("gpu") == ["gpu0.mem_used", "gpu0.temp", "gpu0.util"]  # power n/a, GPU 1 lost
    assert store.query("gpu0.util", NOW - 10, NOW)[0].mean == 97.0
    assert [e.kind for e in store.events(NOW - 10, NOW)] == ["crash"]
    assert [b.mean for b in store.query("earnings.paid", NOW - 10, NOW, 10)] == [1.5, 2.0]
    assert [b.mean for b in store.query("earnings.total", NOW - 10, NOW, 10)] == [1.75]
    assert [b.mean for b in store.query("earnings.estimated", NOW - 10, NOW, 10)] == [0.25]
