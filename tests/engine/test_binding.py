"""A server's wallet binding in a real hivemind DHT (engine/binding.py): stored under the swarm's key with
the server's peer id as subkey, read back by a client-mode DHT, kept alive by refreshing, gone once the
refreshing stops and it expires."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from farnode_desktop.core.node.runtimes.base import engine_subprocess_env

pytestmark = pytest.mark.engine

CLIENT = Path(__file__).with_name("binding_client.py")
ROOT = Path(__file__).resolve().parents[2]


def test_binding_is_announced_refreshed_and_expires(engine):
    proc = subprocess.run([str(engine.python), str(CLIENT), str(ROOT)], capture_output=True, text=True,
                          timeout=180, env=engine_subprocess_env(), cwd=str(ROOT))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout[-2000:] + proc.stderr[-3000:]
