"""Waiting for a condition with a deadline that grows with the machine's load."""

from __future__ import annotations

import os
import time


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Call ``predicate`` every ``interval`` seconds until it returns something true or ``timeout`` seconds
    (scaled by the machine's load: :func:`scaled`) have passed. Returns that true value, else what the last
    call (made after the deadline) returned."""
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def load_factor() -> float:
    """How much slower than when idle this machine runs now: the 1-minute load average per CPU core, between
    1 and 4. Waits multiply their timeouts by it, so that a test on a busy machine (a 2-core CI machine with
    another workload beside the suite) waits longer instead of failing."""
    try:
        per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:  # no load average on this system
        return 1.0
    return min(4.0, max(1.0, per_core))


def scaled(timeout: float) -> float:
    """``timeout`` seconds as long as they are on an idle machine (see :func:`load_factor`)."""
    return timeout * load_factor()
