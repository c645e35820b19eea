"""Loopback ports for servers a test starts."""

from __future__ import annotations

import random
from pathlib import Path

from farnode_desktop.core.ports import loopback_port_free as port_is_free
from farnode_desktop.core.settings import NetworkSettings

__all__ = ["free_port", "port_is_free"]

_LOWEST = 10000  # below: well-known services' ports
# The app's default port (network.port) and those after it (one server per GPU): tests that start a node on the
# default settings use them, so no test is handed one.
_DEFAULT_PORT = NetworkSettings().port
_DEFAULTS = range(_DEFAULT_PORT, _DEFAULT_PORT + 16)


def _ephemeral_range() -> tuple[int, int]:
    """The ports the OS hands out to outgoing connections and to bind(0) (Linux's default where unreadable)."""
    try:
        low, high = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive TCP ports on 127.0.0.1 that nothing listens on now.

    Taken at random from below the OS's ephemeral range: a port the OS picked (bind to 0) is let go again when
    this returns, and any outgoing connection of a test running beside this one could be given it (or the port
    after it, which a multi-GPU node's second server uses) before the test's server binds it.
    """
    low, high = _ephemeral_range()
    # The wider of the two stretches outside the ephemeral range: below it (from _LOWEST) or above it.
    start, end = max((_LOWEST, low), (high + 1, 65536), key=lambda r: r[1] - r[0])
    for _ in range(1000):
        first = random.randrange(start, end - count + 1)
        run = range(first, first + count)
        if not any(p in _DEFAULTS for p in run) and all(port_is_free(p) for p in run):
            return first
    raise RuntimeError(f"no {count} consecutive free loopback ports found between {start} and {end - 1}")
