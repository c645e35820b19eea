"""Feeds the metrics store from the event bus: node stats, GPU telemetry, lifecycle events, earnings.

Handlers run on the publisher's thread and only compute and queue (the store's writer thread does the
I/O), so they are cheap.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from farnode_desktop.core import snapshots as c
from farnode_desktop.core import topics as T
from farnode_desktop.core.events import EventBus, Subscription
from farnode_desktop.core.metrics.store import MetricsStore

log = logging.getLogger(__name__)

#: A counter delta is spread over at most this many seconds (a longer gap puts it in the last hour).
MAX_SPREAD_S = 3600
#: A node never seen before whose server has run longer than this is taken as already recorded (the app
#: restarted while the node kept running): its first sample only sets the baseline.
FRESH_RUN_S = 10.0
#: A node whose last stats are older than this no longer counts towards summed gauges / node_state.
STALE_NODE_S = 10.0

# series name -> how to read the cumulative counter from NodeStats
COUNTERS: dict[str, Any] = {
    "tokens_inference_per_s": lambda s: s.inference_tokens,
    "tokens_forward_per_s": lambda s: s.forward_tokens,
    "tokens_backward_per_s": lambda s: s.backward_tokens,
    "requests": lambda s: s.requests,
    "inference_sessions": lambda s: s.inference_sessions,
}

GPU_FIELDS = (("util", "gpu_util_pct"), ("mem_used", "mem_used_mib"), ("temp", "temperature_c"),
              ("power", "power_w"))


@dataclass
class _NodeSeen:
    run_id: str
    time: float
    counters: dict[str, float]
    reported_throughput: float
    state_code: int
    state_time: float
    state_sticky: bool  # set from node.state: kept until the next change, never goes stale


def spread_counter(delta: float, t_prev: float, t: float) -> list[tuple[int, float]]:
    """Split ``delta`` events that happened in ``(t_prev, t]`` evenly over the whole seconds they cover,
    as ``(second, amount)``; at least one second, at most :data:`MAX_SPREAD_S`. The amounts sum to
    ``delta`` exactly enough for float use (the last second takes the rounding remainder)."""
    last = int(math.floor(t))
    first = int(math.floor(t_prev)) + 1
    n = max(1, min(MAX_SPREAD_S, last - first + 1))
    each = delta / n
    out = [(last - n + 1 + i, each) for i in range(n - 1)]
    out.append((last, delta - each * (n - 1)))
    return out


class MetricsRecorder:
    """Subscribes to ``node.stats``, ``node.state``, ``gpu.telemetry``, ``node.event`` and ``earnings.update``
    on ``bus`` and records them in ``store``.

    ``earnings.update`` payloads may be an object or a mapping with ``time`` (epoch s, optional: the
    sample time of the latest stats otherwise), ``paid_total`` (cumulative paid out, payout-token units)
    and ``estimated_unpaid`` (earned but not yet paid, same units); missing/None fields are skipped.

    Counters in :class:`~farnode_desktop.core.snapshots.NodeStats` are cumulative per server run; the
    recorder stores their per-second increase (summed over nodes). When ``run_id`` changes, the counters
    restarted at 0, so the new run's whole count is the increase (spread over its uptime).
    """

    def __init__(self, store: MetricsStore, bus: EventBus) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._nodes: dict[str, _NodeSeen] = {}
        self._last_time = 0.0
        self._subs: list[Subscription] = [
            bus.subscribe(T.NODE_STATS, self._on_stats),
            bus.subscribe(T.NODE_STATE, self._on_state),
            bus.subscribe(T.GPU_TELEMETRY, self._on_gpu),
            bus.subscribe(T.NODE_EVENT, self._on_event),
            bus.subscribe(T.EARNINGS_UPDATE, self._on_earnings),
        ]

    def close(self) -> None:
        """Stop listening (the store stays open; close it separately)."""
        for sub in self._subs:
            sub.close()
        self._subs.clear()

    # ---- node stats ------------------------------------------------------------------------------

    def _on_stats(self, _topic: str, s: c.NodeStats) -> None:
        if not isinstance(s, c.NodeStats) or not math.isfinite(s.time):
            log.warning("ignoring a malformed node.stats payload: %r", type(s))
            return
        counters = {name: float(get(s)) for name, get in COUNTERS.items()}
        adds: list[tuple[str, float, float]] = []
        with self._lock:
            prev = self._nodes.get(s.node_id)
            if prev is not None and prev.run_id == s.run_id and s.time <= prev.time:
                return  # duplicate or out of order
            if prev is None or prev.run_id != s.run_id:
                fresh = s.uptime_s <= FRESH_RUN_S or prev is not None
                base = {name: 0.0 for name in counters} if fresh else counters
                t_prev = s.time - max(1.0, s.uptime_s)
                if prev is not None:
                    t_prev = max(t_prev, prev.time)
            else:
                base, t_prev = prev.counters, prev.time
            for name, value in counters.items():
                delta = value - base[name]
                if delta < 0:  # counter went back within one run: treat as a restart from 0
                    delta = value
                if delta > 0:
                    adds += [(name, sec, amount) for sec, amount in spread_counter(delta, t_prev, s.time)]
            code = c.state_info(s.state).code
            keep_sticky = prev is not None and prev.state_sticky and prev.state_code == code
            self._nodes[s.node_id] = _NodeSeen(s.run_id, s.time, counters, float(s.reported_throughput),
                                               code, s.time, keep_sticky)
            self._last_time = max(self._last_time, s.time)
            gauges = self._gauges(s.time)
        if adds:
            self.store.record_many(adds, add=True)
        self.store.record_many(gauges)

    def _gauges(self, t: float) -> list[tuple[str, float, float]]:
        """Summed reported throughput and the most advanced node state, over nodes heard from lately."""
        live = [n for n in self._nodes.values() if n.state_sticky or t - n.state_time <= STALE_NODE_S]
        throughput = sum(n.reported_throughput for n in live if t - n.time <= STALE_NODE_S)
        state = max((n.state_code for n in live), default=0)
        return [("reported_throughput", t, throughput), ("node_state", t, float(state))]

    def _on_state(self, _topic: str, st: c.NodeState) -> None:
        if not isinstance(st, c.NodeState):
            return
        with self._lock:
            t = st.time or self._last_time
            if not t:
                return
            code = c.state_info(st.state).code
            node = self._nodes.get(st.node_id)
            if node is None:
                node = _NodeSeen("", t, {}, 0.0, code, t, True)
                self._nodes[st.node_id] = node
            node.state_code, node.state_time, node.state_sticky = code, t, True
            if code == 0:
                node.reported_throughput = 0.0
            gauges = self._gauges(t)
        self.store.record_many(gauges)

    # ---- GPUs, events, earnings ------------------------------------------------------------------

    def _on_gpu(self, _topic: str, payload: tuple[c.GpuTelemetry, ...]) -> None:
        rows = []
        for g in payload or ():
            if not isinstance(g, c.GpuTelemetry) or g.lost:
                continue
            for short, attr in GPU_FIELDS:
                value = getattr(g, attr)
                if value is not None:
                    rows.append((f"gpu{g.index}.{short}", g.time, value))
        if rows:
            self.store.record_many(rows)

    def _on_event(self, _topic: str, ev: c.NodeEvent) -> None:
        if isinstance(ev, c.NodeEvent):
            self.store.record_event(ev)

    def _on_earnings(self, _topic: str, payload: Any) -> None:
        def field(name: str) -> Any:
            if isinstance(payload, Mapping):
                return payload.get(name)
            return getattr(payload, name, None)

        t = field("time") or self._last_time
        paid, estimated = field("paid_total"), field("estimated_unpaid")
        if not t:
            log.warning("earnings.update without a time ignored")
            return
        try:
            paid = None if paid is None else float(paid)
            estimated = None if estimated is None else float(estimated)
        except (TypeError, ValueError):
            log.warning("earnings.update with non-numeric amounts ignored")
            return
        rows = [("earnings.paid", t, paid), ("earnings.estimated", t, estimated)]
        if paid is not None and estimated is not None:
            rows.append(("earnings.total", t, paid + estimated))
        self.store.record_many(rows)
