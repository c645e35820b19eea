"""The headless node as a user runs it: `farnode-desktop node`, a live status line, Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.ports import port_is_free
from tests.support.processes import group_members
from tests.support.wait import wait_until

pytestmark = pytest.mark.engine


def test_headless_node_runs_and_stops_on_ctrl_c(engine_paths, free_port):
    engine_paths.settings_file.write_text(
        json.dumps({"network": {"port": free_port, "demo_traffic_per_minute": 60}}))
    proc = subprocess.Popen([sys.executable, "-m", "farnode_desktop", "node"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    lines: list[str] = []
    try:
        deadline = time.time() + 150
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("Online") and not re.search(r"\s0 requests", line):
                break
        online = [ln for ln in lines if ln.startswith("Online")]
        assert online, "\n".join(lines[-30:])
        assert online[-1].startswith("Online, serving blocks 0-3 of 4 ")
        assert "tok/s" in online[-1] and "up 0:00:" in online[-1] and "\033[" not in online[-1]  # no colour
        # Aligned columns: every line puts its rate column at the same place.
        assert len({ln.index(" tok/s") for ln in lines if " tok/s" in ln}) == 1, "\n".join(lines)
        assert any("local demo swarm" in ln for ln in lines[:3])
        # Not a terminal: a line when something counted changed, not every second for the uptime or rate.
        counted = [re.sub(r"\s+[\d.]+ tok/s|\s+up \S+", "", ln) for ln in online]
        assert all(a != b for a, b in zip(counted, counted[1:], strict=False)), "\n".join(online)
        pid_info = engine_paths.run_dir / "node-main.json"
        launcher = int(json.loads(pid_info.read_text())["pid"])
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert out.rstrip().endswith("Stopped.")
    assert wait_until(lambda: not group_members(launcher), 5)
    assert port_is_free(free_port)
