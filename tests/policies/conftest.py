"""Fixtures of the policy tests."""

from __future__ import annotations

import pytest

from tests.policies.vclock import VirtualClock


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()
