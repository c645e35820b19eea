"""The node prepares the engine through its runtime: with Docker chosen and no Docker daemon running (the
case here: the real docker CLI, no daemon), the user is told what to do and nothing starts."""

from __future__ import annotations

import shutil

import pytest

from farnode_desktop.core.errors import EngineEnvError
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.settings import Settings


def test_docker_runtime_without_a_daemon_says_what_to_do(app_paths):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed on this machine")
    settings = Settings()
    settings.network.runtime = "docker"
    node = NodeController(app_paths, EventBus(), settings=settings)
    assert node.supervisor.runtime.name == "docker"
    with pytest.raises(EngineEnvError, match="Docker is not running") as info:
        node.start()
    assert "Start" in info.value.message
    assert node.state.state == "failed" and node.supervisor.pid is None
    node.close()
