"""``farnode-desktop pause [--minutes N]`` and ``resume`` from any shell reach the running node of the data
folder (here the headless face, a real FarMesh server): paused, then online again; bad input and no node
running each get one clear line and exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO, Face, app_env, write_settings

pytestmark = pytest.mark.engine


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "farnode_desktop", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_pause_and_resume_from_a_shell(home, engine_root, free_port):
    write_settings(home, {"network": {"port": free_port, "device": "cpu", "demo_traffic_per_minute": 0}})
    env = app_env(home, engine_root)
    out = _cli(env, "pause")
    assert out.returncode == 2 and "No node running" in out.stderr, out  # nothing runs on this folder yet
    node = Face("headless", home, env)
    try:
        node.wait_state("online", 240)
        bad = _cli(env, "pause", "--minutes", "-5")
        assert bad.returncode == 2 and "--minutes must be a positive number" in bad.stderr, bad
        out = _cli(env, "pause", "--minutes", "30")
        assert out.returncode == 0 and "Paused for 30 min." in out.stdout, out
        node.wait_state("paused", 120)
        out = _cli(env, "resume")
        assert out.returncode == 0 and "Resumed." in out.stdout, out
        node.wait_state("online", 240)
        assert node.stop() == 0, node.stderr()[-3000:]
    finally:
        node.kill()
