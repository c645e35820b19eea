"""The shared test harness: helpers and fixtures that tests in more than one folder use.

Plain helpers are imported (``from tests.support.ports import free_port``); the modules that define fixtures
are registered once, as plugins, in tests/conftest.py (``pytest_plugins``), so no test imports another
folder's conftest.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
