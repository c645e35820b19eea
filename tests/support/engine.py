"""Fixtures for tests that run the real FarMesh engine (a plugin: tests/conftest.py registers it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.engine_venv import EngineEnv, env_root
from farnode_desktop.core.paths import AppPaths
from tests.support import REPO
from tests.support.ports import free_port as pick_free_port


@pytest.fixture(scope="session")
def engine_root() -> Path:
    """The suite's shared, ready engine environment: FARNODE_ENGINE_ROOT (scripts/test.sh sets it), else .engine/."""
    root = Path(os.environ.get("FARNODE_ENGINE_ROOT") or REPO / ".engine").resolve()
    if not (env_root(root, "cpu") / "ready.json").is_file():
        pytest.fail(f"No ready engine environment under {root}: run scripts/test.sh (it sets it up), or "
                    "`FARNODE_ENGINE_ROOT=.engine farnode-desktop engine setup --variant cpu`.")
    return root


@pytest.fixture
def engine_paths(tmp_path, monkeypatch, engine_root) -> AppPaths:
    """A private data folder that shares the ready engine environment."""
    monkeypatch.setenv("FARNODE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(engine_root))
    return AppPaths.default().ensure()


@pytest.fixture
def engine(engine_paths) -> EngineEnv:
    return EngineEnv(engine_paths, "cpu")


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture(name="free_port")
def free_port_fixture() -> int:
    """A free loopback port (tests.support.ports.free_port) for the test's server."""
    return pick_free_port()
