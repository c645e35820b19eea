"""Fixtures shared by every test area. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from farnode_desktop.core.paths import AppPaths

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def farnode_home(tmp_path, monkeypatch) -> Path:
    """A private FARNODE_HOME: config, data, logs and cache of the app under a temporary folder."""
    home = tmp_path / "farnode-home"
    monkeypatch.setenv("FARNODE_HOME", str(home))
    return home


@pytest.fixture
def app_paths(farnode_home) -> AppPaths:
    return AppPaths.default().ensure()


ENGINE_ARCHIVE = "farmesh-75a473e.tar.gz"  # `git archive` of the commit the engine lock pins


@pytest.fixture(scope="session")
def engine_archive() -> Path:
    """The engine's source archive for offline installs: FARNODE_ENGINE_SOURCE (scripts/test.sh sets it), else
    shared/engine/ beside the repository (where CI lays shared/)."""
    path = Path(os.environ.get("FARNODE_ENGINE_SOURCE") or REPO.parent / "shared" / "engine" / ENGINE_ARCHIVE)
    if not path.is_file():
        pytest.fail(f"The FarMesh engine archive {path} is missing: put shared/ beside the repository "
                    f"(shared/engine/{ENGINE_ARCHIVE}) or set FARNODE_ENGINE_SOURCE to that archive.")
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY"))
