"""Fixtures of the policy tests."""

from __future__ import annotations

import pytest

from farnode_desktop.core.policies.platform.x11 import X11IdleTime
from tests.core.policies.vclock import VirtualClock
from tests.support.display import missing_tools, private_xvfb


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def xvfb():
    """A private Xvfb (``-noreset`` keeps root properties when clients disconnect); yields ``:N``. Ready once
    its idle time can be read."""
    if missing_tools("Xvfb"):
        pytest.skip("Xvfb is not installed (scripts/system-deps.sh installs it): no X server to read idle time")
    with private_xvfb(screen="640x480x24", extra=("-noreset",), timeout=10,
                      ready=lambda d: X11IdleTime(d).idle_seconds().seconds is not None) as display:
        yield display
