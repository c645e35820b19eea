"""Each start failure that can happen here reaches the user as a plain message that says what to do."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.errors import EngineEnvError
from farnode_desktop.core.node.demo_swarm import ensure_demo_model, launcher_config
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.node.supervisor import Supervisor
from farnode_desktop.core.settings import Settings

pytestmark = pytest.mark.engine


def _supervisor(engine, bus, paths) -> Supervisor:
    return Supervisor(engine, bus, log_dir=paths.log_dir, run_dir=paths.run_dir)


def _config(engine_paths, engine, port) -> dict:
    settings = Settings()
    settings.network.port = port
    return launcher_config(settings, engine_paths, model_path=ensure_demo_model(engine_paths, engine))


def test_port_in_use(engine_paths, engine, bus, free_port):
    holder = socket.socket()
    holder.bind(("127.0.0.1", free_port))
    holder.listen()
    sup = _supervisor(engine, bus, engine_paths)
    try:
        sup.start(_config(engine_paths, engine, free_port))
        state = sup.wait_for({C.FAILED, C.ONLINE, C.HELD}, 60)
        assert state.state == C.FAILED and state.category == "port_in_use"
        assert f"Port {free_port} is already used" in state.message and "Settings > Network" in state.message
    finally:
        sup.close()
        holder.close()


@pytest.mark.parametrize("model, expect", [
    ("/nonexistent/farnode-model", "does not exist"),
    ("empty-folder", "no config.json"),
    ("no-such-org/no-such-model-farnode", "no-such-org/no-such-model-farnode"),
])
def test_bad_model(engine_paths, engine, bus, free_port, tmp_path, model, expect):
    if model == "empty-folder":
        model = str(tmp_path / "empty-model")
        (tmp_path / "empty-model").mkdir()
    sup = _supervisor(engine, bus, engine_paths)
    cfg = _config(engine_paths, engine, free_port)
    cfg["model"] = model
    try:
        # Offline hub: the engine fails at once instead of retrying a download forever.
        sup.start(cfg, env_extra={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        state = sup.wait_for({C.FAILED, C.ONLINE, C.HELD}, 90)
        assert state.state == C.FAILED and state.category == "model", state
        assert expect in state.message and "Settings > Network" in state.message
    finally:
        sup.close()


def test_engine_missing(engine_paths, bus, free_port, tmp_path, monkeypatch):
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(tmp_path / "no-engine"))
    engine = EngineEnv(engine_paths, "cpu")
    sup = _supervisor(engine, bus, engine_paths)
    try:
        state = sup.start({"model": "x", "port": free_port})
        assert state.state == C.FAILED and state.category == "engine_missing"
        assert "farnode-desktop engine setup" in state.message
    finally:
        sup.close()
    with pytest.raises(EngineEnvError, match="missing"):
        engine.verify()


def test_engine_broken(engine_paths, bus, free_port, tmp_path, monkeypatch):
    """A Python environment without the engine in it: the launcher starts, cannot import the engine."""
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(tmp_path / "broken-engine"))
    engine = EngineEnv(engine_paths, "cpu")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(engine.venv)], check=True)
    (tmp_path / "config.json").write_text("{}")
    sup = _supervisor(engine, bus, engine_paths)
    try:
        sup.start({"model": str(tmp_path), "port": free_port, "dht_prefix": "x"})
        state = sup.wait_for({C.FAILED, C.ONLINE, C.HELD}, 60)
        assert state.state == C.FAILED and state.category == "engine_missing", state
        assert "repair" in state.message
    finally:
        sup.close()
    with pytest.raises(EngineEnvError, match="broken"):
        engine.verify()
