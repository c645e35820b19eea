"""Fixtures for the metrics store tests: an injectable clock and a store in a private FARNODE_HOME."""

from __future__ import annotations

import pytest

from farnode_desktop.core.metrics.store import MetricsStore

# A fixed, hour-aligned "now" so expected buckets are easy to reason about (2026-03-02 12:00:00 UTC).
NOW = 1_772_452_800.0


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(app_paths, clock):
    s = MetricsStore(app_paths.metrics_db, clock=clock)
    yield s
    s.close()
