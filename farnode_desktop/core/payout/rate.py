"""What running the node earns per hour, for the profit pause (``policies.profit_pause``).

The network publishes its rate (``settings.chain.reward_per_1k_tokens``, reward-token units per 1,000 tokens);
the node's share is the tokens it serves. While online, this node's rate is the tokens its current run served
over its uptime (all its servers together), once the run is :attr:`EarningsRate.min_uptime_s` old (a start's
first seconds say little). A paused node serves nothing, but would earn that rate again when it runs: the last
online rate is kept through a pause, and multiplied by the rate published now, so a pause for an unprofitable
rate ends when the network pays more or electricity costs less.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from farnode_desktop.core import snapshots as C
from farnode_desktop.core import topics as T
from farnode_desktop.core.events import EventBus


class EarningsRate:
    min_uptime_s = 60.0

    def __init__(self, bus: EventBus, rate_per_1k_tokens: Callable[[], float]) -> None:
        self._rate = rate_per_1k_tokens
        self._tokens_per_s: dict[str, float] = {}  # node id -> tokens/s of its last online run
        self._lock = threading.Lock()
        self._sub = bus.subscribe(T.NODE_STATS, self._on_stats)

    def _on_stats(self, _topic: str, s: C.NodeStats) -> None:
        if s.state != C.ONLINE or s.uptime_s < self.min_uptime_s:
            return
        with self._lock:
            self._tokens_per_s[s.node_id] = s.tokens_served / s.uptime_s

    def tokens_per_s(self) -> float | None:
        with self._lock:
            return sum(self._tokens_per_s.values()) if self._tokens_per_s else None

    def per_hour(self) -> float | None:
        """Reward-token units per hour at the published rate; None while no rate is published or the node has
        not served long enough to tell."""
        rate, served = self._rate(), self.tokens_per_s()
        if not rate or served is None:
            return None
        return served * 3600.0 * rate / 1000.0

    def close(self) -> None:
        self._sub.close()
