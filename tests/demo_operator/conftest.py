"""Fixtures of the demo payout service's tests (helpers in helpers.py)."""

from __future__ import annotations

import pytest

from tests.demo_operator.helpers import Harness


@pytest.fixture
def harness(chain, tmp_path):
    """A served ledger and a state folder for the service, on the session's anvil with its token."""
    h = Harness(chain, tmp_path)
    yield h
    h.close()
