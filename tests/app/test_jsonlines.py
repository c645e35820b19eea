"""``farnode-desktop node --json`` writes JSON Lines: one complete object per line, whichever thread
publishes. 10,000 lines from eight threads publishing at once on the app's event bus (as the node's event
reader, log reader, stats ticker and policy thread do), through the headless face's writer into a real
pipe: every line parses as one object and none is lost."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from farnode_desktop.app.headless import JSON_TOPICS, JsonLines
from farnode_desktop.core import snapshots as C
from farnode_desktop.core.events import EventBus

THREADS, PER_THREAD = 8, 1250


def _payload(thread: int, i: int):
    kind = i % 4
    if kind == 0:
        return "node.stats", C.NodeStats(time=time.time(), node_id=f"t{thread}", run_id=str(i), state="online",
                                         blocks=(0, 1, 2, 3), total_blocks=4, inference_tokens=i)
    if kind == 1:
        return "node.event", C.NodeEvent(time.time(), f"t{thread}", "pause", "Paused: a game " * (i % 50),
                                         {"seq": i, "inf": float("inf")})
    if kind == 2:  # a long engine log line: bigger than a pipe's atomic write size
        return "node.log", f"t{thread} {i} " + "x" * 5000
    return "node.state", C.NodeState(f"t{thread}", "online", message=f"seq {i}")


def test_ten_thousand_lines_from_busy_threads_all_parse():
    r, w = os.pipe()
    out = os.fdopen(w, "w", encoding="utf-8")
    bus = EventBus()
    writer = JsonLines(out)
    for topic in JSON_TOPICS:
        bus.subscribe(topic, writer.event)
    received: list[bytes] = []

    def read() -> None:
        with os.fdopen(r, "rb") as f:
            received.extend(f.read().split(b"\n"))

    reader = threading.Thread(target=read)
    reader.start()
    go = threading.Barrier(THREADS)

    def publish(t: int) -> None:
        go.wait()
        for i in range(PER_THREAD):
            bus.publish(*_payload(t, i))

    threads = [threading.Thread(target=publish, args=(t,)) for t in range(THREADS)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can: a write in two parts would be split
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    out.close()
    reader.join()

    assert received[-1] == b""  # the stream ends with a complete line
    lines = received[:-1]
    assert len(lines) == THREADS * PER_THREAD
    objects = [json.loads(line) for line in lines]  # every line is exactly one JSON object
    assert all(isinstance(o, dict) and o["topic"].startswith("node.") for o in objects)
    events = [o for o in objects if o["topic"] == "node.event"]
    assert all(o["data"]["inf"] is None for o in events)  # strict JSON: no Infinity
    stats = [o for o in objects if o["topic"] == "node.stats"]
    assert all(o["requests"] == 0 and o["tokens_served"] == o["inference_tokens"] for o in stats)
    seen = {(o["node_id"], o["data"]["seq"]) for o in events}
    assert len(seen) == THREADS * len(range(1, PER_THREAD, 4))
