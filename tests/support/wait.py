"""Waiting for a condition with a deadline."""

from __future__ import annotations

import time


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Call ``predicate`` every ``interval`` seconds until it returns something true or ``timeout`` seconds
    have passed. Returns that true value, else what the last call (made after the deadline) returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
