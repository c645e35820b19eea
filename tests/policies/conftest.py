"""Fixtures of the policy tests."""

from __future__ import annotations

import pytest

from tests.policies.vclock import VirtualClock
from tests.policies.xserver import xvfb  # noqa: F401  (fixture)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()
