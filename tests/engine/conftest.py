"""Fixtures for tests that run the real FarMesh engine on the local swarm."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import psutil
import pytest

from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.engine_venv import EngineEnv, env_root
from farnode_desktop.core.paths import AppPaths

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def engine_root() -> Path:
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


@pytest.fixture
def free_port() -> int:
    return pick_free_port()


def pick_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def group_members(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                out.append(p)
        except (ProcessLookupError, PermissionError):
            continue
    return out


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
