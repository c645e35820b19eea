"""The headless status line: words a person reads, columns that stay in place, colour only when asked."""

from __future__ import annotations

import re

from farnode_desktop.app.headless import status_line
from farnode_desktop.core import snapshots as C
from farnode_desktop.core.node.demo_swarm import TrafficStats


def _stats(**kw) -> C.NodeStats:
    return C.NodeStats(time=0, node_id="main", run_id="r", state=kw.pop("state", "online"), **kw)


def test_states_in_words_with_aligned_columns():
    online = _stats(blocks=(0, 1, 2, 3), total_blocks=4, inference_tokens=1234, inference_sessions=56,
                    uptime_s=3725, inference_tokens_per_s=12.34)
    lines = {
        "measuring": status_line(_stats(state=C.MEASURING), C.NodeState("main", C.MEASURING)),
        "loading": status_line(_stats(state=C.LOADING), C.NodeState("main", C.LOADING, "loading block 2 (3 of 4)")),
        "online": status_line(online, C.NodeState("main", C.ONLINE), TrafficStats(requests=10, ok=10)),
        "paused": status_line(_stats(state=C.PAUSED), C.NodeState("main", C.PAUSED, "Paused: game.exe is running")),
        "failed": status_line(_stats(state=C.FAILED), C.NodeState("main", C.FAILED, "Port 31337 is in use")),
    }
    assert lines["measuring"].startswith("Measuring throughput ")
    assert lines["loading"].startswith("Loading block 2 (3 of 4) ")
    assert lines["online"].startswith("Online, serving blocks 0-3 of 4 ")
    assert lines["paused"].startswith("Paused: game.exe is running ")
    assert lines["failed"].startswith("Could not start ") and lines["failed"].endswith("(Port 31337 is in use)")
    assert "12.3 tok/s" in lines["online"] and "served     1,234 tok" in lines["online"]
    assert "56 requests" in lines["online"] and "up 1:02:05" in lines["online"] and "checked 10/10 ok" in lines["online"]
    for column in (" tok/s", " tok ", " requests", "up "):
        assert len({ln.index(column) for ln in lines.values()}) == 1, column
    assert all("\033[" not in ln for ln in lines.values())


def test_colour_only_when_asked():
    st = C.NodeState("main", C.ONLINE)
    plain, coloured = status_line(_stats(), st), status_line(_stats(), st, colour=True)
    assert "\033[32m" in coloured and re.sub(r"\033\[\d+m", "", coloured) == plain
